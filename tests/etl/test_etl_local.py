"""The local ETL: exactly-once under crashes, the lake layout readers expect, compaction, progress."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest

from etl import compact
from etl.local import LocalEtl
from stream import schema
from stream.ports import StreamEntry
from stream.sqlite import SqliteStore
from tests.etl.etl_fixtures import BASE, fixture_entries, frame, read

REPO = Path(__file__).resolve().parents[2]


class Crash(Exception):
    pass


def crash_at(stage: str, times: int = 1):
    left = [times]

    def fault(s: str) -> None:
        if s == stage and left[0] > 0:
            left[0] -= 1
            raise Crash(s)

    return fault


def read_ids(root: Path, table: str = "reads") -> list[str]:
    key = {"reads": "read_id", "frames": "frame_id", "box_office": "outcome_id"}[table]
    if not (root / table).exists():
        return []
    return ds.dataset(root / table, format="parquet", partitioning="hive").to_table()[key].to_pylist()


def many_reads(n: int, start: int = 0) -> list[StreamEntry]:
    return [
        StreamEntry("cam-1", schema.to_bytes(read(i, captured=BASE + timedelta(minutes=i))))
        for i in range(start, start + n)
    ]


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(tmp_path / "stream.db")
    yield s
    s.close()


def test_each_record_is_written_once_across_batches(store, tmp_path):
    store.put(many_reads(250))
    etl = LocalEtl(store, tmp_path / "lake", batch_records=60)
    assert etl.process_available() == 250
    ids = read_ids(tmp_path / "lake")
    assert len(ids) == len(set(ids)) == 250
    st = etl.status()
    assert (st.committed_seq, st.head_seq, st.lag_records, st.batches) == (250, 250, 0, 5)


@pytest.mark.parametrize("stage", ["temp-written", "files-written"])
def test_crash_between_write_and_checkpoint_loses_and_duplicates_nothing(store, tmp_path, stage):
    store.put(many_reads(100))
    lake = tmp_path / "lake"
    crashing = LocalEtl(store, lake, batch_records=40, fault=crash_at(stage))
    with pytest.raises(Crash):
        crashing.process_available()
    assert store.checkpoint("etl").pending_to == 40  # the intent survived the crash
    store.put(many_reads(30, start=100))  # more arrives before the restart: the redo must not grow
    restarted = LocalEtl(store, lake, batch_records=1000)  # a different size: only the intent keeps 1..40
    restarted.process_available()
    ids = read_ids(lake)
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 130
    assert not list(lake.rglob("*.tmp"))
    assert sorted(p.name for p in lake.rglob("*.parquet"))[0].startswith("s-000000000001-000000000040")


def test_sigkilled_etl_process_resumes_exactly_once(store, tmp_path):
    n = 3000
    store.put(many_reads(n))
    lake = tmp_path / "lake"
    script = textwrap.dedent(f"""
        import sys, threading
        sys.path.insert(0, {str(REPO)!r})
        from stream.sqlite import SqliteStore
        from etl.local import LocalEtl
        etl = LocalEtl(SqliteStore({str(tmp_path / "stream.db")!r}), {str(lake)!r}, batch_records=50)
        print("ready", flush=True)
        etl.process_available()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    deadline = time.monotonic() + 60
    while store.checkpoint("etl").seq < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert store.checkpoint("etl").seq < n, "the kill must interrupt the run"
    LocalEtl(store, lake, batch_records=500).process_available()
    ids = read_ids(lake)
    assert len(ids) == n and len(set(ids)) == n


