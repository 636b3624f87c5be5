"""Every view, run on DuckDB (transpiled from the Athena SQL) over the fixture lake, against hand-computed results.

The fixture is described in ``conftest.py``; the expected numbers below are worked out from that table.
"""

from __future__ import annotations

from datetime import date, datetime

import pytest

D30, D01 = date(2026, 11, 30), date(2026, 12, 1)


def rows(con, sql: str) -> list[dict]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


# --- de-duplication -------------------------------------------------------------------------------


def test_duplicate_read_and_frame_across_micro_batches_are_kept_once(lake_con):
    assert lake_con.execute("SELECT count(*), count(DISTINCT read_id) FROM reads").fetchone() == (56, 55)
    assert lake_con.execute("SELECT count(*) FROM reads_unique").fetchone() == (55,)
    assert lake_con.execute("SELECT count(*), count(DISTINCT frame_id) FROM frames").fetchone() == (61, 60)
    assert lake_con.execute("SELECT count(*) FROM frames_unique").fetchone() == (60,)
    assert lake_con.execute("SELECT count(*) FROM box_office_unique").fetchone() == (4,)


def test_dedup_keeps_the_copy_that_reached_the_lake_first(lake_con):
    (lag,) = lake_con.execute(
        "SELECT max(epoch(lake_at) - epoch(received_at)) FROM frames_unique WHERE camera_id = 'sp-1b'"
    ).fetchone()
    assert lag == pytest.approx(60.0)  # the retried copy arrived 5 minutes after reception


def test_local_time_follows_each_records_time_zone(lake_con):
    got = rows(
        lake_con,
        "SELECT dt, hour, local_at, local_day, local_hour FROM reads_unique WHERE ticket_id IN ('T5', 'L1') "
        "ORDER BY ticket_id",
    )
    assert got == [
        {
            "dt": "2026-11-30",
            "hour": 20,
            "local_at": datetime(2026, 11, 30, 20, 50),
            "local_day": D30,
            "local_hour": 20,
        },
        {  # UTC 2026-12-01 02:30 is still Nov 30 in Sao Paulo
            "dt": "2026-12-01",
            "hour": 2,
            "local_at": datetime(2026, 11, 30, 23, 30),
            "local_day": D30,
            "local_hour": 23,
        },
    ]


# --- hourly_entries -------------------------------------------------------------------------------


def test_hourly_entries_counts_a_ticket_seen_in_40_consecutive_frames_once(lake_con):
    r = rows(
        lake_con, "SELECT * FROM hourly_entries WHERE cinema_id='sp' AND room_id='R1' AND day='2026-11-30' AND hour=18"
    )
    # T1: 40 reads in 40 frames, T2: 4 reads by two cameras of the room (one more copy was a duplicate)
    assert r == [
        {
            "cinema_id": "sp",
            "room_id": "R1",
            "day": D30,
            "hour": 18,
            "entries": 2,
            "reentries": 0,
            "reads": 44,
            "invalid_reads": 0,
            "tickets": 2,
            "cameras": 2,
        }
    ]


def test_hourly_entries_nonzero_hours_match_hand_count(lake_con):
    got = {
        (r["cinema_id"], r["room_id"], r["day"], r["hour"]): (
            r["entries"],
            r["reentries"],
            r["reads"],
            r["invalid_reads"],
        )
        for r in rows(lake_con, "SELECT * FROM hourly_entries WHERE reads > 0 OR entries > 0")
    }
    assert got == {
        ("sp", "R1", D30, 18): (2, 0, 44, 0),
        ("sp", "R1", D30, 19): (3, 1, 6, 1),  # T3, T4, T8 enter; T3 re-enters; the promo code is invalid
        ("sp", "R2", D30, 18): (1, 0, 1, 0),  # T7
        ("sp", "R2", D30, 19): (1, 0, 1, 0),  # T4's first room
        ("sp", "R2", D30, 23): (1, 0, 1, 0),  # T5: 02:30 UTC on Dec 1 is 23:30 local on Nov 30
        ("sp", "R2", D01, 0): (1, 0, 1, 0),  # T6: 03:30 UTC is 00:30 local on Dec 1
        ("lis", "R1", D30, 20): (1, 0, 1, 0),
    }


