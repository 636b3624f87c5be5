"""The record contract: the one definition of what flows through the pipeline.

Three record kinds travel on the analytics stream (Kinesis in the cloud, SQLite locally):

* ``read``       -- one decoded code in one frame (the ticket read);
* ``frame``      -- one processed frame, also when it held no code or was rejected (camera health);
* ``box_office`` -- the box office's answer to one forwarded read (accepted / already used / ...).

Each kind is a frozen dataclass plus a tuple of :class:`Field` s.  Everything else is *derived*
from those field tuples: the compact JSON wire codec (Kinesis/SQS), the Arrow schema of the
Parquet files, the Spark schema of the Glue job and the Athena column list.  Change a field here
and every consumer follows; ``tests/stream/test_schema.py`` proves they agree.

Ids are deterministic (see :func:`frame_id` and :func:`read_id`): a camera that re-sends the same
frame produces the same ids, so every store downstream can de-duplicate.

This module is pure: it imports no AWS SDK, Pulumi, Spark or Glue (pyarrow is imported lazily).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import orjson

SCHEMA_VERSION = 1
"""Bumped when a field changes meaning or type. Adding an optional field does not bump it."""

KINDS = ("read", "frame", "box_office")

FRAME_OUTCOMES = ("ok", "no_code", "rejected")
BOX_OFFICE_OUTCOMES = ("accepted", "already_used", "unknown_ticket", "refused", "not_configured")

MAX_CAPTURE_AHEAD = timedelta(minutes=10)
"""How far a camera's ``captured_at`` may be ahead of the server clock.  The camera API refuses more
(422) and the ETL quarantines more: such a read would land in an hour partition that has not happened."""

MAX_CAPTURE_BEHIND = timedelta(days=30)
"""How far ``captured_at`` may be behind the server clock before the ETL quarantines the record (a camera
clock reset).  The camera API's own limit (``MAX_CLOCK_SKEW_SECONDS``, default a day) is tighter."""

PARTITION_COLUMNS = ("dt", "hour")
"""Hive-style partition columns derived from event time (``captured_at``, UTC): ``dt=YYYY-MM-DD/hour=HH``."""

LAKE_COLUMN = "lake_at"
"""Added by the ETL: when the row was written to the lake (for pipeline latency)."""


