"""Shared views computed once per connection (``analytics.sql.materialize``) give the same rows as the live views."""

from __future__ import annotations

import math
from datetime import datetime

import duckdb
import pytest

from analytics.query import run_view
from analytics.sql import materialize, materialized, open_lake, shared_views, to_duckdb, view_names
from tests.analytics.conftest import CAM_1A, CAM_L, build_fixture_lake, ticket, utc
from tests.analytics.lake_fixture import LakeBuilder


def _sorted_rows(con: duckdb.DuckDBPyConnection, view: str) -> tuple[list[str], list[tuple]]:
    cur = con.execute(f"SELECT * FROM {view}")
    columns = [d[0] for d in cur.description]
    return columns, sorted(cur.fetchall(), key=lambda r: tuple((v is None, str(v)) for v in r))


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b


@pytest.fixture(scope="module")
def cached_con(fixture_lake):
    con = open_lake(fixture_lake)
    materialize(con)
    yield con
    con.close()


def test_the_shared_views_are_the_ones_other_views_read():
    assert shared_views() == {
        "reads_unique",
        "frames_unique",
        "box_office_unique",
        "ticket_passages",
        "hourly_entries",
        "hourly_peak",
    }


@pytest.mark.parametrize("view", view_names(helpers=True))
def test_every_view_gives_the_same_rows_materialized_and_live(view, cached_con, lake_con):
    assert materialized(lake_con) == set(), "the live connection must not be materialized"
    assert materialized(cached_con) == shared_views()
    live_cols, live = _sorted_rows(lake_con, view)
    cached_cols, cached = _sorted_rows(cached_con, view)
    assert cached_cols == live_cols
    assert len(cached) == len(live) > 0
    for got, want in zip(cached, live, strict=True):
        assert all(_same(g, w) for g, w in zip(got, want, strict=True)), f"{view}: {got} != {want}"


def test_materialized_tables_keep_the_view_column_types(cached_con, lake_con):
    for view in sorted(shared_views()):
        live = lake_con.execute(f"DESCRIBE {view}").fetchall()
        cached = cached_con.execute(f"DESCRIBE {view}").fetchall()
        assert [r[:2] for r in cached] == [r[:2] for r in live], view


def test_run_view_materializes_only_the_shared_views_it_reads(fixture_lake):
    con = open_lake(fixture_lake)
    run_view(con, "pipeline_latency")
    assert materialized(con) == {"frames_unique"}
    run_view(con, "hourly_entries", cinema="sp")
    assert materialized(con) == {"frames_unique", "reads_unique", "ticket_passages", "hourly_entries"}
    assert materialize(con, ["daily_summary"]) == ["hourly_peak"]  # the rest is already there
    assert materialize(con, ["daily_summary"]) == []
    con.close()


def test_run_view_without_cache_leaves_the_connection_live(fixture_lake):
    con = open_lake(fixture_lake)
    cached = run_view(con, "daily_summary")
    assert materialized(con) == {"reads_unique", "frames_unique", "ticket_passages", "hourly_entries", "hourly_peak"}
    live_con = open_lake(fixture_lake)
    live = run_view(live_con, "daily_summary", cache=False)
    assert materialized(live_con) == set()
    assert live.rows == cached.rows and len(live.rows) == 4  # sp and lis, 30 Nov and 1 Dec
    con.close()
    live_con.close()


def test_materialized_views_are_a_snapshot_until_the_lake_is_opened_again(tmp_path):
    lake = LakeBuilder()
    lake.frame(CAM_1A, utc(2026, 11, 30, 21), [ticket("X1", "S1", "2026-11-30T19:00", "R1")])
    lake.write(tmp_path, "batch-0")
    con = open_lake(tmp_path)
    assert run_view(con, "hourly_entries", cinema="sp").as_dicts()[18]["entries"] == 1
    lake.frame(CAM_1A, utc(2026, 11, 30, 21, 5), [ticket("X2", "S1", "2026-11-30T19:00", "R1")])
    lake.write(tmp_path, "batch-1")
    assert run_view(con, "hourly_entries", cinema="sp").as_dicts()[18]["entries"] == 1  # cached
    # cache=False does not undo what the connection already materialized
    assert run_view(con, "hourly_entries", cinema="sp", cache=False).as_dicts()[18]["entries"] == 1
    fresh = open_lake(tmp_path)
    assert run_view(fresh, "hourly_entries", cinema="sp").as_dicts()[18]["entries"] == 2
    con.close()
    fresh.close()


def test_materialize_works_on_a_lake_without_reads(tmp_path):
    lake = LakeBuilder()
    lake.frame(CAM_L, utc(2026, 11, 30, 12), decode_ms=4.0)
    lake.write(tmp_path)
    con = open_lake(tmp_path)
    assert set(materialize(con)) == shared_views() == materialized(con)
    assert con.execute("SELECT count(*), sum(entries) FROM hourly_entries").fetchone() == (24, 0)
    assert con.execute("SELECT count(*) FROM reads_unique").fetchone() == (0,)


def test_two_fixture_lakes_written_alike_give_identical_cached_results(tmp_path, lake_con):
    build_fixture_lake(tmp_path)
    con = open_lake(tmp_path)
    materialize(con)
    assert _sorted_rows(con, "ticket_anomalies") == _sorted_rows(lake_con, "ticket_anomalies")
    con.close()


@pytest.mark.parametrize(
    ("received", "captured"),
    [
        (datetime(2026, 9, 30, 18, 45, 13, 321586), datetime(2026, 9, 30, 18, 45, 11, 321586)),
        (datetime(2026, 12, 1, 0, 0, 0, 1), datetime(2026, 11, 30, 23, 58, 0)),
        (datetime(2026, 3, 29, 1, 30), datetime(2026, 3, 29, 0, 30)),  # across Lisbon's DST change (UTC stays)
    ],
)
def test_unix_time_of_a_utc_timestamp_runs_without_zone_lookups_and_keeps_its_value(received, captured):
    trino = "SELECT to_unixtime(with_timezone(r, 'UTC')) - to_unixtime(with_timezone(c, 'UTC')) FROM t"
    duck = to_duckdb(trino)
    assert "TIMEZONE" not in duck.upper() and "EPOCH(r)" in duck
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE t (r TIMESTAMP, c TIMESTAMP)")
    con.execute("INSERT INTO t VALUES (?, ?)", [received, captured])
    (seconds,) = con.execute(duck).fetchone()
    assert seconds == pytest.approx((received - captured).total_seconds(), abs=1e-6)
    (old,) = con.execute("SELECT epoch(timezone('UTC', r)) - epoch(timezone('UTC', c)) FROM t").fetchone()
    assert seconds == pytest.approx(old, abs=1e-6)


def test_unix_time_in_another_zone_keeps_the_zone_conversion():
    duck = to_duckdb("SELECT to_unixtime(with_timezone(ts, tz)) FROM t").upper()
    assert "TIMEZONE(TZ, TS)" in duck
