"""The ETL transform over a whole batch at once, with Arrow kernels: same output as ``etl.transforms``.

:func:`etl.transforms.transform` decodes and validates record by record in Python (about 20 µs
each).  This module gives the same result -- same rows and values, same (dt, hour, id) order, same
quarantine rows and reasons, same duplicate count -- for a batch, with the per-record work done by
pyarrow in C++:

1. de-aggregate every entry (``stream.aggregate``), keeping where each user record came from;
2. read them as newline-delimited JSON with the *wire schema* derived from ``stream.schema.FIELDS``
   (``etl.json_batch``): records on which pyarrow's JSON reader and orjson could disagree are
   screened out first, and a chunk the reader refuses is halved until the offending records are
   isolated; both go to the per-record path;
3. check every rule of ``schema.from_json_dict`` and ``transforms.parse_record`` with compute
   kernels (required fields, types and ranges, enums, timestamps in the exact wire form, the
   event-time window against the record's server time); a row failing any check goes to the
   per-record path, which writes the exact quarantine reason;
4. merge in the per-record path's valid rows, drop duplicate ids with the rule of
   :func:`etl.transforms.prefer`, and sort by (dt, hour, id).

So the fast path only ever *accepts* a record that the per-record path accepts with the same
values; everything else takes the reference path.  ``tests/etl/test_etl_columnar.py`` proves the
two agree on generated batches.

Pure: no Spark, AWS SDK or Glue; pyarrow only.  Thread-safety: no shared state.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import accumulate

import pyarrow as pa
import pyarrow.compute as pc
from aws_kinesis_agg import MAGIC

from etl import json_batch, transforms
from etl.transforms import SERVER_TIME, Entry, Parsed, Quarantined
from stream import schema
from stream.aggregate import AggregateError, deaggregate

_US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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


@dataclass
class ColumnarBatch:
    """The outcome of one batch, column-wise.

    ``tables[kind]`` holds the unique valid records in lake column order (without ``lake_at``),
    sorted by (dt, hour, id); ``partitions[kind]`` lists ``(dt, hour, offset, length)`` slices of it.
    ``slow_records`` counts user records that took the per-record path.
    """

    tables: dict[str, pa.Table]
    partitions: dict[str, list[tuple[str, str, int, int]]]
    quarantine: list[Quarantined]
    duplicates: int = 0
    slow_records: int = 0
    records: int = 0

    @property
    def row_count(self) -> int:
        return sum(t.num_rows for t in self.tables.values())

    def lake_tables(self, kind: str, lake_at: datetime) -> Iterator[tuple[str, str, pa.Table]]:
        """(dt, hour, table in ``schema.arrow_schema(kind)``) per partition, ``lake_at`` set."""
        table = self.tables[kind]
        lake_field = schema.arrow_schema(kind).field(schema.LAKE_COLUMN)
        for dt, hour, offset, length in self.partitions[kind]:
            part = table.slice(offset, length)
            yield dt, hour, part.append_column(lake_field, pa.repeat(pa.scalar(lake_at, lake_field.type), length))


def transform_entries(entries: Sequence[Entry]) -> ColumnarBatch:
    """:func:`transform` of materialised entries."""
    return transform([e.data for e in entries], entries.__getitem__)


def _unique_rows(data: Sequence[bytes], entry_at: Callable[[int], Entry]) -> tuple[ColumnarBatch, list[bytes]]:
    """The transform up to de-duplication; also returns the user records (``blobs``).

    ``tables[kind]`` are unsorted and keep ``_pos`` (index into ``blobs``) and ``_server``;
    ``partitions`` is not filled.
    """
    blobs: list[bytes] = []
    origin: list[int] = []  # entry index of each user record
    sub: dict[int, int] = {}  # blob index -> sub-record position, for aggregates of several records
    bad: list[tuple[int, int, Quarantined]] = []
    for i, d in enumerate(data):
        if d[:4] != MAGIC:  # stream.aggregate.is_aggregate, inlined: runs once per entry
            blobs.append(d)
            origin.append(i)
            continue
        try:
            parts = deaggregate(d)
        except AggregateError as e:
            en = entry_at(i)
            bad.append((i, -1, Quarantined(en.data, str(e), "deaggregate", en.source, en.partition_key, en.arrived_at)))
            continue
        for j, blob in enumerate(parts):
            if len(parts) > 1:
                sub[len(blobs)] = j
            blobs.append(blob)
            origin.append(i)
    fast, slow = json_batch.read(blobs)
    valid, rejected = _validate(fast)
    slow.extend(rejected)
    per_kind: dict[str, list[pa.Table]] = {k: [valid[k]] if k in valid else [] for k in schema.KINDS}
    slow.sort()
    parsed: dict[str, list[Parsed]] = {k: [] for k in schema.KINDS}
    slow_pos: dict[str, list[int]] = {k: [] for k in schema.KINDS}
    for b in slow:
        en = entry_at(origin[b])
        source = f"{en.source}/{sub[b]}" if b in sub else en.source
        res = transforms.parse_record(blobs[b], en.partition_key, en.arrived_at, source)
        if isinstance(res, Quarantined):
            bad.append((origin[b], sub.get(b, 0), res))
        else:
            parsed[res.kind].append(res)
            slow_pos[res.kind].append(b)
    bad.sort(key=lambda t: (t[0], t[1]))
    out = ColumnarBatch({}, {}, [q for _, _, q in bad], slow_records=len(slow), records=len(blobs))
    for kind in schema.KINDS:
        if parsed[kind]:
            per_kind[kind].append(_slow_table(kind, parsed[kind], slow_pos[kind]))
        table = pa.concat_tables(per_kind[kind]) if per_kind[kind] else row_schema(kind).empty_table()
        table, dups = _dedup(kind, table, blobs)
        out.duplicates += dups
        out.tables[kind] = table
    return out, blobs


def transform(data: Sequence[bytes], entry_at: Callable[[int], Entry]) -> ColumnarBatch:
    """Run the transform over a batch: ``data[i]`` is entry ``i``'s bytes, ``entry_at(i)`` the whole entry.

    ``entry_at`` is only called for entries that need the per-record path or the quarantine, so a
    runner can build its :class:`Entry` objects lazily.  Never raises on bad input.
    """
    out, _ = _unique_rows(data, entry_at)
    for kind in schema.KINDS:
        out.tables[kind], out.partitions[kind] = _sort_and_partition(kind, out.tables[kind])
    return out


# --------------------------------------------------------------------------------------------
# One Arrow batch in, the rows of every table out: the Spark runner (``DataFrame.mapInArrow``)

SOURCE_COLUMNS = ("data", "partition_key", "arrived_at", "source")
"""Columns of :func:`transform_arrow`'s input, in this order: binary, string, timestamp, string."""

