"""The columnar transform gives exactly the per-record transform's output (rows, order, quarantine, duplicates)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl import columnar, json_batch, transforms
from etl.transforms import Entry
from stream import schema
from stream.aggregate import pack
from tests.etl.etl_fixtures import BASE, fixture_entries, frame, outcome, read


def entries_of(blobs_by_entry: list[bytes]) -> list[Entry]:
    return [Entry(b, f"cam-{i % 3}", BASE + timedelta(minutes=i), f"seq={i}") for i, b in enumerate(blobs_by_entry, 1)]


def assert_same(entries: list[Entry]) -> columnar.ColumnarBatch:
    """Both transforms over ``entries`` agree on everything a runner writes."""
    ref = transforms.transform(entries)
    got = columnar.transform_entries(entries)
    for kind in schema.KINDS:
        want = pa.table(transforms.lake_columns(kind, ref.records[kind], BASE), schema=schema.arrow_schema(kind))
        parts = list(got.lake_tables(kind, BASE))
        have = pa.concat_tables([t for _, _, t in parts]) if parts else schema.arrow_schema(kind).empty_table()
        assert have.schema == want.schema, kind
        assert have.to_pylist() == want.to_pylist(), kind
        ref_parts: list[list] = []
        for p in ref.records[kind]:
            if not ref_parts or ref_parts[-1][:2] != [p.dt, p.hour]:
                ref_parts.append([p.dt, p.hour, 0])
            ref_parts[-1][2] += 1
        assert [[dt, hour, len(t)] for dt, hour, t in parts] == ref_parts, kind
    assert got.quarantine == ref.quarantine
    assert got.duplicates == ref.duplicates
    return got


def test_fixture_batch_is_identical_through_both_paths():
    stream_entries, _ = fixture_entries()
    got = assert_same([Entry(e.data, e.partition_key, BASE, f"seq={i}") for i, e in enumerate(stream_entries, 1)])
    assert got.slow_records < got.records  # the valid plain records took the fast path


def test_clean_batch_takes_only_the_fast_path():
    blobs = [schema.to_bytes(r) for r in [read(i) for i in range(40)] + [frame(i) for i in range(5)]]
    got = assert_same(entries_of(blobs))
    assert got.slow_records == 0 and got.row_count == 45


def _with(record, **changes) -> bytes:
    d = schema.to_json_dict(record)
    for k, v in changes.items():
        if v is _DROP:
            d.pop(k, None)
        else:
            d[k] = v
    return _dumps(d)


def _dumps(d: dict) -> bytes:
    """Compact JSON like the wire codec, but any int size (orjson stops at 64 bits)."""
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


_DROP = object()
_GOOD = schema.to_bytes(read(3))


def _inject(raw: bytes, text: bytes) -> bytes:
    """Insert raw JSON text as the first member of a record."""
    return b"{" + text + b"," + raw[1:]


HAZARDS = {
    "nan literal in an unknown field": _inject(_GOOD, b'"zz":NaN'),
    "infinity literal in a known field": _with(frame(1), decode_ms=0).replace(
        b'"decode_ms":0', b'"decode_ms":Infinity'
    ),
    "exponent overflowing a double, unknown field": _inject(_GOOD, b'"zz":1e400'),
    "400-digit number in an unknown field": _inject(_GOOD, b'"zz":' + b"9" * 400),
    "double within range written with an exponent": _with(frame(2), decode_ms=1.5e200),
    "invalid utf-8 in an unknown field": _inject(_GOOD, b'"zz":"\xff\xfe"'),
    "lone surrogate escape": _inject(_GOOD, b'"zz":"\\ud800"'),
    "escaped key": _GOOD.replace(b'"camera_id"', b'"camera\\u005fid"'),
    "control character in text": _with(read(4), text="a\x01b"),
    "newline inside the record": _GOOD.replace(b",", b",\n", 1),
    "carriage return whitespace": _GOOD.replace(b",", b",\r", 1),
    "tab whitespace": _GOOD.replace(b",", b",\t", 1),
    "leading space": b" " + _GOOD,
    "two documents on one line": _GOOD + b" " + schema.to_bytes(read(5)),
    "duplicate key": _inject(_GOOD, b'"camera_id":"other"'),
    "duplicate unknown key": _inject(_inject(_GOOD, b'"zz":1'), b'"zz":2'),
    "trailing comma": _GOOD[:-1] + b",}",
    "empty record": b"",
    "json array": b"[1,2]",
    "json string": b'"read"',
    "nesting deeper than orjson allows": _inject(_GOOD, b'"zz":' + b"[" * 1100 + b"]" * 1100),
    "nesting that overflows the JSON reader's stack": _inject(_GOOD, b'"zz":' + b"[" * 100_000 + b"]" * 100_000),
    "nesting orjson allows": _inject(_GOOD, b'"zz":' + b"[" * 300 + b"]" * 300),
    "int out of int32": _with(frame(3), width=2**40),
    "int out of int64": _with(frame(4), image_bytes=2**64),
    "float for an int": _with(frame(5), width=1.0),
    "bool for an int": _with(frame(6), codes=True),
    "int for a double": _with(frame(7), decode_ms=12),
    "huge int for a double": _with(frame(8), decode_ms=2**70),
    "string for a bool": _with(read(6), ticket_valid="yes"),
    "null required field": _with(read(7), camera_id=None),
    "missing required field": _with(read(8), symbology=_DROP),
    "unknown kind": _with(read(9), kind="ticket"),
    "kind of another type": _with(read(9), kind=3),
    "schema version zero": _with(read(10), schema_version=0),
    "newer schema version": _with(read(11), schema_version=2),
    "schema version as string": _with(read(12), schema_version="1"),
    "bad enum": _with(frame(9), outcome="maybe"),
    "bad box-office enum": _with(outcome(2), outcome="maybe"),
    "timestamp with an offset": _with(read(13), captured_at="2026-11-30T22:15:03.000001+02:00"),
    "timestamp without fraction": _with(read(14), captured_at="2026-11-30T20:15:03Z"),
    "timestamp with millis": _with(read(15), received_at="2026-11-30T20:15:03.123Z"),
    "timestamp without zone": _with(read(16), captured_at="2026-11-30T20:15:03.000000"),
    "impossible date": _with(read(17), captured_at="2026-02-30T20:15:03.000000Z"),
    "hour 24": _with(read(18), received_at="2026-11-30T24:00:00.000000Z"),
    "timestamp as a number": _with(read(19), captured_at=1764533703),
    "session start with a zone": _with(read(20), session_start="2026-11-30T17:30:00Z"),
    "session start with fraction": _with(read(21), session_start="2026-11-30T17:30:00.5"),
    "impossible session start": _with(read(22), session_start="2026-11-31T17:30:00"),
    "three corners": _with(read(23), corners=[[1, 2], [3, 4], [5, 6]]),
    "corner with three values": _with(read(23), corners=[[1, 2, 3], [3, 4], [5, 6], [7, 8]]),
    "float corners": _with(read(25), corners=[[1.7, 2], [3, 4], [5, 6], [7, 8]]),
    "string corners": _with(read(27), corners=[["1", "2"], [3, 4], [5, 6], [7, 8]]),
    "corner strings of two digits": _with(read(29), corners=["12", "34", "56", "78"]),
    "null corner value": _with(read(31), corners=[[1, None], [3, 4], [5, 6], [7, 8]]),
    "corner out of int32": _with(read(33), corners=[[2**31, 1], [3, 4], [5, 6], [7, 8]]),
    "empty corners": _with(read(35), corners=[]),
    "raw bytes as valid base64": _with(read(37), raw=base64.b64encode(b"\x00\xff").decode()),
    "raw bytes as invalid base64": _with(read(39), raw="not base64!"),
    "raw bytes as a number": _with(read(41), raw=5),
    "camera clock far ahead": schema.to_bytes(read(42, captured=BASE + timedelta(hours=1), received=BASE)),
    "camera clock reset": schema.to_bytes(read(43, captured=BASE - timedelta(days=31), received=BASE)),
    "late but within the limit": schema.to_bytes(read(44, captured=BASE - timedelta(days=29), received=BASE)),
    "corrupt KPL aggregate": b"\xf3\x89\x9a\xc2" + b"\x01" * 40,
}


@pytest.mark.parametrize("case", sorted(HAZARDS))
def test_each_edge_case_matches_the_per_record_path(case):
    """Alone and in a batch with clean records (a rejected chunk must not take good records with it)."""
    assert_same(entries_of([HAZARDS[case]]))
    clean = [schema.to_bytes(read(100 + i)) for i in range(40)]
    got = assert_same(entries_of([*clean[:20], HAZARDS[case], *clean[20:]]))
    assert got.slow_records <= json_batch.MIN_CHUNK  # halving isolated it: the clean records stayed fast


# --------------------------------------------------------------------------------------------
# Generated batches: valid, invalid, duplicate, out-of-window, aggregated and plain records

_times = st.integers(min_value=-40 * 24 * 3600, max_value=40 * 24 * 3600).map(lambda s: BASE + timedelta(seconds=s))
_json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=3),
)


@st.composite
def records(draw) -> bytes:
    i = draw(st.integers(min_value=0, max_value=30))  # small range: ids repeat (duplicates)
    kind = draw(st.sampled_from(schema.KINDS))
    if kind == "read":
        captured = draw(_times)
        lag = draw(st.sampled_from([timedelta(milliseconds=250), timedelta(minutes=3), timedelta(minutes=-11)]))
        rec = read(i, captured=captured, received=captured + lag)
    elif kind == "frame":
        rec = frame(i, captured=draw(_times))
    else:
        rec = outcome(i)
    d = schema.to_json_dict(rec)
    if kind == "read" and draw(st.booleans()):
        d["text"] = draw(st.text(max_size=12))
    if kind == "frame" and draw(st.booleans()):
        d["decode_ms"] = draw(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers()))
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        name = draw(st.sampled_from([f.name for f in schema.FIELDS[kind]] + ["extra", "nested"]))
        d[name] = draw(_json_values)
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        d.pop(draw(st.sampled_from(sorted(d))))
    return _dumps(d)


@st.composite
def batches(draw) -> list[Entry]:
    blobs = draw(st.lists(st.one_of(records(), st.sampled_from(sorted(HAZARDS.values()))), min_size=1, max_size=25))
    blobs += draw(st.lists(st.sampled_from(blobs), max_size=4))  # exact re-sends
    blobs = draw(st.permutations(blobs))
    out: list[bytes] = []
    while blobs:
        n = draw(st.integers(min_value=1, max_value=4))
        group, blobs = blobs[:n], blobs[n:]
        if n > 1 and all(b for b in group) and draw(st.booleans()):
            out += [e.data for e in pack([("cam-1", b) for b in group])]  # KPL aggregate
        else:
            out += group
    return entries_of(out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_generated_batches_are_identical_through_both_paths(entries):
    assert_same(entries)
