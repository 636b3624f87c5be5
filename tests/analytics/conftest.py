"""The analytics fixture lake: a small, hand-checkable evening at two cinemas.

Cinema ``sp`` (America/Sao_Paulo, UTC-3 all year), rooms R1 (cameras sp-1a, sp-1b) and R2 (camera sp-2);
cinema ``lis`` (Europe/Lisbon, UTC+0 in winter), room R1 (camera lis-1).  UTC times below; local in brackets.

====  ==========================================================================================
T1    R1, 40 consecutive frames of sp-1a, 21:50:00 + 0.5 s each (18:50) -> ONE entry, 40 reads
T2    R1, sp-1a at 21:55:00/00.5/01.0 and sp-1b at 21:55:01 (18:55) -> one entry, 4 reads, 2 cameras;
      sp-1b's read (and frame) is written again in a later micro-batch (duplicate)
T7    R2, sp-2 at 21:00 (18:00), session started the day before -> entry + wrong_day; box office
      answers unknown_ticket
P     R1, sp-1a at 22:00 (19:00): a promo QR code, not a ticket (invalid read)
T3    R1, sp-1a at 22:10:00 and 22:10:00.5 (19:10) -> entry; again at 22:30 (19:30) -> reentry (gap
      1199.5 s); box office answers already_used to the 22:30 read (written twice)
E     R1, sp-1a at 22:20 and 22:20:30: frames without code (decode 10 ms and 30 ms); 22:21 rejected
      too_many_bytes, 22:22 rejected not_an_image
T4    R2, sp-2 at 22:40 (19:40) -> entry; then R1, sp-1a at 22:45 (19:45) -> entry + two_rooms
T8    R1, sp-1a at 22:50 (19:50) -> entry
T5    R2, sp-2 at 02:30 on 12-01 (23:30 on 11-30!), session 23:45 local -> entry on LOCAL 11-30, hour 23
T6    R2, sp-2 at 03:30 on 12-01 (00:30 on 12-01), session 00:30 local -> entry on 12-01, hour 0
L1    lis R1, lis-1 at 20:50 (20:50): received 1.5 s later, in the lake 40 s after that; box office
      not_configured
LE    lis R1, lis-1 at 10:00 on 12-01: a frame without code (active day without entries)
====  ==========================================================================================

Every other record is received 2 s after capture and reaches the lake 60 s after reception; ok frames
decode in 20 ms.  sp-1b sends nothing after 21:55:01 (it went silent).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.analytics.lake_fixture import Camera, LakeBuilder

SP = "America/Sao_Paulo"
LIS = "Europe/Lisbon"
CAM_1A = Camera("sp-1a", "sp", "R1", SP)
CAM_1B = Camera("sp-1b", "sp", "R1", SP)
CAM_2 = Camera("sp-2", "sp", "R2", SP)
CAM_L = Camera("lis-1", "lis", "R1", LIS)


def utc(*args: int, us: int = 0) -> datetime:
    return datetime(*args, tzinfo=UTC) + timedelta(microseconds=us)


def ticket(ticket_id: str, session_id: str, start: str, room: str) -> tuple[str, dict]:
    return (
        f"TKT|{ticket_id}|{session_id}",
        {
            "ticket_id": ticket_id,
            "session_id": session_id,
            "session_start": datetime.fromisoformat(start),
            "ticket_room": room,
            "ticket_cinema": "sp",
        },
    )


S1 = ("S1", "2026-11-30T19:00", "R1")


def build_fixture_lake(root: Path) -> dict:
    """Write the evening described in the module docstring under ``root``; returns notable records."""
    lake = LakeBuilder()
    notable = {}
    for i in range(40):
        lake.frame(CAM_1A, utc(2026, 11, 30, 21, 50, us=500_000 * i), [ticket("T1", *S1)])
    _, t1_reads = lake.frame(CAM_1A, utc(2026, 11, 30, 21, 55), [ticket("T2", *S1)])
    lake.box_office(t1_reads[0], "accepted")
    lake.frame(CAM_1A, utc(2026, 11, 30, 21, 55, us=500_000), [ticket("T2", *S1)])
    lake.frame(CAM_1A, utc(2026, 11, 30, 21, 55, 1), [ticket("T2", *S1)])
    dup_frame, dup_reads = lake.frame(CAM_1B, utc(2026, 11, 30, 21, 55, 1), [ticket("T2", *S1)])
    _, t7 = lake.frame(CAM_2, utc(2026, 11, 30, 21), [ticket("T7", "S0", "2026-11-29T21:00", "R2")])
    lake.box_office(t7[0], "unknown_ticket", "no such ticket")
    lake.frame(CAM_1A, utc(2026, 11, 30, 22), ["https://example.com/promo"])
    lake.frame(CAM_1A, utc(2026, 11, 30, 22, 10), [ticket("T3", *S1)])
    lake.frame(CAM_1A, utc(2026, 11, 30, 22, 10, us=500_000), [ticket("T3", *S1)])
    _, t3_again = lake.frame(CAM_1A, utc(2026, 11, 30, 22, 30), [ticket("T3", *S1)])
    refusal = lake.box_office(t3_again[0], "already_used", "ticket already used at 19:10")
    lake.frame(CAM_1A, utc(2026, 11, 30, 22, 20), decode_ms=10.0)
    lake.frame(CAM_1A, utc(2026, 11, 30, 22, 20, 30), decode_ms=30.0)
    lake.frame(CAM_1A, utc(2026, 11, 30, 22, 21), outcome="rejected", reject_reason="too_many_bytes", decode_ms=0)
    lake.frame(CAM_1A, utc(2026, 11, 30, 22, 22), outcome="rejected", reject_reason="not_an_image", decode_ms=0)
    s2 = ("S2", "2026-11-30T20:00", "R2")
    lake.frame(CAM_2, utc(2026, 11, 30, 22, 40), [ticket("T4", *s2)])
    lake.frame(CAM_1A, utc(2026, 11, 30, 22, 45), [ticket("T4", *s2)])
    lake.frame(CAM_1A, utc(2026, 11, 30, 22, 50), [ticket("T8", *S1)])
    lake.frame(CAM_2, utc(2026, 12, 1, 2, 30), [ticket("T5", "S3", "2026-11-30T23:45", "R2")])
    lake.frame(CAM_2, utc(2026, 12, 1, 3, 30), [ticket("T6", "S4", "2026-12-01T00:30", "R2")])
    _, l1 = lake.frame(
        CAM_L,
        utc(2026, 11, 30, 20, 50),
        [ticket("L1", "LS1", "2026-11-30T21:00", "R1")],
        receive_delay=timedelta(seconds=1.5),
        lake_delay=timedelta(seconds=40),
    )
    lake.box_office(l1[0], "not_configured")
    lake.frame(CAM_L, utc(2026, 12, 1, 10), decode_ms=5.0)
    lake.write(root, "batch-0")

    # The camera retried: the same frame, read and refusal reach the lake again in a later micro-batch.
    late = timedelta(minutes=5)
    lake.rows += [(dup_frame, dup_frame.received_at + late), (dup_reads[0], dup_reads[0].received_at + late)]
    lake.rows.append((refusal, refusal.decided_at + late))
    lake.write(root, "batch-1")
    notable.update(duplicate_read=dup_reads[0], refusal=refusal)
    return notable


@pytest.fixture(scope="session")
def fixture_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of the fixture lake (written once per test session)."""
    root = tmp_path_factory.mktemp("lake")
    build_fixture_lake(root)
    return root


@pytest.fixture(scope="session")
def lake_con(fixture_lake: Path):
    """DuckDB connection with every view over the fixture lake."""
    from analytics.sql import open_lake

    con = open_lake(fixture_lake)
    yield con
    con.close()
