"""Benchmark of the ETL: local ETL (SQLite stream -> Parquet) and the Spark transform, vs raw pyarrow.

Figures are ratios against a baseline measured in the same run: pyarrow building and writing the
same rows (already decoded, same schema, same partitions, zstd) -- the floor cost of any writer.
Each phase runs in its own process; peak memory is the peak RSS of that process tree (Spark: the
Python driver + JVM + Python workers).  Spark runs ``write_batch`` twice on ``local[2]``: the first
batch pays for starting the Python workers, the next one shows a streaming job's steady state.

    .venv/bin/python bench/bench_etl.py                       # 1M reads, Spark on 1M too
    .venv/bin/python bench/bench_etl.py --records 100000 --spark-records 100000
    .venv/bin/python bench/bench_etl.py --records 200000 --skip-local   # baseline + Spark only
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream import schema
from stream.ports import StreamEntry

BASE = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def synthetic_read(i: int) -> schema.Read:
    """A realistic read: 12 cameras, event times spread over a 6-hour evening."""
    cam = f"cam-{i % 12}"
    fid = schema.frame_id(cam, i.to_bytes(8, "big"))
    payload = f"TKT:CIN{i % 3}:R{i % 12}:S{i % 40}:{i:09d}".encode()
    captured = BASE + timedelta(seconds=(i * 7919) % 21_600, microseconds=i % 1_000_000)
    return schema.Read(
        read_id=schema.read_id(fid, payload),
        frame_id=fid,
        camera_id=cam,
        cinema_id=f"cin-{i % 3}",
        room_id=f"room-{i % 12}",
        tz="America/Sao_Paulo",
        captured_at=captured,
        received_at=captured + timedelta(milliseconds=180),
        text=payload.decode(),
        symbology="QRCode",
        decoder="zxing",
        ticket_valid=True,
        corners=((10, 10), (90, 10), (90, 90), (10, 90)),
        ticket_format="tkt",
        ticket_id=f"{i:09d}",
        session_id=f"S{i % 40}",
        session_start=datetime(2026, 11, 30, 19, 0),
        seat=f"F{i % 30}",
    )


class TreeRss:
    """Samples the summed RSS of this process and its descendants (Linux /proc) every 0.2 s."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _tree_rss(self) -> int:
        me = os.getpid()
        parents: dict[int, int] = {}
        rss: dict[int, int] = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    parents[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{d}/statm") as f:
                    rss[int(d)] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, IndexError, ValueError):
                continue
        tree, frontier = {me}, [me]
        while frontier:
            p = frontier.pop()
            for c, pp in parents.items():
                if pp == p and c not in tree:
                    tree.add(c)
                    frontier.append(c)
        return sum(rss.get(p, 0) for p in tree)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._tree_rss())
            self._stop.wait(0.2)

    def __enter__(self) -> TreeRss:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._tree_rss())


