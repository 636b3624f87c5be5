"""The Glue batch function on local pyspark: fixture batches, idempotent re-runs, parity with the local ETL.

One module-scoped ``local[1]`` session whose Arrow batches hold 3 rows, so copies of one id meet
only in the cross-batch de-duplication; the whole module takes ~40 s (JVM start included).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from etl import columnar, transforms
from etl.batch import write_batch
from etl.local import LocalEtl
from etl.transforms import Entry
from stream import schema
from stream.ports import StreamEntry
from stream.sqlite import SqliteStore
from tests.etl.etl_fixtures import fixture_entries, read

pyspark = pytest.importorskip("pyspark")

pytestmark = pytest.mark.slow

SOURCE_DDL = "data binary, partitionKey string, sequenceNumber string, approximateArrivalTimestamp timestamp"
ARRIVED = datetime(2026, 11, 30, 21, 5, 7, tzinfo=UTC)


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable  # workers must use this venv (pyarrow, aws_kinesis_agg)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = (
        SparkSession.builder.master("local[1]")
        .appName("etl-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.driver.memory", "1g")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "3")
        .getOrCreate()
    )
    yield session
    session.stop()


def source_frame(spark, entries, arrived=ARRIVED):
    rows = [
        (bytearray(e.data), e.partition_key, f"{i + 1:020d}", arrived + timedelta(milliseconds=i))
        for i, e in enumerate(entries)
    ]
    return spark.createDataFrame(rows, schema=SOURCE_DDL).repartition(3)


def read_table(path: Path):
    return ds.dataset(path, format="parquet", partitioning="hive").to_table()


def copies() -> tuple[list[StreamEntry], list[StreamEntry], dict[str, schema.Read]]:
    """Same-id copies for the start and the end of the stream, and the copy ``prefer`` keeps per id.

    A retry received later comes first (the later entry wins), and two copies with the same server
    time and different bytes (the smaller bytes win, compared as unsigned bytes, whichever comes first).
    """
    early = read(601)
    retry = replace(early, received_at=early.received_at + timedelta(minutes=3))
    a, b = replace(read(602), seat="z9"), replace(read(602), seat="\u00e91")  # 0x7a < 0xc3 unsigned, not signed
    big, small = sorted((a, b), key=schema.to_bytes, reverse=True)
    first = [StreamEntry("cam-1", schema.to_bytes(r)) for r in (retry, big)]
    last = [StreamEntry("cam-1", schema.to_bytes(r)) for r in (early, small)]
    return first, last, {early.read_id: early, small.read_id: small}


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    """The fixture batch through the local ETL and through ``write_batch`` (batch 7), from the same stream rows."""
    base = tmp_path_factory.mktemp("runs")
    entries, expected = fixture_entries()
    first, last, winners = copies()
    expected["reads"] = sorted([*expected["reads"], *winners])
    expected["winners"] = winners
    store = SqliteStore(base / "stream.db", clock=lambda: ARRIVED.timestamp())
    store.put([*first, *entries, *last])
    LocalEtl(store, base / "local", batch_records=10_000).process_available()
    rows = [
        (bytearray(r.data), r.partition_key, f"seq={r.seq}", datetime.fromtimestamp(r.arrived_at, UTC))
        for r in store.read(0, 10_000)
    ]
    frame = spark.createDataFrame(rows, schema=SOURCE_DDL).repartition(2)
    counts = write_batch(frame, 7, lake_path=str(base / "spark"))
    return {"local": base / "local", "spark": base / "spark", "frame": frame, "counts": counts, "expected": expected}


def test_spark_batch_writes_fixture_batch_to_event_time_partitions(runs):
    root, expected = runs["spark"], runs["expected"]
    reads = read_table(root / "reads")
    assert sorted(reads["read_id"].to_pylist()) == expected["reads"]  # KPL split, extra field kept, dups gone
    assert sorted(read_table(root / "frames")["frame_id"].to_pylist()) == expected["frames"]
    assert read_table(root / "box_office")["outcome_id"].to_pylist() == expected["box_office"]
    assert runs["counts"]["reads"] == len(expected["reads"])
    # duplicate rule: the retry (received 3 min later) lost to the first copy
    rows = {r["read_id"]: r for r in reads.to_pylist()}
    assert rows[expected["retry_read_id"]]["received_at"] == expected["retry_received_at"]
    # copies in different Arrow batches: earliest server time, then smallest bytes, whatever the order
    for rid, winner in expected["winners"].items():
        assert (rows[rid]["received_at"], rows[rid]["seat"]) == (winner.received_at, winner.seat)
    # late record: its own hour, 3 hours before the others (Hive layout, zero-padded hour)
    assert sorted(p.name for p in (root / "reads").iterdir()) == ["dt=2026-11-30"]
    assert sorted(p.name for p in (root / "reads" / "dt=2026-11-30").iterdir()) == ["hour=17", "hour=20"]
    # quarantine: every bad record with a reason, partitioned by arrival time
    q = read_table(root / "quarantine")
    assert sorted(q["stage"].to_pylist()) == expected["quarantine_stages"]
    assert all(q["reason"].to_pylist())
    assert (root / "quarantine" / "dt=2026-11-30" / "hour=21").is_dir()
    # published names are deterministic (one file per partition and batch); staging is gone
    files = sorted(p.name for p in (root / "reads").rglob("*.parquet"))
    assert files == ["b-000000000007-0.parquet", "b-000000000007-0.parquet"]
    assert not (root / "_staging" / "batch-7").exists()


def _normalise(table: pa.Table) -> list[dict]:
    rows = table.drop_columns([schema.LAKE_COLUMN]).to_pylist()
    for r in rows:
        r["hour"] = f"{int(r['hour']):02d}"
    key = next(k for k in ("read_id", "frame_id", "outcome_id", "source") if k in rows[0])
    return sorted(rows, key=lambda r: r[key])


def _types(path: Path) -> list[tuple[str, str]]:
    import pyarrow.parquet as pq

    sch = pq.read_schema(next(path.rglob("*.parquet")))
    return [(n, str(t).replace("element: ", "item: ")) for n, t in zip(sch.names, sch.types, strict=True)]


def test_spark_and_local_etl_write_identical_rows(runs):
    for table in (*schema.TABLE.values(), "quarantine"):
        local_t, spark_t = read_table(runs["local"] / table), read_table(runs["spark"] / table)
        assert local_t.num_rows > 0, table
        assert _normalise(spark_t) == _normalise(local_t), table
        assert _types(runs["spark"] / table) == _types(runs["local"] / table), table
        assert {p.relative_to(runs["spark"]).parent for p in (runs["spark"] / table).rglob("*.parquet")} == {
            p.relative_to(runs["local"]).parent for p in (runs["local"] / table).rglob("*.parquet")
        }, table


def test_spark_batch_rerun_of_same_batch_id_does_not_duplicate(runs):
    root, expected = runs["spark"], runs["expected"]
    first = read_table(root / "reads").num_rows
    # a crash left a half-finished staging dir behind; the retry must not care
    (root / "_staging" / "batch-7" / "reads").mkdir(parents=True)
    write_batch(runs["frame"], 7, lake_path=str(root))
    assert read_table(root / "reads").num_rows == first == len(expected["reads"])
    assert read_table(root / "quarantine").num_rows == len(expected["quarantine_stages"])
    # a different batch id appends next to it (duplicates across batches are the readers' job)
    write_batch(runs["frame"], 8, lake_path=str(root))
    assert read_table(root / "reads").num_rows == 2 * first


def test_arrow_batch_function_gives_the_columnar_rows_with_their_dedup_keys():
    entries, _ = fixture_entries()
    arrived = [ARRIVED + timedelta(seconds=i) for i in range(len(entries))]
    batch = pa.record_batch(
        [
            pa.array([e.data for e in entries], pa.binary()),
            pa.array([e.partition_key for e in entries]),
            pa.array(arrived, pa.timestamp("us", tz="UTC")),
            pa.array([f"seq={i}" for i in range(len(entries))]),
        ],
        names=list(columnar.SOURCE_COLUMNS),
    )
    got = columnar.transform_arrow(batch)
    assert got.schema == columnar.union_schema()
    ref = columnar.transform_entries(
        [Entry(e.data, e.partition_key, arrived[i], f"seq={i}") for i, e in enumerate(entries)]
    )
    for kind in schema.KINDS:
        rows = got.filter(pc.equal(got[columnar.TABLE_COLUMN], schema.TABLE[kind]))
        want = ref.tables[kind]
        key = schema.ID_FIELD[kind]
        assert rows.select(want.column_names).sort_by(key).to_pylist() == want.sort_by(key).to_pylist()
        assert rows.num_rows > 0, kind
        assert rows[columnar.ID_COLUMN] == rows[schema.ID_FIELD[kind]]
        for r in rows.to_pylist():  # the dedup keys are the record's own server time and bytes
            assert schema.from_bytes(r[columnar.DATA_COLUMN]).record_id == r[columnar.ID_COLUMN]
            server = r[transforms.SERVER_TIME[kind]]
            assert r[columnar.SERVER_COLUMN] == (server - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
            assert (r["dt"], r["hour"]) == schema.partition_values(r["captured_at"])
    q = got.filter(pc.equal(got[columnar.TABLE_COLUMN], "quarantine"))
    assert q["reason"].to_pylist() == [x.reason for x in ref.quarantine]
    assert q.column("dt").to_pylist() == [x.partition[0] for x in ref.quarantine]