class RecordError(ValueError):
    """A record does not satisfy the contract.  ``field`` names the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid record field {field!r}: {reason}")
        self.field = field
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Field definitions: the single source of truth for every derived schema.


@dataclass(frozen=True)
class Field:
    """One column of a record kind.

    ``type`` is one of :data:`TYPES`; ``nullable=False`` fields must be present in every record.
    """

    name: str
    type: str
    nullable: bool = True
    doc: str = ""


TYPES = ("string", "int", "bigint", "double", "boolean", "timestamp", "binary", "corners")
"""Logical types.  ``timestamp`` is UTC with microseconds; ``corners`` is 4 (x, y) integer points."""

INT_RANGES = {"int": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1), "corners": (-(2**31), 2**31 - 1)}
"""Inclusive value range of the integer types (Arrow/Parquet/Athena ``int`` is 32-bit, ``bigint`` 64-bit;
corner coordinates are ``int``).  A value outside fails validation: it could not be written to the lake."""

_COMMON = (
    Field("schema_version", "int", False, "contract version that wrote the record"),
    Field("kind", "string", False, "read | frame | box_office"),
)
_WHERE = (
    Field("camera_id", "string", False, "camera that sent the frame (from its API key)"),
    Field("cinema_id", "string", False, "cinema of the camera (camera registry)"),
    Field("room_id", "string", False, "room the camera watches (camera registry)"),
    Field("tz", "string", False, "IANA time zone of the cinema, for local-time views"),
)

READ_FIELDS: tuple[Field, ...] = (
    *_COMMON,
    Field("read_id", "string", False, "deterministic id: hash(frame_id, code bytes)"),
    Field("frame_id", "string", False, "frame the code was read in"),
    *_WHERE,
    Field("captured_at", "timestamp", False, "camera clock, UTC (event time)"),
    Field("received_at", "timestamp", False, "server clock, UTC"),
    Field("text", "string", False, "code payload as text (invalid UTF-8 replaced by U+FFFD)"),
    Field("raw", "binary", True, "code payload bytes, only when they are not valid UTF-8"),
    Field("symbology", "string", False, "e.g. QRCode"),
    Field("corners", "corners", True, "4 corner points in image pixels, clockwise from top-left"),
    Field("decoder", "string", False, "decoder (and pass) that read the code"),
    Field("ticket_valid", "boolean", False, "payload parsed as a ticket"),
    Field("ticket_format", "string", True, "parser that matched (tkt, json, url, ...)"),
    Field("ticket_error", "string", True, "why the payload is not a valid ticket"),
    Field("ticket_id", "string", True, "ticket identifier from the payload"),
    Field("ticket_cinema", "string", True, "cinema printed on the ticket"),
    Field("ticket_room", "string", True, "room printed on the ticket"),
    Field("session_id", "string", True, "session identifier printed on the ticket"),
    Field("session_start", "timestamp", True, "session start as cinema-local wall time (no zone)"),
    Field("seat", "string", True, "seat printed on the ticket"),
)

FRAME_FIELDS: tuple[Field, ...] = (
    *_COMMON,
    Field("frame_id", "string", False, "deterministic id: hash(camera_id, image bytes)"),
    *_WHERE,
    Field("captured_at", "timestamp", False, "camera clock, UTC (event time)"),
    Field("received_at", "timestamp", False, "server clock, UTC"),
    Field("image_format", "string", True, "jpeg | png | ... (null when not an image)"),
    Field("image_bytes", "bigint", False, "size of the uploaded image in bytes"),
    Field("width", "int", True, "image width in pixels"),
    Field("height", "int", True, "image height in pixels"),
    Field("codes", "int", False, "distinct codes read in the frame"),
    Field("decode_ms", "double", False, "time spent decoding, milliseconds"),
    Field("outcome", "string", False, "ok | no_code | rejected"),
    Field("reject_reason", "string", True, "machine-readable reason when outcome = rejected"),
)

BOX_OFFICE_FIELDS: tuple[Field, ...] = (
    *_COMMON,
    Field("outcome_id", "string", False, "deterministic id: hash(read_id)"),
    Field("read_id", "string", False, "the forwarded read"),
    Field("frame_id", "string", False, "frame of the forwarded read"),
    *_WHERE,
    Field("ticket_id", "string", True, "ticket identifier forwarded"),
    Field("captured_at", "timestamp", False, "capture time of the read, UTC (event time)"),
    Field("decided_at", "timestamp", False, "when the box office answered, UTC"),
    Field("outcome", "string", False, "accepted | already_used | unknown_ticket | refused | not_configured"),
    Field("http_status", "int", True, "status the box office answered with"),
    Field("detail", "string", True, "box office message or delivery error"),
)

FIELDS: Mapping[str, tuple[Field, ...]] = {
    "read": READ_FIELDS,
    "frame": FRAME_FIELDS,
    "box_office": BOX_OFFICE_FIELDS,
}

ID_FIELD = {"read": "read_id", "frame": "frame_id", "box_office": "outcome_id"}
"""The de-duplication key of each kind."""

TABLE = {"read": "reads", "frame": "frames", "box_office": "box_office"}
"""Lake table (and directory) name of each kind."""


# --------------------------------------------------------------------------------------------
# Deterministic ids


def stable_id(*parts: str | bytes) -> str:
    """128-bit hex id from the parts, stable across runs, processes and machines."""
    h = hashlib.sha256()
    for p in parts:
        b = p.encode("utf-8") if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "big"))
        h.update(b)
    return h.hexdigest()[:32]


def frame_id(camera_id: str, image: bytes) -> str:
    """Id of a frame: the same camera re-sending the same bytes gets the same id.

    The image is digested with XXH3-128 (~0.01 ms for a 1080p JPEG; SHA-256 took 0.25 ms, about 2 %
    of its decode): a frame id only has to tell one camera's frames apart, and a camera forging a
    collision could only merge two of its own frames.  Imported here rather than at module level
    because the Glue job uses this module and never computes frame ids.
    """
    import xxhash

    return stable_id("frame", camera_id, xxhash.xxh3_128_digest(image))


def read_id(frame_id_: str, payload: bytes) -> str:
    """Id of a read: one per distinct code payload in a frame."""
    return stable_id("read", frame_id_, payload)


def outcome_id(read_id_: str) -> str:
    """Id of the box office's answer to a read (one answer per read)."""
    return stable_id("box_office", read_id_)


