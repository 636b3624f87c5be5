"""The pure transform: de-aggregation, validation, event-time partitions, quarantine, de-duplication."""

from __future__ import annotations

import random
from datetime import timedelta

from etl import transforms
from etl.transforms import Entry, Parsed, Quarantined
from stream import schema
from stream.aggregate import pack
from tests.etl.etl_fixtures import BASE, fixture_entries, read


def entries_of(stream_entries):
    return [Entry(e.data, e.partition_key, BASE, f"seq={i}") for i, e in enumerate(stream_entries, 1)]


def test_fixture_batch_yields_expected_rows_and_quarantine():
    stream_entries, expected = fixture_entries()
    batch = transforms.transform(entries_of(stream_entries))
    assert sorted(p.record_id for p in batch.records["read"]) == expected["reads"]
    assert sorted(p.record_id for p in batch.records["frame"]) == expected["frames"]
    assert [p.record_id for p in batch.records["box_office"]] == expected["box_office"]
    assert sorted(q.stage for q in batch.quarantine) == expected["quarantine_stages"]
    assert batch.duplicates == 2


def test_kpl_sub_records_get_sub_positions_in_quarantine_source():
    good = schema.to_bytes(read(1))
    agg = pack([("k", good), ("k", b"{broken")])[0]
    results = list(transforms.parse_entry(Entry(agg.data, "k", BASE, "seq=9")))
    assert isinstance(results[0], Parsed)
    assert isinstance(results[1], Quarantined) and results[1].source == "seq=9/1" and results[1].stage == "decode"
    assert results[1].raw == b"{broken"


def test_duplicate_choice_does_not_depend_on_arrival_order():
    first = read(1)
    retry = read(1, received=first.received_at + timedelta(minutes=2))
    again = read(1)
    blobs = [schema.to_bytes(r) for r in (retry, first, again)]
    for _ in range(5):
        random.shuffle(blobs)
        batch = transforms.transform([Entry(b, "k", BASE, "x") for b in blobs])
        (kept,) = batch.records["read"]
        assert kept.record.received_at == first.received_at
        assert batch.duplicates == 2


def test_late_record_lands_in_its_event_time_partition():
    late = read(1, captured=BASE - timedelta(days=2, hours=5), received=BASE)
    (p,) = transforms.parse_entry(Entry(schema.to_bytes(late), "k", BASE, "s"))
    assert isinstance(p, Parsed)
    assert (p.dt, p.hour) == ("2026-11-28", "15")


def test_future_record_is_quarantined_relative_to_its_server_time_not_the_clock():
    ahead = read(1, captured=BASE + transforms.FUTURE_TOLERANCE + timedelta(seconds=1), received=BASE)
    within = read(2, captured=BASE + transforms.FUTURE_TOLERANCE - timedelta(seconds=1), received=BASE)
    (q,) = transforms.parse_entry(Entry(schema.to_bytes(ahead), "k", BASE, "s"))
    (ok,) = transforms.parse_entry(Entry(schema.to_bytes(within), "k", BASE, "s"))
    assert isinstance(q, Quarantined) and q.stage == "event_time" and "ahead" in q.reason
    assert q.kind == "read" and q.record_id == ahead.read_id
    assert isinstance(ok, Parsed)


def test_camera_clock_reset_is_quarantined():
    old = read(1, captured=BASE - transforms.MAX_LATENESS - timedelta(hours=1), received=BASE)
    (q,) = transforms.parse_entry(Entry(schema.to_bytes(old), "k", BASE, "s"))
    assert isinstance(q, Quarantined) and q.stage == "event_time"


def test_quarantine_partition_comes_from_arrival_time_and_keeps_raw_bytes():
    arrived = BASE + timedelta(hours=3)
    (q,) = transforms.parse_entry(Entry(b"\xff\xfe garbage", "cam-7", arrived, "seq=3"))
    assert isinstance(q, Quarantined)
    assert q.partition == ("2026-11-30", "23")
    values = dict(zip([n for n, _ in transforms.QUARANTINE_FIELDS], q.values(BASE), strict=True))
    assert values["raw_b64"] == "//4gZ2FyYmFnZQ=="
    assert values["partition_key"] == "cam-7" and values["source"] == "seq=3"


def test_transform_is_deterministic():
    stream_entries, _ = fixture_entries()
    a = transforms.transform(entries_of(stream_entries))
    b = transforms.transform(list(reversed(entries_of(stream_entries))))
    for kind in schema.KINDS:
        assert [lake for lake in (transforms.lake_values(p, BASE) for p in a.records[kind])] == [
            transforms.lake_values(p, BASE) for p in b.records[kind]
        ]


def test_lake_values_follow_the_arrow_schema():
    import pyarrow as pa

    p = transforms.parse_record(schema.to_bytes(read(7)), "k", BASE, "s")
    assert isinstance(p, Parsed)
    table = pa.table(transforms.lake_columns("read", [p], BASE), schema=schema.arrow_schema("read"))
    row = table.to_pylist()[0]
    assert row["corners"] == [{"x": 1, "y": 2}, {"x": 30, "y": 2}, {"x": 30, "y": 40}, {"x": 1, "y": 40}]
    assert row["raw"] == b"\xff\x00" and row[schema.LAKE_COLUMN] == BASE
    assert row["session_start"].tzinfo is None


def test_columnar_and_row_builders_agree():
    stream_entries, _ = fixture_entries()
    batch = transforms.transform(entries_of(stream_entries))
    for kind, parsed in batch.records.items():
        cols = transforms.lake_columns(kind, parsed, BASE)
        rows = [transforms.lake_values(p, BASE) for p in parsed]
        assert [list(r) for r in zip(*cols.values(), strict=True)] == rows