def test_hourly_entries_gives_all_24_local_hours_of_every_active_day_with_zeros(lake_con):
    got = rows(
        lake_con,
        "SELECT cinema_id, room_id, day, count(*) AS n, min(hour) AS lo, max(hour) AS hi, "
        "count(DISTINCT hour) AS distinct_hours, sum(CASE WHEN entries = 0 THEN 1 ELSE 0 END) AS zero_hours "
        "FROM hourly_entries GROUP BY ALL ORDER BY ALL",
    )
    assert got == [
        # lis R1 on Dec 1 only had a frame without code: still a full day of zeros
        {
            "cinema_id": "lis",
            "room_id": "R1",
            "day": D30,
            "n": 24,
            "lo": 0,
            "hi": 23,
            "distinct_hours": 24,
            "zero_hours": 23,
        },
        {
            "cinema_id": "lis",
            "room_id": "R1",
            "day": D01,
            "n": 24,
            "lo": 0,
            "hi": 23,
            "distinct_hours": 24,
            "zero_hours": 24,
        },
        {
            "cinema_id": "sp",
            "room_id": "R1",
            "day": D30,
            "n": 24,
            "lo": 0,
            "hi": 23,
            "distinct_hours": 24,
            "zero_hours": 22,
        },
        {
            "cinema_id": "sp",
            "room_id": "R2",
            "day": D30,
            "n": 24,
            "lo": 0,
            "hi": 23,
            "distinct_hours": 24,
            "zero_hours": 21,
        },
        {
            "cinema_id": "sp",
            "room_id": "R2",
            "day": D01,
            "n": 24,
            "lo": 0,
            "hi": 23,
            "distinct_hours": 24,
            "zero_hours": 23,
        },
    ]


# --- hourly_peak / daily_summary ------------------------------------------------------------------


def test_hourly_peak_per_cinema_and_room(lake_con):
    got = {
        (r["cinema_id"], r["room_id"], r["day"]): (r["peak_hour"], r["peak_entries"], r["day_entries"])
        for r in rows(lake_con, "SELECT * FROM hourly_peak")
    }
    assert got == {
        ("sp", None, D30): (19, 4, 8),  # all rooms: 18h 3, 19h 4, 23h 1
        ("sp", "R1", D30): (19, 3, 5),
        ("sp", "R2", D30): (18, 1, 3),  # three hours tie at 1: the earliest wins
        ("sp", None, D01): (0, 1, 1),
        ("sp", "R2", D01): (0, 1, 1),
        ("lis", None, D30): (20, 1, 1),
        ("lis", "R1", D30): (20, 1, 1),
        ("lis", None, D01): (None, 0, 0),  # active day without any entry: no peak hour
        ("lis", "R1", D01): (None, 0, 0),
    }
    (share,) = lake_con.execute(
        "SELECT peak_share FROM hourly_peak WHERE cinema_id='sp' AND room_id='R2' AND day=?", [D30]
    ).fetchone()
    assert share == pytest.approx(1 / 3)


def test_daily_summary_per_cinema_and_local_day(lake_con):
    got = rows(lake_con, "SELECT * FROM daily_summary ORDER BY cinema_id, day")
    assert [(r["cinema_id"], r["day"]) for r in got] == [("lis", D30), ("lis", D01), ("sp", D30), ("sp", D01)]
    sp30 = got[2]
    assert sp30 == {
        "cinema_id": "sp",
        "day": D30,
        "entries": 8,
        "reentries": 1,
        "reads": 53,
        "invalid_reads": 1,
        "invalid_share": pytest.approx(1 / 53),
        "peak_hour": 19,
        "peak_entries": 4,
        "busiest_room": "R1",
        "busiest_room_entries": 5,
        "rooms": 2,
    }
    lis01 = got[1]
    assert (lis01["entries"], lis01["reads"], lis01["invalid_share"], lis01["peak_hour"], lis01["busiest_room"]) == (
        0,
        0,
        None,
        None,
        None,
    )
    assert (got[3]["entries"], got[3]["peak_hour"], got[3]["busiest_room"]) == (1, 0, "R2")


# --- ticket_anomalies -----------------------------------------------------------------------------


def test_ticket_anomalies_lists_reentry_two_rooms_wrong_day_and_refusals(lake_con):
    got = [
        (
            r["anomaly"],
            r["cinema_id"],
            r["room_id"],
            r["day"],
            r["local_at"],
            r["ticket_id"],
            r["session_id"],
            r["detail"],
        )
        for r in rows(lake_con, "SELECT * FROM ticket_anomalies ORDER BY local_at, anomaly")
    ]
    assert got == [
        ("box_office_unknown_ticket", "sp", "R2", D30, datetime(2026, 11, 30, 18), "T7", "S0", "no such ticket"),
        ("wrong_day", "sp", "R2", D30, datetime(2026, 11, 30, 18), "T7", "S0", "session day is 2026-11-29"),
        (
            "box_office_already_used",
            "sp",
            "R1",
            D30,
            datetime(2026, 11, 30, 19, 30),
            "T3",
            "S1",
            "ticket already used at 19:10",
        ),
        (
            "reentry",
            "sp",
            "R1",
            D30,
            datetime(2026, 11, 30, 19, 30),
            "T3",
            "S1",
            "seen again 1199 s after its previous read",
        ),
        ("two_rooms", "sp", "R1", D30, datetime(2026, 11, 30, 19, 45), "T4", "S2", "first entered room R2"),
    ]