# --------------------------------------------------------------------------------------------
# Records

Corners = tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class _Record:
    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with Python values (datetime, bytes), ``kind`` and version included."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"schema_version": SCHEMA_VERSION, "kind": self.kind, **d}

    @property
    def record_id(self) -> str:
        return getattr(self, ID_FIELD[self.kind])


@dataclass(frozen=True)
class Read(_Record):
    kind: ClassVar[str] = "read"
    read_id: str
    frame_id: str
    camera_id: str
    cinema_id: str
    room_id: str
    tz: str
    captured_at: datetime
    received_at: datetime
    text: str
    symbology: str
    decoder: str
    ticket_valid: bool
    raw: bytes | None = None
    corners: Corners | None = None
    ticket_format: str | None = None
    ticket_error: str | None = None
    ticket_id: str | None = None
    ticket_cinema: str | None = None
    ticket_room: str | None = None
    session_id: str | None = None
    session_start: datetime | None = None
    seat: str | None = None


@dataclass(frozen=True)
class FrameSummary(_Record):
    kind: ClassVar[str] = "frame"
    frame_id: str
    camera_id: str
    cinema_id: str
    room_id: str
    tz: str
    captured_at: datetime
    received_at: datetime
    image_bytes: int
    codes: int
    decode_ms: float
    outcome: str
    image_format: str | None = None
    width: int | None = None
    height: int | None = None
    reject_reason: str | None = None


@dataclass(frozen=True)
class BoxOfficeOutcome(_Record):
    kind: ClassVar[str] = "box_office"
    outcome_id: str
    read_id: str
    frame_id: str
    camera_id: str
    cinema_id: str
    room_id: str
    tz: str
    captured_at: datetime
    decided_at: datetime
    outcome: str
    ticket_id: str | None = None
    http_status: int | None = None
    detail: str | None = None


Record = Read | FrameSummary | BoxOfficeOutcome
RECORD_CLASSES: Mapping[str, type[_Record]] = {"read": Read, "frame": FrameSummary, "box_office": BoxOfficeOutcome}


# --------------------------------------------------------------------------------------------
# JSON wire codec (Kinesis and SQS bodies)


def format_ts(ts: datetime) -> str:
    """ISO-8601 UTC with microseconds and a ``Z``: ``2026-11-30T20:15:03.123456Z``."""
    tz = ts.tzinfo
    if tz is None:
        raise RecordError("timestamp", "naive datetime; the contract carries UTC-aware times")
    if tz is not UTC:
        ts = ts.astimezone(UTC)
    return ts.isoformat(timespec="microseconds")[:-6] + "Z"  # drop "+00:00"; 3x cheaper than strftime


def parse_ts(value: Any, field: str) -> datetime:
    """Parse an ISO-8601 timestamp with a zone (``Z`` or offset) to an aware UTC datetime."""
    if type(value) is not str:
        raise RecordError(field, f"expected an ISO-8601 string, got {type(value).__name__}")
    try:
        ts = datetime.fromisoformat(value)  # Python 3.11 reads "Z" itself
    except ValueError:
        raise RecordError(field, f"not an ISO-8601 timestamp: {value[:40]!r}") from None
    if ts.tzinfo is UTC:
        return ts
    if ts.tzinfo is None:
        raise RecordError(field, f"timestamp without a zone: {value[:40]!r} (add Z or an offset)")
    try:
        return ts.astimezone(UTC)
    except OverflowError:
        raise RecordError(field, f"timestamp out of range in UTC: {value[:40]!r}") from None


def _format_local(v: datetime) -> str:
    return v.strftime("%Y-%m-%dT%H:%M:%S")  # session_start: cinema-local wall time, no zone


