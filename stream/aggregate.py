"""KPL aggregation of stream records: pack many small records into few Kinesis entries, and back.

Packing follows one rule: **an aggregate never mixes partition keys**.  A KPL aggregate is routed by
its first partition key, and a consumer after a shard split drops the sub-records whose key hashes
to another shard -- the data-loss case aws-kinesis-agg warns about
(https://github.com/awslabs/kinesis-aggregation/blob/master/potential_data_loss.md).  With one key
per aggregate, every sub-record lives on the shard its own key maps to.

The partition key is the camera id, so one camera's records stay on one shard, in order.

:func:`deaggregate` is what consumers (the ETL, tests) use: it accepts both KPL aggregates and plain
JSON entries, so a stream written with aggregation on, off, or both reads the same.

Pure: aws-kinesis-agg is pure Python over protobuf; no AWS SDK is imported.
Thread-safety: functions keep no state; safe from many threads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from aws_kinesis_agg import MAGIC
from aws_kinesis_agg.aggregator import RecordAggregator
from google.protobuf.message import DecodeError

from stream.ports import StreamEntry

MAX_RECORD_BYTES = 1024 * 1024
"""Largest Kinesis record: data + partition key, 1 MiB (the default maximum record size).
https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html"""

MAX_PUT_RECORDS_ENTRIES = 500
"""Most entries in one ``PutRecords`` call.
https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html"""

MAX_PUT_RECORDS_BYTES = 5 * 1024 * 1024
"""Largest ``PutRecords`` request: data + partition keys of all entries, 5 MiB.
https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html"""

MAX_PARTITION_KEY_CHARS = 256
"""Longest partition key (Unicode characters).
https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecordsRequestEntry.html"""

AGGREGATE_MAX_BYTES = MAX_RECORD_BYTES - 4 * MAX_PARTITION_KEY_CHARS
"""Largest aggregate we build: room is left for the partition key, which counts toward the record limit."""

PUT_PAYLOAD_UNIT_BYTES = 25 * 1024
"""Kinesis bills provisioned-mode puts per 25 KB "PUT payload unit" (used by the cost estimate).
https://aws.amazon.com/kinesis/data-streams/pricing/"""

_DIGEST_SIZE = hashlib.md5().digest_size


class AggregateError(ValueError):
    """Bytes start with the KPL magic but are not a valid aggregate (bad digest or protobuf)."""


def _check_key(partition_key: str) -> None:
    if not partition_key or len(partition_key) > MAX_PARTITION_KEY_CHARS:
        raise ValueError(f"partition key must be 1-{MAX_PARTITION_KEY_CHARS} characters, got {len(partition_key)}")


def iter_pack(records: Iterable[tuple[str, bytes]], aggregate: bool = True) -> Iterator[StreamEntry]:
    """Turn ``(partition_key, record_bytes)`` pairs into stream entries.

    With ``aggregate``, records of one partition key are packed into as few KPL aggregates of at
    most :data:`AGGREGATE_MAX_BYTES` as they fit in (order kept within each key; keys in order of first
    appearance); without it, each record is its own plain entry.

    Raises:
        ValueError: a partition key is empty or too long, or one record alone exceeds the record limit.
    """
    if not aggregate:
        for key, data in records:
            _check_key(key)
            if len(data) + len(key.encode("utf-8")) > MAX_RECORD_BYTES:
                raise ValueError(f"a {len(data):,}-byte record exceeds the {MAX_RECORD_BYTES:,}-byte Kinesis limit")
            yield StreamEntry(key, bytes(data))
        return
    by_key: dict[str, list[bytes]] = {}
    for key, data in records:
        _check_key(key)
        by_key.setdefault(key, []).append(data)
    for key, blobs in by_key.items():
        agg = RecordAggregator(max_size=AGGREGATE_MAX_BYTES)
        for data in blobs:
            try:
                full = agg.add_user_record(key, data)
            except ValueError as e:
                raise ValueError(f"a {len(data):,}-byte record cannot fit one Kinesis record: {e}") from None
            if full is not None:
                yield _entry(full)
        last = agg.clear_and_get()
        if last is not None:
            yield _entry(last)


def _entry(agg_record) -> StreamEntry:
    key, _ehk, data = agg_record.get_contents()  # no explicit hash key is ever set: the key routes
    return StreamEntry(key, data)


def pack(records: Iterable[tuple[str, bytes]], aggregate: bool = True) -> list[StreamEntry]:
    """List form of :func:`iter_pack`."""
    return list(iter_pack(records, aggregate))


def is_aggregate(data: bytes) -> bool:
    """True when ``data`` starts with the KPL magic bytes ``F3 89 9A C2``."""
    return data[: len(MAGIC)] == MAGIC


def iter_deaggregate(data: bytes) -> Iterator[bytes]:
    """The user records in one stream entry: the sub-records of a KPL aggregate, or ``data`` itself.

    Raises:
        AggregateError: the entry has the KPL magic but a wrong MD5 digest or an unreadable body
            (a consumer should quarantine the raw entry).
    """
    if not is_aggregate(data):
        yield bytes(data)
        return
    body = data[len(MAGIC) :]
    if len(body) <= _DIGEST_SIZE:
        raise AggregateError(f"KPL aggregate of {len(data)} bytes is too short to hold a digest")
    message, digest = body[:-_DIGEST_SIZE], body[-_DIGEST_SIZE:]
    if hashlib.md5(message).digest() != digest:
        raise AggregateError("KPL aggregate digest mismatch: the entry is corrupt")
    from aws_kinesis_agg import messages_pb2  # imported here: protobuf module with a sys.path shim

    agg = messages_pb2.AggregatedRecord()
    try:
        agg.ParseFromString(message)
    except DecodeError as e:
        raise AggregateError(f"KPL aggregate body is not a valid protobuf message: {e}") from None
    for sub in agg.records:
        yield bytes(sub.data)


def deaggregate(data: bytes) -> list[bytes]:
    """List form of :func:`iter_deaggregate`."""
    return list(iter_deaggregate(data))


def deaggregate_many(entries: Iterable[bytes]) -> list[bytes]:
    """The user records of many stream entries, in order."""
    return [r for e in entries for r in iter_deaggregate(e)]
