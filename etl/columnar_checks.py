"""The record contract's checks as Arrow compute kernels (the columnar transform's validation step).

Every rule of ``schema.from_json_dict`` and ``transforms.parse_record`` -- required fields, types and
int ranges, enums, timestamps in the exact wire form, base64, corners, the event-time window against
the record's server time -- applied to whole columns.  A row failing any check is only *reported*
(its position): ``etl.columnar`` sends it to the per-record path, which writes the exact reason.

Pure: pyarrow only.
"""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from functools import cache
from itertools import accumulate

import pyarrow as pa
import pyarrow.compute as pc

from etl import transforms
from etl.transforms import SERVER_TIME
from stream import schema

_US = 1_000_000
_UTC_TS = r"^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$"
_LOCAL_TS = r"^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$"
"""The exact forms ``schema.to_bytes`` writes; other ISO-8601 forms go per record."""

_ENUMS = {("frame", "outcome"): schema.FRAME_OUTCOMES, ("box_office", "outcome"): schema.BOX_OFFICE_OUTCOMES}


@cache
def row_schema(kind: str) -> pa.Schema:
    """Lake schema of a kind without ``lake_at``, plus the helper columns the merge needs."""
    lake = schema.arrow_schema(kind)
    sch = lake.remove(lake.get_field_index(schema.LAKE_COLUMN))
    return sch.append(pa.field("_pos", pa.int64())).append(pa.field("_server", pa.int64()))


def validate(pieces: list[tuple[pa.Array, pa.Table]]) -> tuple[dict[str, pa.Table], list[int]]:
    """Valid rows per kind (in :func:`row_schema`) and the positions of rows that failed a check."""
    tables: dict[str, pa.Table] = {}
    if not pieces:
        return tables, []
    pos = pa.chunked_array([p for p, _ in pieces]).combine_chunks()
    wire = pa.concat_tables([t for _, t in pieces]).combine_chunks()
    kinds = wire["kind"]
    known = pc.fill_null(
        pc.and_(pc.is_in(kinds, pa.array(schema.KINDS)), pc.greater_equal(wire["schema_version"], 1)), False
    )
    rejected = pos.filter(pc.invert(known)).to_pylist()  # unknown kind or bad version
    for kind in schema.KINDS:
        sel = pc.and_(known, pc.equal(kinds, kind))
        if pc.any(sel).as_py():
            tables[kind], bad = _kind_rows(kind, wire.filter(sel), pos.filter(sel))
            rejected += bad
    return tables, rejected


def _kind_rows(kind: str, wire: pa.Table, pos: pa.Array) -> tuple[pa.Table, list[int]]:
    """Check one kind's rows field by field; (valid rows converted to the lake types, failed positions)."""
    ok = pa.array([True] * wire.num_rows)
    cols: dict[str, pa.Array] = {}
    for f in schema.FIELDS[kind][2:]:
        col_ok, cols[f.name] = _field(kind, f, wire[f.name].combine_chunks())
        ok = pc.and_(ok, col_ok)
    captured = cols["captured_at"].cast(pa.int64())
    server = cols[SERVER_TIME[kind]].cast(pa.int64())
    ahead = us(transforms.FUTURE_TOLERANCE)
    behind = us(transforms.MAX_LATENESS)
    in_window = pc.and_(
        pc.less_equal(pc.subtract(captured, server), ahead), pc.less_equal(pc.subtract(server, captured), behind)
    )
    ok = pc.fill_null(pc.and_(ok, in_window), False)
    rejected = pos.filter(pc.invert(ok)).to_pylist()
    n = pc.sum(ok).as_py() or 0
    sch = row_schema(kind)
    arrays = []
    for name in sch.names:
        if name == "schema_version":
            arrays.append(pa.repeat(pa.scalar(schema.SCHEMA_VERSION, pa.int32()), n))
        elif name == "kind":
            arrays.append(pa.repeat(pa.scalar(kind, pa.string()), n))
        elif name == "_pos":
            arrays.append(pos.filter(ok))
        elif name == "_server":
            arrays.append(server.filter(ok))
        elif name == "corners":
            arrays.append(_corners(cols[name].filter(ok)))
        else:
            arrays.append(cols[name].filter(ok).cast(sch.field(name).type))
    return pa.Table.from_arrays(arrays, schema=sch), rejected


def us(d: timedelta) -> int:
    return (d.days * 86_400 + d.seconds) * _US + d.microseconds