TABLE_COLUMN = "_table"
"""Output column naming each row's table (``schema.TABLE[kind]`` or ``transforms.QUARANTINE_TABLE``)."""

ID_COLUMN = "_id"
"""Output column with the record id (the kind's ``schema.ID_FIELD``); null on quarantine rows."""

SERVER_COLUMN = "_server"
"""Output column with the record's server time in µs since the epoch: first key of ``transforms.prefer``."""

DATA_COLUMN = "_data"
"""Output column with the user record's bytes: second key of ``transforms.prefer`` (smaller wins)."""


@cache
def union_schema() -> pa.Schema:
    """Arrow schema of :func:`transform_arrow`'s output: the rows of all tables in one schema.

    The data columns (without ``lake_at``) of every kind and of the quarantine, each name once and
    nullable (a column a row's table does not have is null), then ``_table``, ``_id``, ``_server``,
    ``_data`` (see the constants) and the partition columns ``dt``, ``hour``.

    Raises:
        TypeError: two tables give one column name different types (the contract must keep them equal).
    """
    fields: dict[str, pa.Field] = {}
    for sch in (*(row_schema(k) for k in schema.KINDS), transforms.quarantine_arrow_schema()):
        for f in sch:
            if f.name in (schema.LAKE_COLUMN, "_pos", "_server"):
                continue
            fields.setdefault(f.name, f.with_nullable(True))
            if fields[f.name].type != f.type:
                raise TypeError(f"column {f.name!r} has two types across tables; the union schema needs one")
    helpers = [pa.field(TABLE_COLUMN, pa.string()), pa.field(ID_COLUMN, pa.string())]
    helpers += [pa.field(SERVER_COLUMN, pa.int64()), pa.field(DATA_COLUMN, pa.binary())]
    helpers += [pa.field("dt", pa.string()), pa.field("hour", pa.string())]
    return pa.schema([*fields.values(), *helpers])


