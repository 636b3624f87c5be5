"""The one ETL transform: raw stream entries -> validated lake rows per table + quarantine rows.

Both runners call this module -- the Glue/Spark batch function (``etl.batch``) inside
``mapPartitions`` and the local ETL (``etl.local``) directly -- so their output is the same by
construction.  Steps for each stream entry:

1. de-aggregate (``stream.aggregate``: a KPL aggregate or one plain JSON record);
2. decode and validate each user record with ``stream.schema.from_bytes`` (the record contract);
3. check the event time against the record's own server time (see :data:`FUTURE_TOLERANCE`);
4. derive the partition ``dt``/``hour`` from ``captured_at`` (UTC event time).

Anything that fails goes to quarantine with the raw bytes (base64), the reason and where it came
from -- never silently dropped.  Within a batch, records sharing an id are reduced to one by
:func:`prefer` (earliest server time wins; ties broken by the bytes), a rule that depends only on
the records, not on the order the runner saw them, so Spark's shuffle and the local loop agree.

Every decision depends only on the input bytes (never on the clock), so re-processing a batch gives
the same rows in the same partitions: the basis of the idempotent writes of both runners.

Pure: no Spark, AWS SDK or Glue import; pyarrow is imported lazily by :func:`quarantine_arrow_schema`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any

from stream import schema
from stream.aggregate import AggregateError, deaggregate

FUTURE_TOLERANCE = schema.MAX_CAPTURE_AHEAD
"""A record whose ``captured_at`` (camera clock) is more than this ahead of its own server time
(``received_at``, or ``decided_at`` for box-office outcomes) is quarantined: the camera clock is wrong
and its hour partition would be a lie.  Measured against the record's server time, not the ETL's
clock, so a replayed batch decides the same way."""

MAX_LATENESS = schema.MAX_CAPTURE_BEHIND
"""A record captured more than this before its server time is quarantined (a camera clock reset to
1970, say).  Anything later than that is a normal *late* record and lands in its event-time partition."""

QUARANTINE_TABLE = "quarantine"
"""Directory of the quarantine table under the lake root (``<root>/quarantine/dt=.../hour=...``)."""

QUARANTINE_FIELDS: tuple[tuple[str, str], ...] = (
    ("raw_b64", "string"),
    ("reason", "string"),
    ("stage", "string"),
    ("source", "string"),
    ("partition_key", "string"),
    ("kind", "string"),
    ("record_id", "string"),
    ("arrived_at", "timestamp"),
    (schema.LAKE_COLUMN, "timestamp"),
)
"""Columns of quarantine files: the raw user record (or whole entry when it could not be split),
why and at which stage it failed, where it came from, and what could be recovered of it.
Partitioned by ``arrived_at`` (stream arrival time), since ``captured_at`` may be what is broken."""

STAGES = ("deaggregate", "decode", "validate", "event_time")
"""``stage`` values: the entry was a corrupt KPL aggregate / the bytes were not a JSON object /
a field broke the contract / ``captured_at`` is implausible (see :data:`FUTURE_TOLERANCE`)."""

SERVER_TIME = {"read": "received_at", "frame": "received_at", "box_office": "decided_at"}
"""The server-clock field of each kind: the event-time check and the de-duplication order use it."""


@dataclass(frozen=True)
class Entry:
    """One stream entry as a runner received it.

    ``arrived_at`` is when the stream accepted it (Kinesis ``approximateArrivalTimestamp``, SQLite
    ``arrived_at``), UTC; ``source`` names its position for the quarantine (``seq=42``, a Kinesis
    sequence number).
    """

    data: bytes
    partition_key: str
    arrived_at: datetime
    source: str


@dataclass(frozen=True)
class Parsed:
    """One valid user record with its table, id and partition."""

    kind: str
    record_id: str
    dt: str
    hour: str
    record: schema.Record
    data: bytes = field(repr=False)

    @property
    def order_key(self) -> tuple[datetime, bytes]:
        """De-duplication order: server time of the record, then its bytes (smaller wins)."""
        return getattr(self.record, SERVER_TIME[self.kind]), self.data


@dataclass(frozen=True)
class Quarantined:
    """One rejected user record (or whole entry) with the reason."""

    raw: bytes = field(repr=False)
    reason: str
    stage: str
    source: str
    partition_key: str
    arrived_at: datetime
    kind: str | None = None
    record_id: str | None = None

    @property
    def partition(self) -> tuple[str, str]:
        """(``dt``, ``hour``) of the quarantine partition: from the stream arrival time."""
        return schema.partition_values(self.arrived_at)

    def values(self, lake_at: datetime) -> list[Any]:
        """Column values in :data:`QUARANTINE_FIELDS` order."""
        return [
            base64.b64encode(self.raw).decode("ascii"),
            self.reason,
            self.stage,
            self.source,
            self.partition_key,
            self.kind,
            self.record_id,
            self.arrived_at,
            lake_at,
        ]


@dataclass
class Batch:
    """The outcome of one batch: unique valid records per kind, and the quarantine."""

    records: dict[str, list[Parsed]]
    quarantine: list[Quarantined]
    duplicates: int = 0

    @property
    def row_count(self) -> int:
        return sum(len(v) for v in self.records.values())


def parse_entry(entry: Entry) -> Iterator[Parsed | Quarantined]:
    """Split, decode and validate one stream entry; yields one result per user record.

    Never raises on bad input: every failure is a :class:`Quarantined` naming its stage.
    """
    try:
        blobs = deaggregate(entry.data)
    except AggregateError as e:
        yield Quarantined(entry.data, str(e), "deaggregate", entry.source, entry.partition_key, entry.arrived_at)
        return
    multi = len(blobs) > 1
    for i, blob in enumerate(blobs):
        source = f"{entry.source}/{i}" if multi else entry.source
        yield parse_record(blob, entry.partition_key, entry.arrived_at, source)


def parse_record(data: bytes, partition_key: str, arrived_at: datetime, source: str) -> Parsed | Quarantined:
    """Validate one user record (compact JSON) against the contract and place it in its partition."""
    try:
        record = schema.from_bytes(data)
    except schema.RecordError as e:
        stage = "decode" if e.field == "<record>" else "validate"
        kind, rid = _salvage(data)
        return Quarantined(data, str(e), stage, source, partition_key, arrived_at, kind, rid)
    kind = record.kind
    rid = record.record_id
    captured = record.captured_at
    server = getattr(record, SERVER_TIME[kind])
    if captured - server > FUTURE_TOLERANCE:
        reason = f"captured_at {schema.format_ts(captured)} is {_secs(captured - server)} ahead of {SERVER_TIME[kind]}"
        reason += f" (tolerance {_secs(FUTURE_TOLERANCE)}): camera clock ahead"
        return Quarantined(data, reason, "event_time", source, partition_key, arrived_at, kind, rid)
    if server - captured > MAX_LATENESS:
        reason = f"captured_at {schema.format_ts(captured)} is {_secs(server - captured)} before {SERVER_TIME[kind]}"
        reason += f" (limit {_secs(MAX_LATENESS)}): camera clock reset?"
        return Quarantined(data, reason, "event_time", source, partition_key, arrived_at, kind, rid)
    dt, hour = schema.partition_values(captured)
    return Parsed(kind, rid, dt, hour, record, bytes(data))


def _secs(d: timedelta) -> str:
    return f"{d.total_seconds():.0f} s"


def _salvage(data: bytes) -> tuple[str | None, str | None]:
    """Best-effort kind and id of an invalid record, for the quarantine columns."""
    import json

    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        return None, None
    if not isinstance(obj, dict):
        return None, None
    kind = obj.get("kind") if type(obj.get("kind")) is str and obj["kind"] in schema.ID_FIELD else None
    rid = obj.get(schema.ID_FIELD[kind]) if kind else None
    return kind, rid if isinstance(rid, str) else None


def prefer(a: Parsed, b: Parsed) -> Parsed:
    """The one of two same-id records to keep: earliest server time, then smallest bytes.

    Associative and commutative, so Spark's ``reduceByKey`` and a sequential loop pick the same one.
    """
    return a if a.order_key <= b.order_key else b


def transform(entries: Iterable[Entry]) -> Batch:
    """Run the whole transform over a batch (the local runner's entry point).

    Records are de-duplicated by (kind, id) with :func:`prefer` and sorted by (dt, hour, id) so the
    output is deterministic.
    """
    best: dict[tuple[str, str], Parsed] = {}
    quarantine: list[Quarantined] = []
    duplicates = 0
    for entry in entries:
        for res in parse_entry(entry):
            if isinstance(res, Quarantined):
                quarantine.append(res)
                continue
            key = (res.kind, res.record_id)
            old = best.get(key)
            if old is None:
                best[key] = res
            else:
                duplicates += 1
                best[key] = prefer(old, res)
    records: dict[str, list[Parsed]] = {k: [] for k in schema.KINDS}
    for p in best.values():
        records[p.kind].append(p)
    for rows in records.values():
        rows.sort(key=lambda p: (p.dt, p.hour, p.record_id))
    return Batch(records, quarantine, duplicates)


# --------------------------------------------------------------------------------------------
# Rows in lake column order (shared by the pyarrow writer and Spark's createDataFrame)

_LAKE_NAMES: Mapping[str, tuple[str, ...]] = {k: tuple(f.name for f in schema.lake_fields(k)) for k in schema.KINDS}


def lake_values(p: Parsed, lake_at: datetime) -> list[Any]:
    """Values of one record in ``stream.schema.lake_fields(kind)`` order, ``lake_at`` set.

    ``corners`` become ``[{"x":..,"y":..}] * 4`` (Arrow struct / Spark struct input); timestamps stay
    aware (UTC) datetimes except ``session_start`` (naive local wall time).
    """
    rec = p.record
    out: list[Any] = []
    for name in _LAKE_NAMES[p.kind]:
        if name == "schema_version":
            out.append(schema.SCHEMA_VERSION)
        elif name == "kind":
            out.append(p.kind)
        elif name == schema.LAKE_COLUMN:
            out.append(lake_at)
        elif name == "corners":
            c = rec.corners  # type: ignore[union-attr]
            out.append(None if c is None else [{"x": x, "y": y} for x, y in c])
        else:
            out.append(getattr(rec, name))
    return out


def lake_columns(kind: str, rows: Iterable[Parsed], lake_at: datetime) -> dict[str, list[Any]]:
    """Column lists of a kind's rows (input of ``pyarrow.table(..., schema=arrow_schema(kind))``).

    Same values as :func:`lake_values`, built column by column (C-level ``attrgetter`` loops).
    """
    recs = [p.record for p in rows]
    n = len(recs)
    cols: dict[str, list[Any]] = {}
    for name in _LAKE_NAMES[kind]:
        if name == "schema_version":
            cols[name] = [schema.SCHEMA_VERSION] * n
        elif name == "kind":
            cols[name] = [kind] * n
        elif name == schema.LAKE_COLUMN:
            cols[name] = [lake_at] * n
        elif name == "corners":
            cols[name] = [None if c is None else [{"x": x, "y": y} for x, y in c] for c in map(attrgetter(name), recs)]
        else:
            cols[name] = list(map(attrgetter(name), recs))
    return cols


def quarantine_arrow_schema():  # -> pyarrow.Schema
    """Arrow schema of quarantine files (timestamps: microseconds, UTC)."""
    import pyarrow as pa

    types = {"string": pa.string(), "timestamp": pa.timestamp("us", tz="UTC")}
    nullable = {"kind", "record_id"}
    return pa.schema([pa.field(n, types[t], nullable=n in nullable) for n, t in QUARANTINE_FIELDS])


def quarantine_spark_ddl() -> str:
    """Spark DDL of quarantine files' columns."""
    return ", ".join(f"`{n}` {t}" for n, t in QUARANTINE_FIELDS)


def utc(ts: datetime) -> datetime:
    """``ts`` as an aware UTC datetime (naive values are taken to be UTC already)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
