"""The wire encoding of timestamps and records: fixed shape, any input zone, lossless round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from stream import schema

zones = st.sampled_from([UTC, ZoneInfo("UTC"), ZoneInfo("America/Sao_Paulo"), timezone(timedelta(hours=5, minutes=45))])
aware = st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(9998, 12, 30), timezones=zones)


@given(aware)
def test_timestamps_are_utc_with_six_digit_microseconds_and_z_whatever_the_input_zone(ts):
    text = schema.format_ts(ts)
    assert text == ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert len(text) == 27 and text.endswith("Z") and text[19] == "."
    assert schema.parse_ts(text, "t") == ts.astimezone(UTC)  # (an ambiguous local time never equals another zone's)


def test_whole_second_timestamps_keep_their_zero_microseconds():
    assert schema.format_ts(datetime(2026, 11, 30, 20, 15, 3, tzinfo=UTC)) == "2026-11-30T20:15:03.000000Z"


@given(
    captured=aware,
    delay_ms=st.integers(0, 10_000),
    corners=st.none() | st.tuples(*[st.tuples(st.integers(0, 4000), st.integers(0, 4000))] * 4),
    raw=st.none() | st.binary(max_size=40),
    session=st.none() | st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
)
def test_a_read_survives_the_wire_with_nulls_omitted(captured, delay_ms, corners, raw, session):
    read = schema.Read(
        read_id="r" * 32,
        frame_id="f" * 32,
        camera_id="cam",
        cinema_id="REX",
        room_id="1",
        tz="America/Sao_Paulo",
        captured_at=captured,
        received_at=captured + timedelta(milliseconds=delay_ms),
        text="TKT:REX:R1:S20261130-2030:T1:F1",
        raw=raw,
        symbology="QRCode",
        corners=corners,
        decoder="zxing",
        ticket_valid=session is not None,
        session_start=session.replace(microsecond=0) if session else None,
    )
    wire = schema.to_json_dict(read)
    assert (wire["schema_version"], wire["kind"]) == (schema.SCHEMA_VERSION, "read")
    assert None not in wire.values() and ("raw" in wire) == (raw is not None)
    back = schema.from_bytes(schema.to_bytes(read))
    assert back == read.__class__(**{**read.__dict__, "captured_at": captured.astimezone(UTC),
                                     "received_at": read.received_at.astimezone(UTC)})  # fmt: skip