def transform_arrow(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    """Run the transform over one Arrow batch of stream entries; the rows of every table in :func:`union_schema`.

    ``batch`` has the :data:`SOURCE_COLUMNS` (by position).  The valid rows are those of
    :func:`transform` (unique per id *within this batch*, unsorted) and carry the keys a runner needs
    to de-duplicate across batches with the rule of :func:`etl.transforms.prefer`; the quarantine
    rows follow (``dt``/``hour`` from the arrival time).  A null ``data`` is an empty entry, a null
    arrival time the epoch.  Never raises on bad input.
    """
    data = [b if b is not None else b"" for b in batch.column(0).to_pylist()]
    keys, arrived, sources = batch.column(1), batch.column(2), batch.column(3)

    def entry_at(i: int) -> Entry:
        at = arrived[i].as_py()
        at = transforms.utc(at) if isinstance(at, datetime) else _EPOCH
        return Entry(data[i], keys[i].as_py() or "", at, str(sources[i].as_py()))

    out, blobs = _unique_rows(data, entry_at)
    parts: list[pa.Table] = []
    for kind in schema.KINDS:
        table = out.tables[kind]
        if not table.num_rows:
            continue
        cols = {n: table[n] for n in table.column_names if n != "_pos"}
        cols[TABLE_COLUMN] = pa.repeat(pa.scalar(schema.TABLE[kind]), table.num_rows)
        cols[ID_COLUMN] = table[schema.ID_FIELD[kind]]
        cols[DATA_COLUMN] = pa.array(blobs, pa.binary()).take(table["_pos"])
        cols["dt"], cols["hour"] = _partition_columns(table["captured_at"])
        parts.append(_union_table(cols, table.num_rows))
    if out.quarantine:
        q = out.quarantine
        names = [n for n, _ in transforms.QUARANTINE_FIELDS]
        cols = {n: list(v) for n, v in zip(names, zip(*(r.values(_EPOCH) for r in q), strict=True), strict=True)}
        cols[TABLE_COLUMN] = [transforms.QUARANTINE_TABLE] * len(q)
        cols["dt"], cols["hour"] = (list(v) for v in zip(*(r.partition for r in q), strict=True))
        del cols[schema.LAKE_COLUMN]
        parts.append(_union_table(cols, len(q)))
    if not parts:
        return union_schema().empty_table()
    return pa.concat_tables(parts)


def _union_table(cols: dict, n: int) -> pa.Table:
    """A table of :func:`union_schema` from the columns one table has; the others null."""
    arrays = []
    for f in union_schema():
        col = cols.get(f.name)
        if col is None:
            arrays.append(pa.nulls(n, f.type))
        elif isinstance(col, list):
            arrays.append(pa.array(col, f.type))
        else:
            arrays.append(col.cast(f.type))
    return pa.Table.from_arrays(arrays, schema=union_schema())


def _partition_columns(captured: pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """``dt`` and ``hour`` columns of event times, through ``schema.partition_values`` per distinct hour."""
    hours = pc.floor_temporal(captured, unit="hour").cast(pa.int64())
    distinct = pc.unique(hours)
    values = [schema.partition_values(_EPOCH + timedelta(microseconds=h)) for h in distinct.to_pylist()]
    at = pc.index_in(hours, distinct)
    return (
        pa.array([dt for dt, _ in values], pa.string()).take(at),
        pa.array([hour for _, hour in values], pa.string()).take(at),
    )


# --------------------------------------------------------------------------------------------
# Validation: every rule of schema.from_json_dict and transforms.parse_record, as kernels


def _validate(pieces: list[tuple[pa.Array, pa.Table]]) -> tuple[dict[str, pa.Table], list[int]]:
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
    ahead = _us(transforms.FUTURE_TOLERANCE)
    behind = _us(transforms.MAX_LATENESS)
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


def _us(d: timedelta) -> int:
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


# --------------------------------------------------------------------------------------------
# Merge: per-record rows, duplicates, order, partitions


def _slow_table(kind: str, rows: list[Parsed], positions: list[int]) -> pa.Table:
    cols = transforms.lake_columns(kind, rows, _EPOCH)
    del cols[schema.LAKE_COLUMN]
    cols["_pos"] = positions
    cols["_server"] = [_us(getattr(p.record, SERVER_TIME[kind]) - _EPOCH) for p in rows]
    return pa.table(cols, schema=row_schema(kind))


def _dedup(kind: str, table: pa.Table, blobs: list[bytes]) -> tuple[pa.Table, int]:
    """Keep one row per id, as ``transforms.prefer`` would: earliest server time, then smallest bytes."""
    ids = table[schema.ID_FIELD[kind]]
    if table.num_rows == 0 or pc.count_distinct(ids).as_py() == table.num_rows:
        return table, 0
    counts = pc.value_counts(ids).flatten()
    repeated = counts[0].filter(pc.greater(counts[1], 1))
    dup_rows = pc.indices_nonzero(pc.is_in(ids, repeated)).to_pylist()
    best: dict[str, tuple[int, bytes, int]] = {}
    sub = table.take(dup_rows)
    for row, rid, server, p in zip(
        dup_rows,
        sub[schema.ID_FIELD[kind]].to_pylist(),
        sub["_server"].to_pylist(),
        sub["_pos"].to_pylist(),
        strict=True,
    ):
        key = (server, blobs[p], row)
        if rid not in best or key < best[rid]:
            best[rid] = key
    drop = set(dup_rows) - {k[2] for k in best.values()}
    keep = pa.array([i not in drop for i in range(table.num_rows)])
    return table.filter(keep), len(drop)


def _sort_and_partition(kind: str, table: pa.Table) -> tuple[pa.Table, list[tuple[str, str, int, int]]]:
    """Sort by (hour of ``captured_at``, id); drop helper columns; (dt, hour, offset, length) runs."""
    hours = pc.floor_temporal(table["captured_at"], unit="hour").cast(pa.int64())
    table = table.append_column("_hour", hours)
    table = table.sort_by([("_hour", "ascending"), (schema.ID_FIELD[kind], "ascending")])
    parts: list[tuple[str, str, int, int]] = []
    if table.num_rows:
        runs = pc.run_end_encode(table["_hour"].combine_chunks())
        start = 0
        for end, hour_us in zip(runs.run_ends.to_pylist(), runs.values.to_pylist(), strict=True):
            dt, hour = schema.partition_values(_EPOCH + timedelta(microseconds=hour_us))
            parts.append((dt, hour, start, end - start))
            start = end
    table = table.drop_columns(["_pos", "_server", "_hour"]).combine_chunks()
    return table, parts
