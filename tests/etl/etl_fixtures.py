"""Fixture records and stream entries for the ETL tests (plain JSON, KPL, duplicates, bad, late, future)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from stream import schema
from stream.aggregate import pack
from stream.ports import StreamEntry

BASE = datetime(2026, 11, 30, 20, 15, tzinfo=UTC)


def read(i: int, captured: datetime | None = None, received: datetime | None = None, camera: str = "cam-1"):
    """A valid read; ``i`` makes the payload (and id) distinct."""
    captured = captured or BASE + timedelta(seconds=i)
    fid = schema.frame_id(camera, f"img-{i}".encode())
    payload = f"TKT:CIN1:R2:S{i % 3}:{i}".encode()
    return schema.Read(
        read_id=schema.read_id(fid, payload),
        frame_id=fid,
        camera_id=camera,
        cinema_id="cin-1",
        room_id="room-2",
        tz="America/Sao_Paulo",
        captured_at=captured,
        received_at=received or captured + timedelta(milliseconds=250),
        text=payload.decode(),
        symbology="QRCode",
        decoder="zxing",
        ticket_valid=i % 5 != 0,
        corners=((1, 2), (30, 2), (30, 40), (1, 40)) if i % 2 else None,
        ticket_format="tkt",
        ticket_id=f"T{i}",
        session_id=f"S{i % 3}",
        session_start=datetime(2026, 11, 30, 17, 30),
        seat=f"A{i}",
        raw=b"\xff\x00" if i % 7 == 0 else None,
    )


def frame(i: int, captured: datetime | None = None):
    captured = captured or BASE + timedelta(seconds=i)
    return schema.FrameSummary(
        frame_id=schema.frame_id("cam-1", f"img-{i}".encode()),
        camera_id="cam-1",
        cinema_id="cin-1",
        room_id="room-2",
        tz="America/Sao_Paulo",
        captured_at=captured,
        received_at=captured + timedelta(milliseconds=300),
        image_bytes=50_000 + i,
        codes=1,
        decode_ms=12.5,
        outcome="ok",
        image_format="jpeg",
        width=1280,
        height=720,
    )


def outcome(i: int):
    r = read(i)
    return schema.BoxOfficeOutcome(
        outcome_id=schema.outcome_id(r.read_id),
        read_id=r.read_id,
        frame_id=r.frame_id,
        camera_id=r.camera_id,
        cinema_id=r.cinema_id,
        room_id=r.room_id,
        tz=r.tz,
        captured_at=r.captured_at,
        decided_at=r.captured_at + timedelta(seconds=1),
        outcome="accepted",
        ticket_id=r.ticket_id,
        http_status=200,
    )


def fixture_entries() -> tuple[list[StreamEntry], dict]:
    """The mixed batch every runner is tested with, and what it must produce.

    Returns (entries, expected) with expected = {"reads": ids, "frames": ids, "box_office": ids,
    "quarantine_stages": sorted stages, "partitions": {(table, dt, hour)}}.
    """
    entries: list[StreamEntry] = []
    # plain JSON reads and frames
    plain = [read(i) for i in range(6)]
    entries += [StreamEntry("cam-1", schema.to_bytes(r)) for r in plain]
    entries += [StreamEntry("cam-1", schema.to_bytes(frame(i))) for i in range(3)]
    # KPL aggregate of several reads (and a box-office outcome) sharing a key
    agg_reads = [read(i, camera="cam-9") for i in range(100, 110)]
    agg = pack([("cam-9", schema.to_bytes(r)) for r in agg_reads] + [("cam-9", schema.to_bytes(outcome(1)))])
    assert len(agg) == 1 and agg[0].data[:4] == b"\xf3\x89\x9a\xc2"
    entries += agg
    # duplicates: same read again (exact re-send) and a retry received later (same id, other bytes)
    entries.append(StreamEntry("cam-1", schema.to_bytes(plain[0])))
    retry = read(1, received=plain[1].received_at + timedelta(minutes=3))
    entries.append(StreamEntry("cam-1", schema.to_bytes(retry)))
    # late record (3 hours earlier event time): lands in its own hour
    late = read(200, captured=BASE - timedelta(hours=3), received=BASE)
    entries.append(StreamEntry("cam-1", schema.to_bytes(late)))
    # future record: camera clock 2 hours ahead of the server
    future = read(300, captured=BASE + timedelta(hours=2), received=BASE)
    entries.append(StreamEntry("cam-1", schema.to_bytes(future)))
    # malformed: not JSON, JSON missing a required field, wrong type, corrupt KPL aggregate
    entries.append(StreamEntry("cam-1", b"\x00not json"))
    bad = schema.to_json_dict(read(400))
    del bad["camera_id"]
    entries.append(StreamEntry("cam-1", json.dumps(bad).encode()))
    wrong = schema.to_json_dict(read(401))
    wrong["ticket_valid"] = "yes"
    entries.append(StreamEntry("cam-1", json.dumps(wrong).encode()))
    entries.append(StreamEntry("cam-1", b"\xf3\x89\x9a\xc2" + b"\x01" * 40))
    # schema with an extra unknown field: accepted, field ignored
    extra = schema.to_json_dict(read(500))
    extra["brand_new_field"] = {"nested": [1, 2]}
    entries.append(StreamEntry("cam-1", json.dumps(extra).encode()))

    reads_ok = [*plain, *agg_reads, late, read(500)]
    expected = {
        "reads": sorted(r.read_id for r in reads_ok),
        "frames": sorted(frame(i).frame_id for i in range(3)),
        "box_office": [outcome(1).outcome_id],
        "quarantine_stages": sorted(["event_time", "decode", "validate", "validate", "deaggregate"]),
        "retry_received_at": plain[1].received_at,
        "retry_read_id": plain[1].read_id,
    }
    return entries, expected
