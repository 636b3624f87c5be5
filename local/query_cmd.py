"""``monuv-qr query VIEW [--data DIR] [--from DATE] [--to DATE] [--cinema ID] [--format table|csv|json]``."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from analytics.query import FORMATS, format_result, run_view
from analytics.sql import AnalyticsError, load_views, open_lake, view_names

DEFAULT_DATA = Path("data")


def local_date(text: str) -> date:
    """argparse type: a local calendar day ``YYYY-MM-DD``."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date {text!r}: use YYYY-MM-DD, e.g. 2026-11-30") from None


def add_filter_arguments(p: argparse.ArgumentParser) -> None:
    """--data, --from, --to, --cinema (shared with ``monuv-qr report``)."""
    p.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, metavar="DIR", help="local lake directory (default: ./data)"
    )
    p.add_argument("--from", dest="date_from", type=local_date, metavar="DATE", help="first local day, YYYY-MM-DD")
    p.add_argument("--to", dest="date_to", type=local_date, metavar="DATE", help="last local day (inclusive)")
    p.add_argument("--cinema", metavar="ID", help="only this cinema_id")


def add_parser(sub: argparse._SubParsersAction, name: str, help_: str) -> None:
    views = load_views()
    summaries = {v.name: v.summary for v in views}
    helpers = [v.name for v in views if v.is_helper]
    listing = "\n".join(f"  {n:<18} {summaries[n]}" for n in view_names(views))
    p = sub.add_parser(
        name,
        help=help_,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run an analytics view (the same SQL as the Athena views) with DuckDB over the local lake.\n"
        "Days are the cinema's LOCAL days; times are local wall time.\n\nviews:\n" + listing,
        epilog=f"building-block views (also queryable): {', '.join(helpers)}\n"
        "example: monuv-qr query hourly_peak --from 2026-11-30 --to 2026-11-30 --cinema cine-01",
    )
    p.add_argument("view", metavar="VIEW", choices=[v.name for v in views], help="view name (see below)")
    add_filter_arguments(p)
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        con = open_lake(args.data)
        try:
            result = run_view(con, args.view, date_from=args.date_from, date_to=args.date_to, cinema=args.cinema)
        finally:
            con.close()
    except (AnalyticsError, ValueError) as e:
        print(f"monuv-qr query: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(format_result(result, args.format))
    return 0
