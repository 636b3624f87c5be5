"""Integer fields are range-checked on decode: a value the lake cannot store is a contract violation."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from stream import schema

CAPTURED = datetime(2026, 11, 30, 20, 15, tzinfo=UTC)


def frame_dict(**changes) -> dict:
    rec = schema.FrameSummary(
        frame_id=schema.frame_id("cam-1", b"img"),
        camera_id="cam-1",
        cinema_id="cin-1",
        room_id="room-2",
        tz="UTC",
        captured_at=CAPTURED,
        received_at=CAPTURED,
        image_bytes=10,
        codes=0,
        decode_ms=1.0,
        outcome="no_code",
        width=640,
        height=480,
    )
    return {**schema.to_json_dict(rec), **changes}


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("width", 2**31 - 1, True),
        ("width", 2**31, False),
        ("height", -(2**31), True),
        ("height", -(2**31) - 1, False),
        ("image_bytes", 2**63 - 1, True),
        ("image_bytes", 2**63, False),
    ],
)
def test_int_and_bigint_fields_accept_exactly_their_range(field, value, ok):
    data = json.dumps(frame_dict(**{field: value})).encode()
    if ok:
        assert getattr(schema.from_bytes(data), field) == value
    else:
        with pytest.raises(schema.RecordError) as e:
            schema.from_bytes(data)
        assert e.value.field == field and "range" in e.value.reason


def test_corner_coordinates_must_fit_an_int():
    read = {
        "schema_version": 1,
        "kind": "read",
        "read_id": "r",
        "frame_id": "f",
        "camera_id": "c",
        "cinema_id": "ci",
        "room_id": "ro",
        "tz": "UTC",
        "captured_at": "2026-11-30T20:15:00.000000Z",
        "received_at": "2026-11-30T20:15:00.000000Z",
        "text": "t",
        "symbology": "QRCode",
        "decoder": "zxing",
        "ticket_valid": False,
    }
    inside = [[0, 0], [2**31 - 1, 0], [2**31 - 1, -(2**31)], [0, 1]]
    assert schema.from_json_dict({**read, "corners": inside}).corners[1] == (2**31 - 1, 0)
    with pytest.raises(schema.RecordError, match="corners"):
        schema.from_json_dict({**read, "corners": [[0, 0], [2**31, 0], [1, 1], [0, 1]]})