def _field(kind: str, f: schema.Field, col: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(row passes, converted column) of one field; a null check means the row fails."""
    check: pa.Array | None = None
    present = pc.is_valid(col)  # of the JSON value: a converted column is null where conversion failed
    if f.type in ("int", "bigint"):
        lo, hi = schema.INT_RANGES[f.type]
        check = pc.and_(pc.greater_equal(col, lo), pc.less_equal(col, hi))
    elif f.type == "double":
        check = pc.is_finite(col)
    elif f.type == "timestamp":
        check, col = _timestamps(col, local=f.name == "session_start")
    elif f.type == "binary":
        check, col = _base64(col)
    elif f.type == "corners":
        check = _corners_ok(col)
    elif (kind, f.name) in _ENUMS:
        check = pc.is_in(col, pa.array(_ENUMS[kind, f.name]))
    passes = present if check is None else pc.and_(present, pc.fill_null(check, False))
    if f.nullable:
        passes = pc.or_(pc.invert(present), passes)
    return passes, col


def _timestamps(col: pa.Array, local: bool) -> tuple[pa.Array, pa.Array]:
    """Timestamps in the strict form ``to_bytes`` writes: (valid, parsed as the lake type)."""
    form = pc.fill_null(pc.match_substring_regex(col, _LOCAL_TS if local else _UTC_TS), False)
    text = pc.utf8_slice_codeunits(pc.if_else(form, col, "2000-01-01T00:00:00.000000"), 0, 26)
    try:  # Arrow's ISO-8601 parser checks month, day of month, hour, minute, second like fromisoformat
        us = text.cast(pa.timestamp("us")).cast(pa.int64())
    except pa.ArrowInvalid:  # a well-formed but impossible date: find it by parsing and re-printing
        head = pc.utf8_slice_codeunits(text, 0, 19)
        secs = pc.strptime(head, format="%Y-%m-%dT%H:%M:%S", unit="s", error_is_null=True)
        form = pc.and_(form, pc.fill_null(pc.equal(pc.strftime(secs, format="%Y-%m-%dT%H:%M:%S"), head), False))
        text = pc.if_else(form, text, "2000-01-01T00:00:00.000000")
        us = text.cast(pa.timestamp("us")).cast(pa.int64())
    typ = pa.timestamp("us") if local else pa.timestamp("us", tz="UTC")
    return form, pc.if_else(form, us, pa.scalar(None, pa.int64())).cast(typ)


def _base64(col: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Decode base64 strings as ``schema`` does (``validate=True``); rare, so in Python."""
    ok = [True] * len(col)
    out: list[bytes | None] = [None] * len(col)
    for i in pc.indices_nonzero(pc.is_valid(col)).to_pylist():
        try:
            out[i] = base64.b64decode(col[i].as_py(), validate=True)
        except (binascii.Error, ValueError):
            ok[i] = False
    return pa.array(ok), pa.array(out, pa.binary())


def _corners_ok(col: pa.Array) -> pa.Array:
    """4 points of 2 non-null int32 values each (null lists pass; nullability is checked apart)."""
    inner = pc.list_flatten(col)
    values = pc.list_flatten(inner)
    lo, hi = schema.INT_RANGES["corners"]
    fine = (
        pc.all(pc.equal(pc.list_value_length(col), 4)).as_py() is not False
        and inner.null_count == 0
        and pc.all(pc.equal(pc.list_value_length(inner), 2)).as_py() is not False
        and values.null_count == 0
        and pc.all(pc.and_(pc.greater_equal(values, lo), pc.less_equal(values, hi))).as_py() is not False
    )
    if fine:
        return pa.array([True] * len(col))
    return pa.array(
        [
            v is None or (len(v) == 4 and all(p is not None and len(p) == 2 and all(_in_int(q) for q in p) for p in v))
            for v in col.to_pylist()
        ]
    )


def _in_int(q: int | None) -> bool:
    lo, hi = schema.INT_RANGES["corners"]
    return q is not None and lo <= q <= hi


def _corners(col: pa.Array) -> pa.Array:
    """list<list<int64>> of valid corners -> the lake's list<struct<x int32, y int32>>."""
    values = pc.list_flatten(pc.list_flatten(col)).cast(pa.int32())
    n = len(values) // 2
    even = pa.array(range(0, 2 * n, 2), pa.int64())
    points = pa.StructArray.from_arrays(
        [values.take(even), values.take(pc.add(even, 1))],
        fields=list(schema.arrow_schema("read").field("corners").type.value_type),
    )
    lengths = pc.fill_null(pc.list_value_length(col), 0)
    offsets = pa.array([0, *accumulate(lengths.to_pylist())], pa.int32())
    typ = schema.arrow_schema("read").field("corners").type
    return pa.ListArray.from_arrays(offsets, points, type=typ, mask=pc.is_null(col))
