"""View files: Trino/Athena parsing, dependency order, DuckDB transpilation and the local lake connection."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from analytics.sql import (
    ANALYST_VIEWS,
    LAKE_TABLES,
    NoLakeData,
    UnknownView,
    ViewDefinitionError,
    get_view,
    load_views,
    open_lake,
    to_duckdb,
    view_names,
)
from tests.analytics.conftest import CAM_1A, CAM_L, ticket, utc
from tests.analytics.lake_fixture import LakeBuilder

VIEWS = load_views()


@pytest.mark.parametrize("dialect", ["trino", "athena"])
@pytest.mark.parametrize("view", VIEWS, ids=lambda v: v.name)
def test_every_view_parses_as_a_query_in_athena_dialects(view, dialect):
    tree = sqlglot.parse_one(view.sql, read=dialect)
    assert isinstance(tree, exp.Query), f"{view.name} parsed as {type(tree).__name__}, not a query"
    ddl = sqlglot.parse_one(view.athena_ddl(), read=dialect)
    assert isinstance(ddl, exp.Create) and ddl.args["kind"] == "VIEW"
    assert ddl.this.name == view.name


@pytest.mark.parametrize("view", VIEWS, ids=lambda v: v.name)
def test_view_sql_calls_no_function_unknown_to_the_transpiler_except_the_rewritten_ones(view):
    tree = sqlglot.parse_one(view.sql, read="trino")
    unknown = {f.name.lower() for f in tree.find_all(exp.Anonymous)}
    assert unknown <= {"with_timezone", "at_timezone"}, f"{view.name}: {unknown}"
    duck = to_duckdb(view.sql).upper()
    assert "WITH_TIMEZONE" not in duck and "AT_TIMEZONE" not in duck


def test_required_views_exist_and_are_listed_in_reading_order():
    assert view_names() == list(ANALYST_VIEWS)
    helpers = set(view_names(helpers=True)) - set(ANALYST_VIEWS)
    assert helpers == {"reads_unique", "frames_unique", "box_office_unique", "ticket_passages"}


def test_views_come_after_the_views_they_read():
    seen: set[str] = set()
    for v in VIEWS:
        assert set(v.depends_on) <= seen, f"{v.name} needs {set(v.depends_on) - seen} first"
        seen.add(v.name)
    assert get_view("daily_summary").depends_on == ("hourly_entries", "hourly_peak")


def test_only_lake_tables_are_read_directly_and_only_through_the_dedup_views():
    for v in VIEWS:
        tables = {t.name for t in sqlglot.parse_one(v.sql, read="trino").find_all(exp.Table)}
        direct = tables & set(LAKE_TABLES)
        if direct:
            assert v.name.endswith("_unique"), f"{v.name} reads {direct} without de-duplication"


def test_load_views_rejects_a_cycle_and_an_unknown_table(tmp_path):
    (tmp_path / "a.sql").write_text("SELECT * FROM b")
    (tmp_path / "b.sql").write_text("SELECT * FROM a")
    with pytest.raises(ViewDefinitionError, match="cycle"):
        load_views(tmp_path)
    (tmp_path / "b.sql").write_text("SELECT * FROM nowhere")
    with pytest.raises(ViewDefinitionError, match="nowhere"):
        load_views(tmp_path)


def test_get_view_names_the_available_views_when_unknown():
    with pytest.raises(UnknownView, match="hourly_peak"):
        get_view("hourly_peek")


@pytest.mark.parametrize(
    ("utc_ts", "tz", "local"),
    [
        (datetime(2026, 12, 1, 2, 30), "America/Sao_Paulo", datetime(2026, 11, 30, 23, 30)),
        (datetime(2026, 7, 1, 2, 30), "Asia/Kolkata", datetime(2026, 7, 1, 8, 0)),  # +05:30
        (datetime(2026, 7, 1, 23, 30), "Europe/Lisbon", datetime(2026, 7, 2, 0, 30)),  # summer time +01:00
        (datetime(2026, 1, 1, 23, 30), "Europe/Lisbon", datetime(2026, 1, 1, 23, 30)),  # winter +00:00
    ],
)
def test_trino_local_time_expression_runs_on_duckdb_with_a_zone_per_row(utc_ts, tz, local):
    sql = to_duckdb("SELECT CAST(at_timezone(with_timezone(ts, 'UTC'), tz) AS TIMESTAMP) AS l FROM t")
    con = duckdb.connect()
    con.execute("CREATE TABLE t (ts TIMESTAMP, tz VARCHAR)")
    con.execute("INSERT INTO t VALUES (?, ?)", [utc_ts, tz])
    assert con.execute(sql).fetchone() == (local,)


def test_open_lake_on_a_directory_without_parquet_says_what_to_do(tmp_path):
    (tmp_path / "reads").mkdir()
    with pytest.raises(NoLakeData, match="run the local pipeline") as e:
        open_lake(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_open_lake_with_only_frames_still_runs_every_view(tmp_path):
    lake = LakeBuilder()
    lake.frame(CAM_L, utc(2026, 11, 30, 12), decode_ms=4.0)
    lake.write(tmp_path)
    con = open_lake(tmp_path)
    for name in view_names(helpers=True):
        con.execute(f"SELECT * FROM {name}").fetchall()
    assert con.execute("SELECT count(*), sum(entries) FROM hourly_entries").fetchone() == (24, 0)
    assert con.execute("SELECT frames, empty_frames FROM camera_health").fetchone() == (1, 1)


def test_lake_tables_have_athena_types_on_duckdb(lake_con):
    types = dict(lake_con.execute("SELECT column_name, column_type FROM (DESCRIBE reads)").fetchall())
    assert types["dt"] == "VARCHAR" and types["hour"] == "INTEGER"
    assert types["captured_at"] == "TIMESTAMP"  # UTC wall time, as Athena reads Parquet timestamps
    assert types["session_start"] == "TIMESTAMP"
    (captured,) = lake_con.execute("SELECT min(captured_at) FROM reads WHERE ticket_id = 'L1'").fetchone()
    assert captured == datetime(2026, 11, 30, 20, 50)


def test_hourly_entries_reads_files_written_in_a_later_micro_batch(tmp_path):
    lake = LakeBuilder()
    lake.frame(CAM_1A, utc(2026, 11, 30, 21), [ticket("X1", "S1", "2026-11-30T19:00", "R1")])
    lake.write(tmp_path, "batch-0")
    lake.frame(CAM_1A, utc(2026, 11, 30, 21, 5), [ticket("X2", "S1", "2026-11-30T19:00", "R1")])
    lake.write(tmp_path, "batch-1")
    con = open_lake(tmp_path)
    assert con.execute("SELECT entries FROM hourly_entries WHERE hour = 18").fetchone() == (2,)
