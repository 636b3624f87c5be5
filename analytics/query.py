"""Run one analytics view on the local lake with day/cinema filters, and format the rows (table, CSV, JSON).

Every analyst-facing view has a ``cinema_id`` and a ``day`` column (the cinema's LOCAL date), so the same
filters apply to all of them.  Rows come back sorted by cinema, day, room, camera, hour, time.  The shared views
the requested one reads are computed once per connection first (:func:`analytics.sql.materialize`), so
running several views on one connection (the report) pays for de-duplication once.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from analytics.sql import UnknownView, get_view, materialize

if TYPE_CHECKING:
    import duckdb

FORMATS = ("table", "csv", "json")

_SORT_COLUMNS = ("cinema_id", "day", "room_id", "camera_id", "hour", "local_at", "anomaly")


@dataclass(frozen=True)
class QueryResult:
    """Rows of a view: ``columns`` names, ``rows`` tuples of Python values (date, datetime, int, float, str)."""

    view: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def as_dicts(self) -> list[dict[str, Any]]:
        """Rows as column -> value dicts."""
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]


def run_view(
    con: duckdb.DuckDBPyConnection,
    view: str,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    cinema: str | None = None,
    cache: bool = True,
) -> QueryResult:
    """Rows of ``view`` for local days ``date_from``..``date_to`` (inclusive, each optional) and one cinema.

    With ``cache`` (default) the shared views ``view`` reads are first materialized on ``con`` (a snapshot of
    the lake, reused by later calls); without it every view is computed from the Parquet files as written.

    Raises:
        UnknownView: ``view`` is not one of the views of ``analytics/sql/views``.
        ValueError: ``date_from`` is after ``date_to``, or the view lacks the column a filter needs.
    """
    get_view(view)  # validates the name against the view files (no SQL injection through the name)
    if date_from and date_to and date_from > date_to:
        raise ValueError(f"--from {date_from} is after --to {date_to}")
    if cache:
        materialize(con, [view])
    columns = [r[0] for r in con.execute(f"DESCRIBE {view}").fetchall()]
    where, params = [], []
    for wanted, column, sql in (
        (date_from, "day", "day >= ?"),
        (date_to, "day", "day <= ?"),
        (cinema, "cinema_id", "cinema_id = ?"),
    ):
        if wanted is None:
            continue
        if column not in columns:
            raise ValueError(f"view {view!r} has no {column!r} column to filter on")
        where.append(sql)
        params.append(wanted)
    order = [f"{c} NULLS FIRST" for c in _SORT_COLUMNS if c in columns]
    sql = f"SELECT * FROM {view}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if order:
        sql += " ORDER BY " + ", ".join(order)
    rows = con.execute(sql, params).fetchall()
    return QueryResult(view, tuple(columns), rows)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}".rstrip("0").rstrip(".")
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def format_table(result: QueryResult) -> str:
    """Aligned plain-text table (numbers right-aligned), with a row count line."""
    cells = [[_text(v) for v in row] for row in result.rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(result.columns)]
    numeric = [
        all(
            isinstance(row[i], int | float) and not isinstance(row[i], bool)
            for row in result.rows
            if row[i] is not None
        )
        for i in range(len(result.columns))
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    out = [line(result.columns), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    out.append(f"({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})")
    return "\n".join(out) + "\n"


def format_csv(result: QueryResult) -> str:
    """CSV with a header row; NULL is an empty field, booleans true/false, timestamps ISO-8601 local wall time."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(result.columns)
    for row in result.rows:
        w.writerow(["" if v is None else _text(v) if isinstance(v, bool) else _json_value(v) for v in row])
    return buf.getvalue()


def format_json(result: QueryResult) -> str:
    """JSON array of row objects; dates and timestamps as ISO-8601 strings, NULL as null."""
    rows = [{k: _json_value(v) for k, v in d.items()} for d in result.as_dicts()]
    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"


def format_result(result: QueryResult, fmt: str) -> str:
    """Format ``result`` as ``table``, ``csv`` or ``json``.

    Raises:
        ValueError: unknown format.
    """
    formatters = {"table": format_table, "csv": format_csv, "json": format_json}
    if fmt not in formatters:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return formatters[fmt](result)


__all__ = ["FORMATS", "QueryResult", "UnknownView", "format_result", "run_view"]