def _format_binary(v: bytes) -> str:
    return base64.b64encode(v).decode("ascii")


def _format_corners(v: Corners) -> list[list[int]]:
    return [[int(x), int(y)] for x, y in v]


def _field_encoder(f: Field) -> Callable[[Any], Any] | None:
    """JSON form of a field's non-null value (None: the value is already JSON)."""
    if f.type == "timestamp":
        return _format_local if f.name == "session_start" else format_ts
    return {"binary": _format_binary, "corners": _format_corners}.get(f.type)


# Encoding too is compiled once per kind (the decoder Lambda encodes every read and frame it publishes).
_ENCODERS: Mapping[str, tuple[tuple[str, Callable[[Any], Any] | None], ...]] = {
    kind: tuple((f.name, _field_encoder(f)) for f in fields[2:]) for kind, fields in FIELDS.items()
}


# Decoding is compiled once per field into a small function (the ETL decodes millions of records).
Decoder = Callable[[Any], Any]


def _field_decoder(f: Field) -> Decoder:
    name, t = f.name, f.type

    def missing() -> None:
        if not f.nullable:
            raise RecordError(name, "missing or null, but required")

    def bad(v: Any) -> Any:
        raise RecordError(name, f"expected {t}, got {type(v).__name__}")

    def decode_other(v: Any) -> Any:
        if t == "timestamp" and name == "session_start":  # cinema-local wall time, no zone
            if type(v) is not str:
                return bad(v)
            try:
                return datetime.fromisoformat(v)
            except ValueError:
                raise RecordError(name, f"not an ISO-8601 local time: {v[:40]!r}") from None
        if t == "timestamp":
            return parse_ts(v, name)
        if t == "binary":
            try:
                return base64.b64decode(v, validate=True)
            except (ValueError, TypeError):
                raise RecordError(name, "not valid base64") from None
        if t == "corners":
            try:
                pts = tuple((int(x), int(y)) for x, y in v)
            except (TypeError, ValueError):
                raise RecordError(name, "expected 4 [x, y] integer pairs") from None
            if len(pts) != 4:
                raise RecordError(name, f"expected 4 points, got {len(pts)}")
            if not all(lo <= c <= hi for pt in pts for c in pt):
                raise RecordError(name, f"a coordinate is outside the int range {lo}..{hi}")
            return pts
        if t == "double" and type(v) in (int, float):
            return float(v)
        return bad(v)

    exact = {"string": str, "int": int, "bigint": int, "boolean": bool}.get(t)
    lo, hi = INT_RANGES.get(t, (0, 0))
    ranged = t in ("int", "bigint")

    def decode(v: Any) -> Any:
        if exact is not None and type(v) is exact:  # the common case, and no bool passes as int
            if ranged and not lo <= v <= hi:
                raise RecordError(name, f"{v} is outside the {t} range {lo}..{hi}")
            return v
        if v is None:
            return missing()
        return decode_other(v)

    return decode


_DECODERS: Mapping[str, tuple[tuple[str, Decoder], ...]] = {
    kind: tuple((f.name, _field_decoder(f)) for f in fields[2:]) for kind, fields in FIELDS.items()
}


def to_json_dict(record: Record) -> dict[str, Any]:
    """JSON-ready dict of a record (nulls omitted to keep the wire compact)."""
    out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "kind": record.kind}
    for name, encode in _ENCODERS[record.kind]:
        v = getattr(record, name)
        if v is not None:
            out[name] = v if encode is None else encode(v)
    return out


def to_bytes(record: Record) -> bytes:
    """Compact JSON bytes of a record (UTF-8, no spaces): the Kinesis record / SQS body wire format."""
    return orjson.dumps(to_json_dict(record))


