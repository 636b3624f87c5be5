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

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

import pyarrow as pa
import pyarrow.compute as pc
from aws_kinesis_agg import MAGIC

from etl import json_batch, transforms
from etl.columnar_checks import row_schema, us, validate
from etl.transforms import SERVER_TIME, Entry, Parsed, Quarantined
from stream import schema
from stream.aggregate import AggregateError, deaggregate

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
    valid, rejected = validate(fast)
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
# Merge: per-record rows, duplicates, order, partitions


def _slow_table(kind: str, rows: list[Parsed], positions: list[int]) -> pa.Table:
    cols = transforms.lake_columns(kind, rows, _EPOCH)
    del cols[schema.LAKE_COLUMN]
    cols["_pos"] = positions
    cols["_server"] = [us(getattr(p.record, SERVER_TIME[kind]) - _EPOCH) for p in rows]
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
