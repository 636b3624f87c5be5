"""The Spark batch function of the Glue streaming job: ``write_batch(df, batch_id, ...)``.

Plain PySpark (no ``awsglue``), so it runs and is tested on local pyspark.  Per micro-batch:

1. ``mapInArrow`` hands each Arrow batch of source rows (data, partition key, arrival time,
   sequence number) to ``etl.columnar.transform_arrow`` -- the columnar transform the local ETL
   runs (pyarrow JSON reader + compute kernels, per-record ``etl.transforms`` path for the records
   it leaves), so the two runners agree by construction.  It returns the rows of every table and
   the quarantine in one wide schema (``columnar.union_schema``) with a ``_table`` column;
2. a window over (``_table``, ``_id``) ordered by (server time, record bytes) keeps one row per id
   across the whole batch: the rule of ``transforms.prefer``, as the local ETL applies it;
3. each table (and the quarantine) is written with Spark's Parquet writer, zstd, to a staging
   directory of this batch: ``<lake>/_staging/batch-<id>/<table>/dt=../hour=../part-*.parquet``,
   one file per partition (``repartition`` on (table, dt, hour) puts each partition's rows in one
   task, sorted by id; the result is cached, so the transform runs once for all tables);
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
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from etl import columnar
from etl.transforms import QUARANTINE_FIELDS, QUARANTINE_TABLE
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
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    spark = df.sparkSession
    for k in ("spark.sql.parquet.outputTimestampType", "spark.sql.session.timeZone"):
        spark.conf.set(k, SPARK_CONF[k])
    cols = {**DEFAULT_COLUMNS, **(columns or {})}
    lake_path = lake_path.rstrip("/")
    quarantine_path = (quarantine_path or f"{lake_path}/{QUARANTINE_TABLE}").rstrip("/")
    lake_at = lake_at or schema.now_utc()

    src = df.select(
        F.col(cols["data"]).cast("binary"),
        F.col(cols["partition_key"]).cast("string"),
        F.col(cols["arrived_at"]).cast("timestamp"),
        F.col(cols["source"]).cast("string"),
    ).toDF(*columnar.SOURCE_COLUMNS)
    rows = src.mapInArrow(_transform_batches, from_arrow_schema(columnar.union_schema(), prefer_timestamp_ntz=True))
    table, rid = F.col(columnar.TABLE_COLUMN), F.col(columnar.ID_COLUMN)
    first = Window.partitionBy(table, rid).orderBy(columnar.SERVER_COLUMN, columnar.DATA_COLUMN)
    unique = rows.withColumn("_rank", F.row_number().over(first)).where(
        (table == QUARANTINE_TABLE) | (F.col("_rank") == 1)  # quarantine rows have no id: all kept
    )
    parallelism = max(1, spark.sparkContext.defaultParallelism)
    placed = (
        # every (table, dt, hour) group lands whole in one partition, sorted by id: one file per
        # partition directory, written without another shuffle
        unique.repartition(parallelism, table, "dt", "hour")
        .sortWithinPartitions(table, "dt", "hour", rid, "source")
        .persist()
    )
    try:
        # one job transforms the batch and counts rows per table; tables without rows are not written
        per_table = {r[0]: r[1] for r in placed.groupBy(table).count().collect()}
        staging = f"{lake_path}/{STAGING_DIR}/batch-{batch_id}"
        targets: dict[str, str] = {}
        for kind in (*schema.KINDS, None):
            name = schema.TABLE[kind] if kind else QUARANTINE_TABLE
            targets[name] = f"{lake_path}/{name}" if kind else quarantine_path
            if not per_table.get(name):
                continue
            fields = [f.name for f in schema.lake_fields(kind)] if kind else [n for n, _ in QUARANTINE_FIELDS]
            values = [F.lit(lake_at).alias(n) if n == schema.LAKE_COLUMN else F.col(n) for n in fields]
            (
                placed.where(table == name)
                .select(*values, "dt", "hour")
                .write.mode("overwrite")
                .option("compression", COMPRESSION)
                .partitionBy("dt", "hour")
                .parquet(f"{staging}/{name}")
            )
        published = _publish(spark, staging, targets, batch_id)
    finally:
        placed.unpersist()
    counts = {t: int(per_table.get(t, 0)) for t in targets}
    log.info("batch %d: rows %s, %d files published", batch_id, counts, published)
    return counts


def _transform_batches(batches: Iterator[Any]) -> Iterator[Any]:
    """``mapInArrow`` function: :func:`etl.columnar.transform_arrow` of each Arrow batch of source rows."""
    for batch in batches:
        if batch.num_rows:
            yield from columnar.transform_arrow(batch).to_batches()


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