def from_json_dict(obj: Any) -> Record:
    """Validate a decoded JSON object and build its record.

    Unknown fields are ignored (forward compatibility).  A newer ``schema_version`` is accepted as
    long as the fields this version knows are valid.

    Raises:
        RecordError: naming the first field that is missing or malformed.
    """
    if type(obj) is not dict:
        raise RecordError("<record>", f"expected a JSON object, got {type(obj).__name__}")
    kind = obj.get("kind")
    decoders = _DECODERS.get(kind) if type(kind) is str else None
    if decoders is None:
        raise RecordError("kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
    version = obj.get("schema_version")
    if type(version) is not int or version < 1:
        raise RecordError("schema_version", f"expected a positive integer, got {version!r}")
    get = obj.get
    values = {name: dec(get(name)) for name, dec in decoders}
    _check_enums(kind, values)
    # Every field was validated above: fill the frozen instance directly (its generated __init__
    # costs more than all the validation, through one object.__setattr__ per field).
    record = object.__new__(RECORD_CLASSES[kind])
    record.__dict__.update(values)
    return record  # type: ignore[return-value]


def _check_enums(kind: str, values: Mapping[str, Any]) -> None:
    if kind == "frame" and values["outcome"] not in FRAME_OUTCOMES:
        raise RecordError("outcome", f"expected one of {', '.join(FRAME_OUTCOMES)}")
    if kind == "box_office" and values["outcome"] not in BOX_OFFICE_OUTCOMES:
        raise RecordError("outcome", f"expected one of {', '.join(BOX_OFFICE_OUTCOMES)}")


def from_bytes(data: bytes) -> Record:
    """Decode one wire record (compact JSON).

    Raises:
        RecordError: the bytes are not UTF-8 JSON, or a field is missing or malformed.
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise RecordError("<record>", f"not UTF-8 JSON: {e}") from None
    return from_json_dict(obj)


# --------------------------------------------------------------------------------------------
# Derived schemas (Arrow / Parquet, Spark, Athena)

_ATHENA = {
    "string": "string",
    "int": "int",
    "bigint": "bigint",
    "double": "double",
    "boolean": "boolean",
    "timestamp": "timestamp",
    "binary": "binary",
    "corners": "array<struct<x:int,y:int>>",
}


def lake_fields(kind: str) -> tuple[Field, ...]:
    """Columns stored in the Parquet files of a kind (record fields + ``lake_at``; partitions excluded)."""
    return (*FIELDS[kind], Field(LAKE_COLUMN, "timestamp", False, "when the ETL wrote the row, UTC"))


def arrow_schema(kind: str):  # -> pyarrow.Schema (lazy import keeps the Lambda light)
    """Arrow schema of a lake table's Parquet files (timestamps: microseconds, UTC)."""
    import pyarrow as pa

    def arrow_type(t: str, name: str):
        return {
            "string": pa.string(),
            "int": pa.int32(),
            "bigint": pa.int64(),
            "double": pa.float64(),
            "boolean": pa.bool_(),
            "timestamp": pa.timestamp("us") if name == "session_start" else pa.timestamp("us", tz="UTC"),
            "binary": pa.binary(),
            "corners": pa.list_(pa.struct([("x", pa.int32()), ("y", pa.int32())])),
        }[t]

    return pa.schema([pa.field(f.name, arrow_type(f.type, f.name), nullable=f.nullable) for f in lake_fields(kind)])


def athena_columns(kind: str) -> list[tuple[str, str]]:
    """(name, Athena/Hive type) of a lake table's data columns, in file order."""
    return [(f.name, _ATHENA[f.type]) for f in lake_fields(kind)]


def spark_ddl(kind: str) -> str:
    """Spark DDL string of a lake table's data columns (``StructType.fromDDL`` accepts it)."""

    def spark_type(f: Field) -> str:
        return "timestamp_ntz" if f.name == "session_start" else _ATHENA[f.type]

    return ", ".join(f"`{f.name}` {spark_type(f)}" for f in lake_fields(kind))


def partition_values(captured_at: datetime) -> tuple[str, str]:
    """Partition values (``dt``, ``hour``) of an event time: UTC date and zero-padded hour."""
    ts = captured_at if captured_at.tzinfo is UTC else captured_at.astimezone(UTC)
    return f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}", f"{ts.hour:02d}"


def now_utc() -> datetime:
    """Current time, UTC-aware, microsecond precision (the server clock of the contract)."""
    return datetime.now(UTC)
