"""``monuv-qr``: the command line of the product (decode, serve, demo, cameras, query, report).

Each subcommand lives in its own module exposing ``add_parser(subparsers)``; the module is imported
only when its command runs, so ``monuv-qr decode`` never loads DuckDB or the HTTP server.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, one-line help)
    "decode": ("local.decode_cmd", "decode QR codes in image files"),
    "query": ("local.query_cmd", "run an analytics view over the local lake (table, CSV or JSON)"),
    "report": ("local.report_cmd", "write the HTML peak report (entries per hour, peaks per room)"),
    "cameras": ("local.cameras_cmd", "register cameras, issue and revoke their API keys"),
    "demo": ("local.demo", "simulate an evening at three cinemas end to end and check it against ground truth"),
    "serve": ("local.serve_cmd", "run the local pipeline: camera API, stream, ETL, box-office forwarder"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monuv-qr",
        description="Cinema ticket QR tracking: decode camera frames, run the local pipeline, query the views.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_) in COMMANDS.items():
        if name == wanted:
            importlib.import_module(module).add_parser(sub, name, help_)
        else:
            sub.add_parser(name, help=help_)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
