"""The Spark batch function of the Glue streaming job: ``write_batch(df, batch_id, ...)``.

Plain PySpark (no ``awsglue``), so it runs and is tested on local pyspark.  Per micro-batch:

1. ``mapPartitions`` over the binary ``data`` column calls ``etl.transforms.parse_entry`` -- the same
   code as the local ETL, so the two runners agree by construction;
2. ``reduceByKey(prefer)`` drops duplicate ids across the whole batch with the same rule as the
   local ETL;
3. each table (and the quarantine) is written with Spark's Parquet writer, zstd, to a staging
   directory of this batch: ``<lake>/_staging/batch-<id>/<table>/dt=../hour=../part-*.parquet``,
   one file per partition (``repartitionAndSortWithinPartitions`` on (table, dt, hour) puts each
   partition's rows in one task, sorted by id);
4. the staged files are *published* under deterministic names
   ``<table>/dt=../hour=../b-<batch_id>-<n>.parquet`` and the staging directory is deleted.

Idempotence per ``batch_id``: Structured Streaming re-runs a failed batch with the same id and the
same offsets (its offset log is written before the batch runs), and the transform depends only
on the input bytes, so a re-run publishes the same names with the same rows.  On S3 a PUT or
CopyObject replaces a key atomically and reads are strongly consistent, so readers see the old or
the new object, never a torn or doubled one; a key that did not exist is published by ``rename``
(server-side copy) and an existing one is overwritten with ``FileUtil.copy(overwrite=True)``.
Appending with Spark's own random ``part-<uuid>`` names would instead duplicate rows on every
re-run, and dynamic partition overwrite would delete other batches' rows of the same hour.

Athena never reads staging files: the tables' locations are ``<lake>/<table>/`` with partition
projection on ``dt``/``hour``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from etl import transforms
from etl.transforms import QUARANTINE_TABLE, Entry, Parsed, Quarantined
from stream import schema

log = logging.getLogger(__name__)

COMPRESSION = "zstd"

STAGING_DIR = "_staging"

SPARK_CONF = {
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.session.timeZone": "UTC",
    "spark.speculation": "false",
}
"""Session settings the lake layout relies on: INT64 microsecond timestamps (not INT96) like the
local writer and Athena expect; UTC session zone; no speculative tasks (the Kinesis connector
requires it).  ``write_batch`` sets the two SQL ones; ``spark.speculation`` must be set at launch."""

DEFAULT_COLUMNS = {
    "data": "data",
    "partition_key": "partitionKey",
    "arrived_at": "approximateArrivalTimestamp",
    "source": "sequenceNumber",
}
"""Columns of the source DataFrame (those of the spark-sql-kinesis-connector, ``format("aws-kinesis")``)."""


def _parse_partition(rows: Iterable[Any]) -> Iterator[tuple[tuple, Parsed | Quarantined]]:
    for i, row in enumerate(rows):
        data, key, arrived, source = row[0], row[1], row[2], row[3]
        arrived_at = transforms.utc(arrived) if isinstance(arrived, datetime) else datetime.fromtimestamp(0, UTC)
        entry = Entry(bytes(data) if data is not None else b"", key or "", arrived_at, str(source))
        for j, res in enumerate(transforms.parse_entry(entry)):
            if isinstance(res, Parsed):
                yield ("r", res.kind, res.record_id), res
            else:
                yield ("q", entry.source, i, j), res


def _reduce(a: Any, b: Any) -> Any:
    if isinstance(a, Parsed) and isinstance(b, Parsed):
        return transforms.prefer(a, b)
    return a  # quarantine keys are unique; never reached


def write_batch(
    df,
    batch_id: int,
    lake_path: str,
    quarantine_path: str | None = None,
    columns: dict[str, str] | None = None,
    lake_at: datetime | None = None,
) -> dict[str, int]:
    """Transform one micro-batch and publish it idempotently; returns row counts per table.

    Args:
        df: the micro-batch (static) DataFrame with a binary data column and the other source columns.
        batch_id: Structured Streaming's batch id (names the published files).
        lake_path: lake root (``s3://bucket/lake`` or a local path); tables go under it.
        quarantine_path: where quarantine partitions go (default ``<lake_path>/quarantine``).
        columns: source column names, see :data:`DEFAULT_COLUMNS`.
        lake_at: value of ``lake_at`` (default: now, UTC).
    """
    spark = df.sparkSession
    for k in ("spark.sql.parquet.outputTimestampType", "spark.sql.session.timeZone"):
        spark.conf.set(k, SPARK_CONF[k])
    cols = {**DEFAULT_COLUMNS, **(columns or {})}
    lake_path = lake_path.rstrip("/")
    quarantine_path = (quarantine_path or f"{lake_path}/{QUARANTINE_TABLE}").rstrip("/")
    lake_at = lake_at or schema.now_utc()

    src = df.select(cols["data"], cols["partition_key"], cols["arrived_at"], cols["source"])
    parallelism = max(1, spark.sparkContext.defaultParallelism)
    placed = (
        src.rdd.mapPartitions(_parse_partition)
        .reduceByKey(_reduce)
        .map(lambda kv, t=lake_at: _place(kv[1], t))
        # every (table, dt, hour) group lands whole in one partition, sorted by id: one file per
        # partition directory, written without another shuffle
        .repartitionAndSortWithinPartitions(parallelism, partitionFunc=_group_hash)
    )
    placed.persist()
    try:
        # one job parses the batch and counts rows per table; tables without rows are not written
        per_table = placed.map(lambda kv: kv[0][0]).countByValue()
        staging = f"{lake_path}/{STAGING_DIR}/batch-{batch_id}"
        targets: dict[str, str] = {}
        for kind in (*schema.KINDS, None):
            table = schema.TABLE[kind] if kind else QUARANTINE_TABLE
            targets[table] = f"{lake_path}/{table}" if kind else quarantine_path
            if not per_table.get(table):
                continue
            ddl = schema.spark_ddl(kind) if kind else transforms.quarantine_spark_ddl()
            rows = placed.filter(lambda kv, t=table: kv[0][0] == t).values()
            (
                spark.createDataFrame(rows, schema=f"{ddl}, `dt` string, `hour` string")
                .write.mode("overwrite")
                .option("compression", COMPRESSION)
                .partitionBy("dt", "hour")
                .parquet(f"{staging}/{table}")
            )
        published = _publish(spark, staging, targets, batch_id)
    finally:
        placed.unpersist()
    counts = {t: int(per_table.get(t, 0)) for t in targets}
    log.info("batch %d: rows %s, %d files published", batch_id, counts, published)
    return counts


def _place(r: Parsed | Quarantined, lake_at: datetime) -> tuple[tuple[str, str, str, str], tuple]:
    """((table, dt, hour, id), row values + dt + hour) of one result."""
    if isinstance(r, Parsed):
        return (schema.TABLE[r.kind], r.dt, r.hour, r.record_id), (*transforms.lake_values(r, lake_at), r.dt, r.hour)
    dt, hour = r.partition
    return (QUARANTINE_TABLE, dt, hour, r.source), (*r.values(lake_at), dt, hour)


def _group_hash(key: tuple) -> int:
    from pyspark.rdd import portable_hash

    return portable_hash(key[:3])


def _publish(spark, staging: str, targets: dict[str, str], batch_id: int) -> int:
    """Move staged files to ``<target>/dt=../hour=../b-<batch>-<n>.parquet``; returns files moved."""
    jvm = spark._jvm
    conf = spark._jsc.hadoopConfiguration()
    path_cls = jvm.org.apache.hadoop.fs.Path
    file_util = jvm.org.apache.hadoop.fs.FileUtil
    root = path_cls(staging)
    fs = root.getFileSystem(conf)
    if not fs.exists(root):
        return 0
    moved = 0
    for table, target in targets.items():
        table_dir = path_cls(f"{staging}/{table}")
        if not fs.exists(table_dir):
            continue
        by_dir: dict[str, list[str]] = {}
        it = fs.listFiles(table_dir, True)
        while it.hasNext():
            p = it.next().getPath()
            if p.getName().endswith(".parquet") and not p.getName().startswith((".", "_")):
                rel = f"{p.getParent().getParent().getName()}/{p.getParent().getName()}"  # dt=../hour=..
                by_dir.setdefault(rel, []).append(p.toString())
        for rel, files in sorted(by_dir.items()):
            dest_dir = path_cls(f"{target}/{rel}")
            fs.mkdirs(dest_dir)
            for n, src in enumerate(sorted(files)):
                src_p = path_cls(src)
                dest = path_cls(dest_dir, f"b-{batch_id:012d}-{n}.parquet")
                if fs.exists(dest):
                    file_util.copy(fs, src_p, fs, dest, True, True, conf)  # deleteSource, overwrite
                elif not fs.rename(src_p, dest):
                    raise OSError(f"could not publish {src} to {dest}: rename returned false")
                moved += 1
    fs.delete(root, True)
    return moved
