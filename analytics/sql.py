"""The analytics views: load the Athena (Trino) SQL files and run the same SQL on DuckDB over the local lake.

Every view is written once, in Trino SQL, in ``analytics/sql/views/<view>.sql`` (the file name is the view
name; the file holds the view's ``SELECT``).  Athena runs the files as they are (``infra.py`` creates the
views from :func:`load_views`, in dependency order).  Locally :func:`open_lake` gives a DuckDB connection
where the three lake tables are views over the Parquet files and every SQL view is transpiled with sqlglot.

Types follow Athena's table so the SQL means the same on both engines: timestamps are ``TIMESTAMP`` without
a zone holding UTC values (Athena reads Parquet UTC timestamps that way), ``dt`` is a ``VARCHAR``
(``YYYY-MM-DD``) and ``hour`` an ``INTEGER`` (see :mod:`analytics.ddl`).

Two Trino functions have no sqlglot translation to DuckDB and are rewritten here (see :func:`to_duckdb`):
``with_timezone(ts, zone)`` -> ``timezone(zone, ts)`` and ``at_timezone(tstz, zone)`` -> ``timezone(zone, tstz)``.
The second is exact only when the result is cast to ``TIMESTAMP`` (wall time) or passed to ``hour()``; the
view files always do so (``CAST(at_timezone(with_timezone(ts, 'UTC'), tz) AS TIMESTAMP)``).  One more rewrite
is for speed: ``to_unixtime(with_timezone(ts, 'UTC'))`` -> ``epoch(ts)``, the same instant without a per-row
time-zone lookup (DuckDB reads a plain ``TIMESTAMP`` as UTC; the double can differ in its last bit).

DuckDB inlines views, so a view read by several others (``reads_unique`` behind ``hourly_entries`` three times,
``hourly_entries`` behind ``daily_summary`` four times) would be recomputed at every reference.
:func:`materialize` computes such views once per connection, as ``TEMP`` tables built from the same transpiled
SQL that shadow the view of the same name; :func:`analytics.query.run_view` calls it for the views the
requested one needs.  Results are identical; the cached tables are a snapshot of the lake at that moment.

This module imports no AWS SDK; DuckDB is imported lazily (Athena deployments only read the SQL files).
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlglot
from sqlglot import exp

from stream.schema import KINDS, TABLE, athena_columns

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)

VIEWS_DIR = Path(__file__).parent / "sql" / "views"
"""Directory of the view files: ``<view name>.sql``, Trino SQL, one ``SELECT`` each."""

SOURCE_DIALECT = "trino"
"""Dialect the view files are written in (Athena engine version 3 is Trino)."""

LAKE_TABLES = tuple(TABLE[k] for k in KINDS)
"""The lake tables the views read: ``reads``, ``frames``, ``box_office``."""

PARTITION_TYPES = {"dt": "VARCHAR", "hour": "INTEGER"}
"""DuckDB types of the partition columns, matching the Athena table (``dt string``, ``hour int``)."""

_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMP",
    "binary": "BLOB",
    "array<struct<x:int,y:int>>": "STRUCT(x INTEGER, y INTEGER)[]",
}

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class AnalyticsError(Exception):
    """Base of the errors of the analytics package."""


class ViewDefinitionError(AnalyticsError):
    """A view file is unreadable, does not parse as Trino SQL, or the views depend on each other in a cycle."""


class NoLakeData(AnalyticsError):
    """The data directory holds no Parquet file of any lake table yet."""


class UnknownView(AnalyticsError):
    """The requested view has no SQL file."""


@dataclass(frozen=True)
class View:
    """One analytics view.

    ``sql`` is the Trino ``SELECT`` as written in the file; ``depends_on`` names the other views it reads
    (lake tables excluded); ``summary`` is the text after ``<name>:`` on the file's first comment line.
    """

    name: str
    sql: str
    depends_on: tuple[str, ...]
    summary: str

    @property
    def is_helper(self) -> bool:
        """True for the building-block views (de-duplication, passages) rather than analyst-facing ones."""
        return self.name.endswith("_unique") or self.name == "ticket_passages"

    def athena_ddl(self) -> str:
        """``CREATE OR REPLACE VIEW <name> AS <sql>`` for Athena (run in the lake's database)."""
        return f"CREATE OR REPLACE VIEW {self.name} AS\n{self.sql.strip()}"


def _summary(name: str, sql: str) -> str:
    for line in sql.splitlines():
        text = line.strip()
        if text.startswith("--"):
            text = text[2:].strip()
            return text[len(name) + 1 :].strip() if text.startswith(f"{name}:") else text
    return ""


def _referenced_tables(name: str, sql: str) -> set[str]:
    try:
        tree = sqlglot.parse_one(sql, read=SOURCE_DIALECT)
    except sqlglot.errors.ParseError as e:
        raise ViewDefinitionError(f"view {name!r} does not parse as {SOURCE_DIALECT} SQL: {e}") from None
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    return {t.name for t in tree.find_all(exp.Table) if t.name and t.name not in ctes}


def load_views(views_dir: Path = VIEWS_DIR) -> list[View]:
    """All views of ``views_dir``, ordered so that every view comes after the views it reads.

    The order is deterministic (alphabetical among views whose dependencies are met), so the Athena views can
    be created one after the other in this order.  Parsed once per set of file contents (cached).

    Raises:
        ViewDefinitionError: a file does not parse, reads a table that is neither a lake table nor another
            view, or the views form a dependency cycle.
    """
    files = sorted(views_dir.glob("*.sql"))
    if not files:
        raise ViewDefinitionError(f"no view files (*.sql) in {views_dir}")
    for f in files:
        if not _NAME.match(f.stem):
            raise ViewDefinitionError(f"view file {f.name}: name must be lower_snake_case to be a view name")
    return list(_load_views(tuple((f.stem, f.read_text(encoding="utf-8")) for f in files), str(views_dir)))


@functools.lru_cache(maxsize=8)
def _load_views(sources: tuple[tuple[str, str], ...], views_dir: str) -> tuple[View, ...]:
    raw: dict[str, tuple[str, set[str]]] = {}
    for name, sql in sources:
        raw[name] = (sql, _referenced_tables(name, sql))
    for name, (_, refs) in raw.items():
        unknown = refs - set(raw) - set(LAKE_TABLES)
        if unknown:
            raise ViewDefinitionError(
                f"view {name!r} reads {', '.join(sorted(unknown))}: neither a lake table "
                f"({', '.join(LAKE_TABLES)}) nor a view file in {views_dir}"
            )
    ordered: list[View] = []
    done: set[str] = set()
    pending = dict(raw)
    while pending:
        ready = sorted(n for n, (_, refs) in pending.items() if (refs - set(LAKE_TABLES)) <= done)
        if not ready:
            raise ViewDefinitionError(f"views depend on each other in a cycle: {', '.join(sorted(pending))}")
        for name in ready:
            sql, refs = pending.pop(name)
            deps = tuple(sorted(refs - set(LAKE_TABLES)))
            ordered.append(View(name, sql, deps, _summary(name, sql)))
            done.add(name)
    return tuple(ordered)


def _is_utc_instant(node: exp.Expression) -> bool:
    """True for Trino's ``with_timezone(<expr>, 'UTC')``."""
    return (
        isinstance(node, exp.Anonymous)
        and node.name.lower() == "with_timezone"
        and len(node.expressions) == 2
        and isinstance(node.expressions[1], exp.Literal)
        and node.expressions[1].is_string
        and node.expressions[1].this.upper() == "UTC"
    )


def _rewrite_for_duckdb(tree: exp.Expression) -> exp.Expression:
    # to_unixtime(with_timezone(ts, 'UTC')) is the epoch of a UTC wall time: exact without a time-zone lookup
    for node in list(tree.find_all(exp.TimeToUnix)):
        if _is_utc_instant(node.this):
            node.replace(exp.Anonymous(this="epoch", expressions=[node.this.expressions[0]]))
    # innermost calls first, so a rewritten call's arguments are already rewritten
    for node in reversed(list(tree.find_all(exp.Anonymous, bfs=False))):
        if node.name.lower() in ("with_timezone", "at_timezone"):
            ts, zone = node.expressions
            node.replace(exp.Anonymous(this="timezone", expressions=[zone, ts]))
    return tree


@functools.lru_cache(maxsize=64)
def to_duckdb(sql: str) -> str:
    """Transpile one Trino statement to DuckDB SQL (sqlglot, plus the time-zone rewrites of the module doc).

    Raises:
        ViewDefinitionError: the SQL does not parse as Trino SQL.
    """
    try:
        tree = sqlglot.parse_one(sql, read=SOURCE_DIALECT)
    except sqlglot.errors.ParseError as e:
        raise ViewDefinitionError(f"not valid {SOURCE_DIALECT} SQL: {e}") from None
    return _rewrite_for_duckdb(tree).sql(dialect="duckdb")


def _table_sql(data_dir: Path, kind: str) -> tuple[str, bool]:
    """DuckDB SELECT giving lake table ``kind`` with Athena's types; second item: whether files exist."""
    import pyarrow as pa

    from stream.schema import arrow_schema

    table = TABLE[kind]
    files_exist = any((data_dir / table).glob("dt=*/hour=*/*.parquet"))
    schema = arrow_schema(kind)
    if not files_exist:
        cols = [f"CAST(NULL AS {_DUCKDB_TYPES[t]}) AS {n}" for n, t in athena_columns(kind)]
        cols += [f"CAST(NULL AS {t}) AS {n}" for n, t in PARTITION_TYPES.items()]
        return f"SELECT {', '.join(cols)} WHERE false", False
    cols = []
    for field in schema:
        if pa.types.is_timestamp(field.type) and field.type.tz is not None:
            cols.append(f"timezone('UTC', {field.name}) AS {field.name}")  # TIMESTAMPTZ -> UTC wall time
        else:
            cols.append(field.name)
    cols += list(PARTITION_TYPES)
    glob = (data_dir / table).as_posix().replace("'", "''") + "/dt=*/hour=*/*.parquet"
    hive_types = ", ".join(f"'{n}': '{t}'" for n, t in PARTITION_TYPES.items())
    source = f"read_parquet('{glob}', hive_partitioning = true, hive_types = {{{hive_types}}}, union_by_name = true)"
    return f"SELECT {', '.join(cols)} FROM {source}", True


def open_lake(data_dir: Path | str, views: Sequence[View] | None = None) -> duckdb.DuckDBPyConnection:
    """In-memory DuckDB connection with the lake tables and every view, over ``data_dir``'s Parquet files.

    A table without files yet (e.g. no box-office outcome so far) is an empty table of the right columns.

    Raises:
        NoLakeData: ``data_dir`` holds no Parquet file of any lake table (the pipeline has not written yet).
        ViewDefinitionError: a view file is invalid or DuckDB rejects its transpiled SQL.
    """
    import duckdb

    data_dir = Path(data_dir)
    views = load_views() if views is None else views
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET parquet_metadata_cache = true")  # views scan the same files several times
    found = []
    for kind in KINDS:
        sql, exists = _table_sql(data_dir, kind)
        found.append(exists)
        con.execute(f"CREATE VIEW {TABLE[kind]} AS {sql}")
    if not any(found):
        con.close()
        raise NoLakeData(
            f"no Parquet data under {data_dir} (expected {data_dir}/<reads|frames|box_office>/dt=YYYY-MM-DD/"
            "hour=HH/*.parquet): run the local pipeline first so its ETL writes there, or pass --data DIR"
        )
    for view in views:
        try:
            con.execute(f"CREATE VIEW {view.name} AS {to_duckdb(view.sql)}")
        except duckdb.Error as e:
            con.close()
            raise ViewDefinitionError(f"DuckDB rejected view {view.name!r}: {e}") from e
    log.debug("opened lake %s with %d views", data_dir, len(views))
    return con


def shared_views(views: Iterable[View] | None = None) -> set[str]:
    """Names of the views that another view reads: the ones :func:`materialize` computes once per connection."""
    views = list(load_views() if views is None else views)
    return {d for v in views for d in v.depends_on}


def _needed(names: Iterable[str], views: Sequence[View]) -> set[str]:
    """``names`` and every view they read, directly or through other views."""
    by_name = {v.name: v for v in views}
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in by_name:
            raise UnknownView(f"no view named {name!r}; views: {', '.join(by_name)}")
        seen.add(name)
        todo.extend(by_name[name].depends_on)
    return seen


def materialized(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Names of the ``TEMP`` tables of ``con``: the views :func:`materialize` has already computed there."""
    rows = con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()
    return {r[0] for r in rows}


def materialize(
    con: duckdb.DuckDBPyConnection,
    names: Iterable[str] | None = None,
    views: Sequence[View] | None = None,
) -> list[str]:
    """Compute, once per connection, the shared views that ``names`` read (all shared views when None).

    A shared view (one that another view reads, see :func:`shared_views`) becomes a ``TEMP`` table of the
    same name, created from the view's own transpiled SQL, in dependency order; DuckDB resolves ``temp``
    before ``main``, so the views that read it (and any query) use the table from then on.  A requested view
    that is itself shared (``hourly_entries``, read by ``hourly_peak`` and ``daily_summary``) is materialized
    too.  Already materialized views are skipped.  The tables are a snapshot: files the ETL writes later are
    not seen on this connection (open a new one).  Returns the names materialized by this call.

    Raises:
        UnknownView: a name is not a view.
        ViewDefinitionError: DuckDB rejected a view's SQL.
    """
    import duckdb

    views = load_views() if views is None else views
    shared = shared_views(views)
    wanted = shared if names is None else _needed(names, views) & shared
    done = materialized(con)
    built = []
    for view in views:  # dependency order
        if view.name not in wanted or view.name in done:
            continue
        started = time.perf_counter()
        # row order of a cached table is irrelevant (the views promise none); not keeping it saves memory
        con.execute("SET preserve_insertion_order = false")
        try:
            con.execute(f"CREATE TEMP TABLE {view.name} AS {to_duckdb(view.sql)}")
        except duckdb.Error as e:
            raise ViewDefinitionError(f"DuckDB could not materialize view {view.name!r}: {e}") from e
        finally:
            con.execute("RESET preserve_insertion_order")
        built.append(view.name)
        log.debug("materialized %s in %.2f s", view.name, time.perf_counter() - started)
    return built


ANALYST_VIEWS = (
    "hourly_entries",
    "hourly_peak",
    "daily_summary",
    "ticket_anomalies",
    "camera_health",
    "pipeline_latency",
)
"""The analyst-facing views, in reading order (help texts, docs); helper views are building blocks."""


def view_names(views: Iterable[View] | None = None, *, helpers: bool = False) -> list[str]:
    """Names of the analyst-facing views in reading order, then (when ``helpers``) the building-block views."""
    views = list(load_views() if views is None else views)
    rank = {n: i for i, n in enumerate(ANALYST_VIEWS)}
    facing = sorted((v.name for v in views if not v.is_helper), key=lambda n: (rank.get(n, len(rank)), n))
    return facing + ([v.name for v in views if v.is_helper] if helpers else [])


def get_view(name: str, views: Iterable[View] | None = None) -> View:
    """The view called ``name``.

    Raises:
        UnknownView: there is no such view file.
    """
    views = list(load_views() if views is None else views)
    for v in views:
        if v.name == name:
            return v
    raise UnknownView(f"no view named {name!r}; views: {', '.join(v.name for v in views)}")
