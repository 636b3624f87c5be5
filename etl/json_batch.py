"""A batch of user records (compact JSON) into Arrow tables with pyarrow's JSON reader -- safely.

The columnar transform (``etl.columnar``) parses whole batches with ``pyarrow.json.read_json``.
That reader and orjson (the wire codec of ``stream.schema``) do not accept exactly the same bytes,
so :func:`read` *screens* records first and leaves to the per-record path every record where they
could disagree (:data:`_HAZARD`, invalid UTF-8, deep nesting).  A chunk the reader refuses (a
wrong type, a duplicate key) or reads as more rows than lines is halved until the offending records
are isolated in chunks of at most :data:`MIN_CHUNK`; those are left too.

Pure: pyarrow only.  Thread-safety: no shared state.
"""

from __future__ import annotations

import io
from functools import cache
from itertools import accumulate

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from stream import schema

MIN_CHUNK = 16
"""A chunk the JSON reader refuses is halved down to this many records, which then go per record."""

_HAZARD = "|".join(
    (
        r"\\u",  # unicode escapes: surrogate handling differs
        r"NaN|Inf",  # literals the reader accepts and JSON does not
        r"[\x00-\x09\x0b-\x1f]",  # raw control characters (the record's own newline is its separator)
        r"\n[\s\S]",  # a newline inside the record
        r"^[^{]|[^}]\n$",  # not one object from first to last byte
        r"[:,\[\s]-?[0-9]+(\.[0-9]*)?[eE][+-]?[0-9]{3}",  # exponent >= 100: may overflow a double
        r"[0-9]{300}",  # digit runs that may overflow a double
    )
)
"""Records (each followed by its newline) that the fast path leaves to orjson and the per-record path."""

_MAX_OPENERS = 1000
"""Records with this many ``[``/``{`` may nest deeper than orjson's limit (1024 levels), and the
JSON reader overflows its stack on very deep nesting (a crash, not an error): per-record path."""


@cache
def wire_schema() -> pa.Schema:
    """Arrow schema the JSON reader parses records with: every field of every kind, as JSON types.

    Derived from ``stream.schema.FIELDS``: timestamps and base64 binaries stay strings (checked and
    converted afterwards), ints are read as int64 (range-checked), corners as lists of int lists.
    """
    types = {
        "string": pa.string(),
        "int": pa.int64(),
        "bigint": pa.int64(),
        "double": pa.float64(),
        "boolean": pa.bool_(),
        "timestamp": pa.string(),
        "binary": pa.string(),
        "corners": pa.list_(pa.list_(pa.int64())),
    }
    fields: dict[str, pa.Field] = {}
    for fs in schema.FIELDS.values():
        for f in fs:
            fields.setdefault(f.name, pa.field(f.name, types[f.type]))
            if fields[f.name].type != types[f.type]:
                raise TypeError(f"field {f.name!r} has two wire types across kinds; the columnar reader needs one")
    return pa.schema(list(fields.values()))


def read(blobs: list[bytes]) -> tuple[list[tuple[pa.Array, pa.Table]], list[int]]:
    """Read user records (compact JSON) into Arrow tables of :func:`wire_schema`, where that is safe.

    Returns ``([(positions, table)], left)``: table rows are the records at ``positions``;
    ``left`` are the positions of records to decode one by one (screened out, or refused by the reader).
    """
    if not blobs:
        return [], []
    buf = b"\n".join(blobs) + b"\n"
    offsets = pa.array([0, *accumulate(len(b) + 1 for b in blobs)], pa.int64())
    lines = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(blobs), [None, offsets.buffers()[1], pa.py_buffer(buf)]
    )
    hazard = pc.match_substring_regex(lines, _HAZARD)
    long_ = pc.indices_nonzero(pc.greater_equal(pc.binary_length(lines), _MAX_OPENERS)).to_pylist()
    flagged = set(pc.indices_nonzero(hazard).to_pylist())
    flagged.update(i for i in long_ if blobs[i].count(b"[") + blobs[i].count(b"{") >= _MAX_OPENERS)
    try:
        buf.decode("utf-8")
    except UnicodeDecodeError:
        flagged.update(i for i, b in enumerate(blobs) if not _is_utf8(b))
    if not flagged:
        return _read_chunks(blobs, list(range(len(blobs))), buf)
    cand = [i for i in range(len(blobs)) if i not in flagged]
    fast, slow = _read_chunks(blobs, cand, None)
    return fast, slow + sorted(flagged)


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _read_chunks(blobs: list[bytes], idx: list[int], buf: bytes | None) -> tuple[list, list[int]]:
    """Read records ``idx``; halve a chunk the reader refuses (or miscounts) until it is small."""
    if not idx:
        return [], []
    block = max(512 << 10, 2 * max(len(blobs[i]) for i in idx) + 2)
    read_opts = pj.ReadOptions(block_size=block, use_threads=True)
    parse_opts = pj.ParseOptions(explicit_schema=wire_schema(), unexpected_field_behavior="ignore")
    ok: list[tuple[pa.Array, pa.Table]] = []
    rejected: list[int] = []
    stack = [(idx, buf)]
    while stack:
        part, data = stack.pop()
        if data is None:
            data = b"\n".join([blobs[i] for i in part]) + b"\n"
        try:
            table = pj.read_json(io.BytesIO(data), read_options=read_opts, parse_options=parse_opts)
        except pa.ArrowInvalid:
            table = None
        if table is not None and table.num_rows == len(part):
            ok.append((pa.array(part, pa.int64()), table))
        elif len(part) <= MIN_CHUNK:
            rejected.extend(part)
        else:
            mid = len(part) // 2
            stack += [(part[mid:], None), (part[:mid], None)]
    return ok, rejected
