"""Athena table DDL: parses, carries the schema's columns, and its partition projection matches the lake layout."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from analytics.ddl import (
    DT_FORMAT,
    HOUR_DIGITS,
    PROJECTION_START,
    all_tables_ddl,
    location_template,
    table_ddl,
    table_parameters,
)
from stream.schema import KINDS, PARTITION_COLUMNS, TABLE, athena_columns, partition_values

ROOT = "s3://monuv-lake-123/lake"
JAVA_TO_STRFTIME = {"yyyy": "%Y", "MM": "%m", "dd": "%d"}


def _strftime(java_pattern: str) -> str:
    out = java_pattern
    for java, py in JAVA_TO_STRFTIME.items():
        out = out.replace(java, py)
    return out


def _properties(tree: exp.Create) -> dict[str, str]:
    props = {}
    for p in tree.find_all(exp.Property):
        if isinstance(p.this, exp.Literal) and isinstance(p.args.get("value"), exp.Literal):
            props[p.this.name] = p.args["value"].name
    return props


@pytest.mark.parametrize("dialect", ["athena", "hive"])
@pytest.mark.parametrize("kind", KINDS)
def test_table_ddl_parses_as_a_create_table_with_the_schema_columns(kind, dialect):
    tree = sqlglot.parse_one(table_ddl("monuv", ROOT, kind), read=dialect)
    assert isinstance(tree, exp.Create) and tree.args["kind"] == "TABLE", "parsed as an opaque command"
    schema = tree.this
    assert schema.this.name == TABLE[kind] and schema.this.db == "monuv"
    cols = [(c.name, c.args["kind"].sql(dialect="hive").lower().replace(" ", "")) for c in schema.expressions]
    expected = [(n, t.replace(" ", "")) for n, t in athena_columns(kind)]
    assert cols == expected
    partitioned = tree.find(exp.PartitionedByProperty)
    assert [c.name for c in partitioned.this.expressions] == list(PARTITION_COLUMNS)
    assert tree.find(exp.LocationProperty).this.name == f"{ROOT}/{TABLE[kind]}/"


@pytest.mark.parametrize("kind", KINDS)
def test_partition_projection_properties_in_the_ddl(kind):
    props = _properties(sqlglot.parse_one(table_ddl("monuv", ROOT, kind), read="athena"))
    assert props["projection.enabled"] == "true"
    assert (props["projection.dt.type"], props["projection.dt.format"]) == ("date", "yyyy-MM-dd")
    assert props["projection.dt.range"] == f"{PROJECTION_START},NOW"
    assert (props["projection.dt.interval"], props["projection.dt.interval.unit"]) == ("1", "DAYS")
    assert (props["projection.hour.type"], props["projection.hour.range"]) == ("integer", "0,23")
    assert props["projection.hour.digits"] == "2"
    assert props["storage.location.template"] == f"{ROOT}/{TABLE[kind]}/dt=${{dt}}/hour=${{hour}}/"
    assert "MSCK" not in table_ddl("monuv", ROOT, kind).upper()


def test_projected_locations_are_the_directories_the_lake_layout_uses(fixture_lake: Path):
    """Every partition directory of the (schema-written) lake is the template filled with projected values."""
    dirs = {p.parent.relative_to(fixture_lake).as_posix() for p in fixture_lake.rglob("*.parquet")}
    assert dirs, "fixture lake is empty"
    for rel in dirs:
        table, dt_part, hour_part = rel.split("/")
        kind = next(k for k in KINDS if TABLE[k] == table)
        day = datetime.strptime(dt_part.removeprefix("dt="), _strftime(DT_FORMAT)).date()
        hour = int(hour_part.removeprefix("hour="))
        projected = location_template(ROOT, kind).replace("${dt}", day.strftime(_strftime(DT_FORMAT)))
        projected = projected.replace("${hour}", str(hour).zfill(HOUR_DIGITS))
        assert projected == f"{ROOT}/{rel}/"


def test_projection_formats_equal_partition_values_of_stream_schema_for_every_hour():
    start = datetime(2026, 3, 28, tzinfo=UTC)  # spans a European DST change: partitions stay UTC
    for h in range(0, 24 * 3):
        ts = start + timedelta(hours=h, minutes=59)
        dt, hour = partition_values(ts)
        assert dt == ts.strftime(_strftime(DT_FORMAT))
        assert hour == str(ts.hour).zfill(HOUR_DIGITS)
        assert 0 <= int(hour) <= 23


def test_projection_range_starts_before_today_and_is_a_valid_date():
    assert date.fromisoformat(PROJECTION_START) <= datetime.now(UTC).date()
    assert table_parameters(ROOT, "read", "2025-06-01")["projection.dt.range"] == "2025-06-01,NOW"


def test_all_tables_ddl_covers_the_three_lake_tables_and_rejects_bad_roots():
    assert sorted(all_tables_ddl("monuv", ROOT)) == sorted(TABLE.values())
    with pytest.raises(ValueError, match="s3://"):
        table_ddl("monuv", "/local/path", "read")
    with pytest.raises(ValueError, match="unknown record kind"):
        table_ddl("monuv", ROOT, "ticket")
