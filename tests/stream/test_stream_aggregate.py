"""KPL packing: round trips, one partition key per aggregate, size limits, plain and corrupt entries."""

from __future__ import annotations

import hashlib

import pytest
from aws_kinesis_agg import MAGIC
from aws_kinesis_agg.deaggregator import iter_deaggregate_records
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.aggregate import (
    AGGREGATE_MAX_BYTES,
    MAX_RECORD_BYTES,
    AggregateError,
    deaggregate,
    deaggregate_many,
    is_aggregate,
    pack,
)


def _per_key(pairs):
    out: dict[str, list[bytes]] = {}
    for k, d in pairs:
        out.setdefault(k, []).append(d)
    return out


def test_pack_round_trips_records_per_key_in_order():
    pairs = [("cam-a", b'{"n":1}'), ("cam-b", b'{"n":2}'), ("cam-a", b'{"n":3}')]
    entries = pack(pairs)
    got = {}
    for e in entries:
        got.setdefault(e.partition_key, []).extend(deaggregate(e.data))
    assert got == _per_key(pairs)
    assert all(is_aggregate(e.data) for e in entries)


def test_an_aggregate_never_mixes_partition_keys():
    pairs = [(f"cam-{i % 3}", f'{{"i":{i}}}'.encode()) for i in range(30)]
    for e in pack(pairs):
        subs = list(
            iter_deaggregate_records(
                [{"Data": e.data, "PartitionKey": e.partition_key, "SequenceNumber": "1",
                  "ApproximateArrivalTimestamp": None}],
                data_format="Boto3",
            )
        )  # fmt: skip
        assert {s["kinesis"]["partitionKey"] for s in subs} == {e.partition_key}


def test_aggregates_split_at_the_record_size_limit():
    big = b"x" * 300_000
    entries = pack([("cam", big)] * 10)
    assert len(entries) > 1
    assert all(len(e.data) + len(e.partition_key) <= MAX_RECORD_BYTES for e in entries)
    assert deaggregate_many(e.data for e in entries) == [big] * 10


def test_a_record_too_big_for_one_kinesis_record_is_refused():
    with pytest.raises(ValueError, match="cannot fit"):
        pack([("cam", b"x" * (AGGREGATE_MAX_BYTES + 1))])
    with pytest.raises(ValueError, match="exceeds"):
        pack([("cam", b"x" * MAX_RECORD_BYTES)], aggregate=False)


def test_without_aggregation_each_record_is_a_plain_entry():
    pairs = [("cam-a", b'{"n":1}'), ("cam-a", b'{"n":2}')]
    entries = pack(pairs, aggregate=False)
    assert [(e.partition_key, e.data) for e in entries] == pairs
    assert deaggregate_many(e.data for e in entries) == [b'{"n":1}', b'{"n":2}']


def test_bad_partition_keys_are_refused():
    with pytest.raises(ValueError, match="partition key"):
        pack([("", b"{}")])
    with pytest.raises(ValueError, match="partition key"):
        pack([("k" * 257, b"{}")])


def test_corrupt_aggregate_raises_instead_of_returning_garbage():
    data = pack([("cam", b'{"n":1}')])[0].data
    flipped = data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:]
    with pytest.raises(AggregateError, match="digest"):
        deaggregate(flipped)
    with pytest.raises(AggregateError, match="too short"):
        deaggregate(MAGIC + b"\x00")
    junk = b"\xff\xfe not protobuf"
    with pytest.raises(AggregateError, match="protobuf"):
        deaggregate(MAGIC + junk + hashlib.md5(junk).digest())


def test_library_deaggregator_reads_our_aggregates():
    pairs = [("cam", b'{"a":1}'), ("cam", b'{"b":2}')]
    e = pack(pairs)[0]
    subs = list(
        iter_deaggregate_records(
            [{"Data": e.data, "PartitionKey": "cam", "SequenceNumber": "1", "ApproximateArrivalTimestamp": None}],
            data_format="Boto3",
        )
    )
    import base64

    assert [base64.b64decode(s["kinesis"]["data"]) for s in subs] == [d for _, d in pairs]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "cam-ü", "c" * 256]), st.binary(max_size=2000)),
        max_size=40,
    ),
    st.booleans(),
)
def test_pack_then_deaggregate_returns_every_record_of_each_key_in_order(pairs, aggregate):
    entries = pack(pairs, aggregate)
    got: dict[str, list[bytes]] = {}
    for e in entries:
        got.setdefault(e.partition_key, []).extend(deaggregate(e.data) if aggregate else [e.data])
    assert got == _per_key(pairs)