def test_lake_reads_back_with_duckdb_and_pyarrow_hive_partitions(store, tmp_path):
    entries, expected = fixture_entries()
    store.put(entries)
    lake = tmp_path / "lake"
    LocalEtl(store, lake, batch_records=10_000).process_available()
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT read_id, dt, hour FROM read_parquet('{lake}/reads/*/*/*.parquet', hive_partitioning=true)"
    ).fetchall()
    assert sorted(r[0] for r in rows) == expected["reads"]
    assert {(str(r[1]), str(r[2]).zfill(2)) for r in rows} == {("2026-11-30", "17"), ("2026-11-30", "20")}
    types = dict(
        con.execute(
            f"DESCRIBE SELECT * FROM read_parquet('{lake}/reads/*/*/*.parquet', hive_partitioning=true)"
        ).fetchall()[i][:2]
        for i in range(len(schema.lake_fields("read")))
    )
    assert types["captured_at"] == "TIMESTAMP WITH TIME ZONE" and types["session_start"] == "TIMESTAMP"
    t = ds.dataset(lake / "reads", format="parquet", partitioning="hive").to_table()
    assert (
        t.schema.remove(t.schema.get_field_index("dt")).remove(t.schema.get_field_index("hour") - 1).names
        == schema.arrow_schema("read").names
    )
    q = con.execute(f"SELECT stage, reason FROM read_parquet('{lake}/quarantine/*/*/*.parquet')").fetchall()
    assert sorted(s for s, _ in q) == expected["quarantine_stages"]


def test_compaction_merges_closed_hours_into_one_file_with_exact_content(store, tmp_path):
    lake = tmp_path / "lake"
    etl = LocalEtl(store, lake, batch_records=7)
    store.put(many_reads(40) + [StreamEntry("cam-1", schema.to_bytes(frame(i))) for i in range(10)])
    etl.process_available()
    before = sorted(read_ids(lake)), sorted(read_ids(lake, "frames"))
    open_hour = lake / "reads" / "dt=2026-11-30" / "hour=20"
    assert len(list(open_hour.glob("*.parquet"))) > 1
    # crash after the merged file is written, before the inputs are deleted: rows doubled on disk...
    etl.fault = crash_at("compacted-written")
    now = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    with pytest.raises(Crash):
        etl.compact(now=now)
    etl.fault = None
    # ...until the next pass removes the superseded inputs
    res = etl.compact(now=now)
    assert (sorted(read_ids(lake)), sorted(read_ids(lake, "frames"))) == before
    for d in lake.glob("*/dt=*/hour=*"):
        assert len(list(d.glob("*.parquet"))) == 1, d
    assert res.superseded_removed > 0
    # a late file after compaction is merged by the next pass
    store.put([StreamEntry("cam-1", schema.to_bytes(read(999, captured=BASE + timedelta(minutes=1))))])
    etl.process_available()
    assert len(list(open_hour.glob("*.parquet"))) == 2
    etl.compact(now=now)
    assert len(list(open_hour.glob("*.parquet"))) == 1 and len(read_ids(lake)) == 41


def test_compaction_leaves_open_hours_and_uncommitted_files_alone(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    store.put(many_reads(20))
    etl = LocalEtl(store, tmp_path / "lake", batch_records=5)
    etl.process_available()
    hour = tmp_path / "lake" / "reads" / "dt=2026-11-30" / "hour=20"
    n = len(list(hour.glob("*.parquet")))
    etl.compact(now=datetime(2026, 11, 30, 21, 30, tzinfo=UTC))  # hour ended 30 min ago, grace 1 h
    assert len(list(hour.glob("*.parquet"))) == n
    compact.compact(tmp_path / "lake", committed_seq=10, now=datetime(2026, 12, 1, tzinfo=UTC))
    names = sorted(p.name for p in hour.glob("*.parquet"))
    assert names[0] == "c-000000000001-000000000010.parquet" and len(names) == 3


def test_run_loop_batches_by_time_and_reports_lag(store, tmp_path):
    etl = LocalEtl(store, tmp_path / "lake", batch_records=1000, batch_seconds=0.2, poll_s=0.02)
    stop = threading.Event()
    t = threading.Thread(target=etl.run, args=(stop,))
    t.start()
    try:
        store.put(many_reads(5))
        deadline = time.monotonic() + 10
        while etl.status().committed_seq < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        st = etl.status()
        assert st.running and st.committed_seq == 5 and st.lag_records == 0 and st.rows_written == 5
    finally:
        stop.set()
        t.join(10)
    assert not etl.status().running