def _in_child(fn, *args) -> dict:
    """Run ``fn(*args) -> dict`` in a fresh forked process; adds its peak tree RSS in MiB."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()

    def target() -> None:
        with TreeRss() as mem:
            out = fn(*args)
        out["peak_rss_mib"] = round(mem.peak / 2**20, 1)
        q.put(out)

    p = ctx.Process(target=target)
    p.start()
    out = q.get()
    p.join()
    return out


def fill_stream(db: Path, n: int) -> None:
    from stream.sqlite import SqliteStore

    store = SqliteStore(db)
    chunk = 20_000
    for start in range(0, n, chunk):
        store.put(
            [
                StreamEntry(f"cam-{i % 12}", schema.to_bytes(synthetic_read(i)))
                for i in range(start, min(n, start + chunk))
            ]
        )
        progress(f"stream: {min(n, start + chunk):,}/{n:,} entries")
    store.close()


def phase_baseline(db: Path, out: Path, n: int) -> dict:
    """pyarrow building + writing the same rows (decoded beforehand, not timed), one file per partition."""
    from itertools import groupby

    from etl import transforms, writer
    from stream.sqlite import SqliteStore

    store = SqliteStore(db)
    rows = store.read(0, n)
    batch = transforms.transform(
        transforms.Entry(r.data, r.partition_key, datetime.fromtimestamp(r.arrived_at, UTC), str(r.seq)) for r in rows
    )
    del rows
    lake_at = schema.now_utc()
    groups = [
        (dt, hour, transforms.lake_columns("read", list(g), lake_at))
        for (dt, hour), g in groupby(batch.records["read"], key=lambda p: (p.dt, p.hour))
    ]
    progress("baseline: rows decoded, timing pyarrow build + write")
    import pyarrow as pa
    import pyarrow.parquet as pq

    sch = schema.arrow_schema("read")
    t0 = time.perf_counter()
    for dt, hour, cols in groups:
        d = writer.partition_dir(out, "reads", dt, hour)
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols, schema=sch), d / "x.parquet", compression=writer.COMPRESSION)
    secs = time.perf_counter() - t0
    return {"rows": batch.row_count, "seconds": round(secs, 2), "rows_per_s": round(batch.row_count / secs)}


def phase_local(db: Path, lake: Path, batch_records: int) -> dict:
    from etl.local import LocalEtl
    from stream.sqlite import SqliteStore

    store = SqliteStore(db)
    etl = LocalEtl(store, lake, batch_records=batch_records)
    t0 = time.perf_counter()
    total = 0
    while True:
        n = etl.process_available(max_batches=1)
        if not n:
            break
        total += n
        progress(f"local ETL: {total:,} records, {total / (time.perf_counter() - t0):,.0f}/s")
    secs = time.perf_counter() - t0
    st = etl.status()
    before = _files_per_hour(lake)
    t1 = time.perf_counter()
    res = etl.compact(now=datetime(2100, 1, 1, tzinfo=UTC))
    csecs = time.perf_counter() - t1
    after = _files_per_hour(lake)
    return {
        "records": total,
        "rows": st.rows_written,
        "seconds": round(secs, 2),
        "records_per_s": round(total / secs),
        "files_per_hour_before": before,
        "files_per_hour_after": after,
        "compaction_seconds": round(csecs, 2),
        "compaction_files_in": res.files_in,
    }


def _files_per_hour(lake: Path) -> float:
    dirs = [d for d in (lake / "reads").glob("dt=*/hour=*")]
    return round(sum(len(list(d.glob("*.parquet"))) for d in dirs) / max(1, len(dirs)), 1)


def phase_spark(db: Path, lake: Path, n: int) -> dict:
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    from etl.batch import write_batch
    from stream.sqlite import SqliteStore

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.memory", "8g")  # 1M source rows are built on the driver
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    rows = [
        (r.data, r.partition_key, datetime.fromtimestamp(r.arrived_at, UTC), str(r.seq))
        for r in SqliteStore(db).read(0, n)
    ]
    ddl = "data binary, partitionKey string, approximateArrivalTimestamp timestamp, sequenceNumber string"
    frame = spark.createDataFrame(rows, schema=ddl).repartition(8).cache()
    frame.count()
    del rows
    progress(f"spark: {n:,} rows cached in the source DataFrame, running write_batch (first batch)")
    t0 = time.perf_counter()
    counts = write_batch(frame, 0, lake_path=str(lake))
    secs = time.perf_counter() - t0
    # a streaming job runs batch after batch on the same (reused) Python workers: time a second one
    progress(f"spark: first batch {n / secs:,.0f} records/s; running write_batch again (next batch)")
    t1 = time.perf_counter()
    write_batch(frame, 1, lake_path=str(lake))
    warm = time.perf_counter() - t1
    spark.stop()
    return {
        "records": n,
        "rows": counts["reads"],
        "seconds": round(secs, 2),
        "records_per_s": round(n / secs),
        "next_seconds": round(warm, 2),
        "next_records_per_s": round(n / warm),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--spark-records", type=int, default=None, help="default: --records; 0 skips Spark")
    ap.add_argument("--batch-records", type=int, default=50_000, help="local ETL batch size")
    ap.add_argument("--skip-local", action="store_true", help="skip the local ETL phase (baseline + Spark only)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)
    spark_n = args.records if args.spark_records is None else args.spark_records
    tmp = Path(tempfile.mkdtemp(prefix="bench-etl-"))
    try:
        db = tmp / "stream.db"
        progress(f"generating {args.records:,} synthetic reads into {db}")
        fill_stream(db, args.records)
        progress("phase 1/3: pyarrow baseline")
        base = _in_child(phase_baseline, db, tmp / "baseline", args.records)
        progress(f"baseline: {base}")
        local = None
        if not args.skip_local:
            progress("phase 2/3: local ETL end to end")
            local = _in_child(phase_local, db, tmp / "lake", args.batch_records)
            progress(f"local: {local}")
        spark = None
        if spark_n:
            progress(f"phase 3/3: Spark write_batch on {spark_n:,} records")
            spark = _in_child(phase_spark, db, tmp / "spark", spark_n)
            progress(f"spark: {spark}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nETL benchmark, {args.records:,} synthetic reads, {os.cpu_count()} CPUs")
    print(f"{'phase':<34}{'records/s':>12}{'vs baseline':>13}{'seconds':>9}{'peak RSS MiB':>14}")
    print(
        f"{'pyarrow build+write (baseline)':<34}{base['rows_per_s']:>12,}{1.0:>12.2f}x{base['seconds']:>9}"
        f"{base['peak_rss_mib']:>14}"
    )
    if local:
        print(
            f"{'local ETL: SQLite -> Parquet':<34}{local['records_per_s']:>12,}"
            f"{local['records_per_s'] / base['rows_per_s']:>12.2f}x{local['seconds']:>9}{local['peak_rss_mib']:>14}"
        )
    if spark:
        for label, rate, secs in (
            ("Spark write_batch, first batch", spark["records_per_s"], spark["seconds"]),
            ("Spark write_batch, next batch", spark["next_records_per_s"], spark["next_seconds"]),
        ):
            print(f"{label:<34}{rate:>12,}{rate / base['rows_per_s']:>12.2f}x{secs:>9}{spark['peak_rss_mib']:>14}")
    if local:
        print(
            f"files per partition-hour: {local['files_per_hour_before']} before compaction, "
            f"{local['files_per_hour_after']} after ({local['compaction_files_in']} files merged in "
            f"{local['compaction_seconds']} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