def test_entry_late_in_the_local_evening_is_not_flagged_as_wrong_day(lake_con):
    # T5 enters at 23:30 local on Nov 30 (UTC Dec 1) for a 23:45 session: same LOCAL day, no anomaly
    assert lake_con.execute("SELECT count(*) FROM ticket_anomalies WHERE ticket_id IN ('T5', 'T6')").fetchone() == (0,)


# --- camera_health --------------------------------------------------------------------------------


def test_camera_health_counts_outcomes_and_reject_reasons(lake_con):
    (r,) = rows(lake_con, "SELECT * FROM camera_health WHERE camera_id='sp-1a' AND day='2026-11-30' AND hour=19")
    assert (r["frames"], r["ok_frames"], r["empty_frames"], r["rejected_frames"]) == (10, 6, 2, 2)
    assert r["empty_ratio"] == pytest.approx(2 / 8)
    assert r["rejects_by_reason"] == "not_an_image=1, too_many_bytes=1"
    # decoded frames: 10, 20 x6, 30 ms (rejected frames excluded); approx_percentile -> tolerance
    assert r["decode_ms_p50"] == pytest.approx(20.0, abs=0.5)
    assert 20.0 <= r["decode_ms_p95"] <= 30.0
    assert r["last_frame_at"] == datetime(2026, 11, 30, 19, 50)
    assert (r["silent_minutes"], r["silent"]) == (0, False)


def test_camera_health_makes_a_silent_camera_stand_out(lake_con):
    got = [
        (r["day"], r["hour"], r["frames"], r["silent_minutes"], r["silent"], r["camera_last_frame_at"])
        for r in rows(lake_con, "SELECT * FROM camera_health WHERE camera_id='sp-1b' ORDER BY day, hour")
    ]
    last = datetime(2026, 11, 30, 18, 55, 1)
    assert got == [
        (D30, 18, 1, 0, False, last),
        (D30, 19, 0, 54, True, last),  # the cinema's last frame that hour: 22:50:00 UTC; sp-1b's: 21:55:01
        (D30, 23, 0, 274, True, last),
        (D01, 0, 0, 334, True, last),
    ]


def test_camera_health_is_not_silent_below_15_minutes(lake_con):
    (r,) = rows(lake_con, "SELECT * FROM camera_health WHERE camera_id='sp-2' AND day='2026-11-30' AND hour=19")
    assert (r["frames"], r["silent_minutes"], r["silent"]) == (1, 10, False)


def test_camera_health_rows_start_at_the_cameras_first_frame(lake_con):
    got = rows(lake_con, "SELECT camera_id, count(*) AS n FROM camera_health GROUP BY ALL ORDER BY ALL")
    assert got == [
        {"camera_id": "lis-1", "n": 2},
        {"camera_id": "sp-1a", "n": 4},
        {"camera_id": "sp-1b", "n": 4},
        {"camera_id": "sp-2", "n": 4},
    ]


# --- pipeline_latency -----------------------------------------------------------------------------


def test_pipeline_latency_per_local_hour(lake_con):
    got = {
        (r["cinema_id"], r["day"], r["hour"]): (
            r["frames"],
            r["capture_to_receive_p50"],
            r["receive_to_lake_p95"],
            r["capture_to_lake_p50"],
        )
        for r in rows(lake_con, "SELECT * FROM pipeline_latency")
    }
    assert got == {
        ("lis", D30, 20): (1, pytest.approx(1.5), pytest.approx(40.0), pytest.approx(41.5)),
        ("lis", D01, 10): (1, pytest.approx(2.0), pytest.approx(60.0), pytest.approx(62.0)),
        # 40 (T1) + 3 (T2 sp-1a) + 1 (T2 sp-1b, its late duplicate ignored) + 1 (T7)
        ("sp", D30, 18): (45, pytest.approx(2.0), pytest.approx(60.0), pytest.approx(62.0)),
        ("sp", D30, 19): (11, pytest.approx(2.0), pytest.approx(60.0), pytest.approx(62.0)),
        ("sp", D30, 23): (1, pytest.approx(2.0), pytest.approx(60.0), pytest.approx(62.0)),
        ("sp", D01, 0): (1, pytest.approx(2.0), pytest.approx(60.0), pytest.approx(62.0)),
    }
