"""``monuv-qr decode FILE... [--json]``: read the QR codes in image files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ingest.decode import decode_image
from ingest.errors import BadImage


def add_parser(sub: argparse._SubParsersAction, name: str, help_: str) -> None:
    p = sub.add_parser(
        name,
        help=help_,
        description="Decode the QR codes in JPEG/PNG files, one result per file. "
        "Exits 1 if any file is unreadable (the others are still decoded).",
    )
    p.add_argument("files", nargs="+", metavar="FILE", type=Path, help="JPEG or PNG image")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            result = decode_image(path.read_bytes())
        except OSError as e:
            failed += 1
            _report_error(args, path, "unreadable_file", f"cannot read file: {e.strerror or e}")
            continue
        except BadImage as e:
            failed += 1
            _report_error(args, path, e.code, e.reason)
            continue
        codes = [{"text": c.text, "decoder": c.decoder, "corners": c.corners} for c in result.codes]
        if args.json:
            print(json.dumps({"file": str(path), "ms": round(result.decode_ms, 2), "codes": codes}))
        else:
            print(f"{path}: {len(codes)} code(s) in {result.decode_ms:.1f} ms")
            for c in result.codes:
                print(f"  [{c.decoder}] {c.text}")
    return 1 if failed else 0


def _report_error(args: argparse.Namespace, path: Path, code: str, reason: str) -> None:
    if args.json:
        print(json.dumps({"file": str(path), "error": code, "reason": reason}))
    print(f"monuv-qr decode: {path}: {reason}", file=sys.stderr)
