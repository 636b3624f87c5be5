"""Athena table DDL for the lake tables (reads, frames, box_office), with partition projection.

The columns come from :func:`stream.schema.athena_columns`; the partitions are the ETL's layout
``<root>/<table>/dt=YYYY-MM-DD/hour=HH/`` (UTC event time of ``captured_at``).  Partition projection lets
Athena compute the partitions from the query's ``dt``/``hour`` predicates, so no crawler and no
``MSCK REPAIR TABLE`` are ever needed: new hours are queryable as soon as the ETL writes them.

* ``dt``   -- ``string`` column, projection type ``date``, format ``yyyy-MM-dd`` (Java pattern), one-day steps;
* ``hour`` -- ``int`` column, projection type ``integer``, range 0..23, ``digits`` 2 (``hour=07``).

Athena's DDL is Hive DDL (backquoted identifiers; ``reads`` is a reserved DDL word), not Trino SQL; the
views (:mod:`analytics.sql`) are Trino SQL.  ``infra.py`` may run :func:`table_ddl` through Athena or build
Glue tables from :func:`table_parameters` / :func:`partition_keys` / :func:`columns` -- both describe the
same table.  Pure module: no AWS SDK.
"""

from __future__ import annotations

from collections.abc import Mapping

from stream.schema import KINDS, TABLE, athena_columns

PROJECTION_START = "2026-01-01"
"""First ``dt`` Athena projects (inclusive); the range ends at ``NOW``.  Keep it close to the first data:
query planning enumerates the range when a query has no ``dt`` predicate."""

DT_FORMAT = "yyyy-MM-dd"
"""Java ``DateTimeFormatter`` pattern of the ``dt`` partition values (Python: ``%Y-%m-%d``)."""

HOUR_DIGITS = 2
"""Zero-padding of the ``hour`` partition values (``hour=07``)."""

PARTITION_TYPES: Mapping[str, str] = {"dt": "string", "hour": "int"}
"""Athena (Hive) types of the partition columns, in the order of ``stream.schema.PARTITION_COLUMNS``."""

PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
PARQUET_INPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"


def table_location(lake_root: str, kind: str) -> str:
    """S3 prefix of a lake table, ending in ``/``: ``<lake_root>/<table>/``.

    Raises:
        ValueError: ``lake_root`` is not an ``s3://`` URI or ``kind`` is unknown.
    """
    if not lake_root.startswith("s3://"):
        raise ValueError(f"lake root must be an s3:// URI, got {lake_root!r}")
    if kind not in TABLE:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {', '.join(KINDS)}")
    return f"{lake_root.rstrip('/')}/{TABLE[kind]}/"


def location_template(lake_root: str, kind: str) -> str:
    """``storage.location.template``: the table location plus ``dt=${dt}/hour=${hour}/`` (the ETL's layout)."""
    return table_location(lake_root, kind) + "dt=${dt}/hour=${hour}/"


def table_parameters(lake_root: str, kind: str, projection_start: str = PROJECTION_START) -> dict[str, str]:
    """Glue/Athena table parameters: Parquet classification and partition projection on ``dt``/``hour``."""
    return {
        "classification": "parquet",
        "EXTERNAL": "TRUE",
        "projection.enabled": "true",
        "projection.dt.type": "date",
        "projection.dt.format": DT_FORMAT,
        "projection.dt.range": f"{projection_start},NOW",
        "projection.dt.interval": "1",
        "projection.dt.interval.unit": "DAYS",
        "projection.hour.type": "integer",
        "projection.hour.range": "0,23",
        "projection.hour.interval": "1",
        "projection.hour.digits": str(HOUR_DIGITS),
        "storage.location.template": location_template(lake_root, kind),
    }


def columns(kind: str) -> list[tuple[str, str]]:
    """(name, Athena type) of the data columns of a lake table (record fields + ``lake_at``)."""
    return athena_columns(kind)


def partition_keys() -> list[tuple[str, str]]:
    """(name, Athena type) of the partition columns, in layout order."""
    return list(PARTITION_TYPES.items())


def _quote(name: str) -> str:
    if "`" in name:
        raise ValueError(f"identifier {name!r} contains a backquote")
    return f"`{name}`"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def table_ddl(database: str, lake_root: str, kind: str, projection_start: str = PROJECTION_START) -> str:
    """``CREATE EXTERNAL TABLE IF NOT EXISTS`` statement of one lake table, for Athena.

    ``database`` is the Glue database; ``lake_root`` the S3 URI under which the ETL writes
    ``<table>/dt=.../hour=.../*.parquet``.

    Raises:
        ValueError: bad ``lake_root``, unknown ``kind``, or an identifier with a backquote.
    """
    location = table_location(lake_root, kind)  # validates both
    cols = ",\n".join(f"  {_quote(n)} {t}" for n, t in columns(kind))
    parts = ", ".join(f"{_quote(n)} {t}" for n, t in partition_keys())
    props = {k: v for k, v in table_parameters(lake_root, kind, projection_start).items() if k != "EXTERNAL"}
    tblprops = ",\n".join(f"  {_literal(k)} = {_literal(v)}" for k, v in props.items())
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS {_quote(database)}.{_quote(TABLE[kind])} (\n{cols}\n)\n"
        f"PARTITIONED BY ({parts})\n"
        f"STORED AS PARQUET\n"
        f"LOCATION {_literal(location)}\n"
        f"TBLPROPERTIES (\n{tblprops}\n)"
    )


def all_tables_ddl(database: str, lake_root: str, projection_start: str = PROJECTION_START) -> dict[str, str]:
    """Table name -> DDL for every lake table (reads, frames, box_office)."""
    return {TABLE[k]: table_ddl(database, lake_root, k, projection_start) for k in KINDS}
