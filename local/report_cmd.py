"""``monuv-qr report [--data DIR] --out FILE.html [--from DATE] [--to DATE] [--cinema ID]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analytics.sql import AnalyticsError, open_lake
from local.query_cmd import add_filter_arguments


def add_parser(sub: argparse._SubParsersAction, name: str, help_: str) -> None:
    p = sub.add_parser(
        name,
        help=help_,
        description="Write a self-contained HTML page: per cinema, a chart of the entries per local hour of each "
        "room with the peak hour highlighted, the day summary and the peak table. Open it in any browser; "
        "it needs no network.",
        epilog="example: monuv-qr report --data data --out peaks.html --from 2026-11-01 --to 2026-11-30",
    )
    p.add_argument("--out", type=Path, required=True, metavar="FILE.html", help="HTML file to write")
    add_filter_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analytics.report import write_report

    try:
        con = open_lake(args.data)
        try:
            write_report(con, args.out, date_from=args.date_from, date_to=args.date_to, cinema=args.cinema)
        finally:
            con.close()
    except (AnalyticsError, ValueError, OSError) as e:
        print(f"monuv-qr report: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
