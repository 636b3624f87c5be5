"""``monuv-qr serve``: run the whole pipeline on this machine (camera API, stream, ETL, forwarder)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from local.pipeline import LocalPipeline, ServeOptions
from stream.sqlite import DataDirLocked, StoreError


def add_parser(sub: argparse._SubParsersAction, name: str, help_: str) -> None:
    p = sub.add_parser(
        name,
        help=help_,
        description="Run the local pipeline: the camera API (POST /upload, GET /health) in front of the same "
        "Lambda handler, a durable SQLite stream and queue, the ETL writing Parquet under --data, and the "
        "box-office forwarder. Stop with Ctrl-C (in-flight frames are finished and written first).",
    )
    p.add_argument("--data", type=Path, default=Path("data"), help="data directory (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8080, help="port (default: %(default)s; 0 = any free port)")
    p.add_argument("--cameras", type=Path, default=None, help="camera registry file (default: DATA/cameras.json)")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes; each accepts connections and decodes one frame at a time "
        "(default: CPU count = %(default)s; see docs/bench-local.md)",
    )
    p.add_argument(
        "--box-office-url",
        default=os.environ.get("BOX_OFFICE_URL", ""),
        help="box-office endpoint; empty: outcomes are recorded as not_configured",
    )
    p.add_argument(
        "--stream-retention",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="every SECONDS, delete stream entries already written to the lake (default: %(default)s; "
        "0 keeps the whole stream)",
    )
    p.add_argument("--quiet", action="store_true", help="no status line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.workers < 1:
        print("monuv-qr serve: --workers must be at least 1", file=sys.stderr)
        return 2
    opts = ServeOptions(
        data=args.data,
        host=args.host,
        port=args.port,
        cameras=args.cameras,
        workers=args.workers,
        box_office_url=args.box_office_url,
        box_office_token=os.environ.get("BOX_OFFICE_TOKEN", ""),
        stream_retention_s=max(0.0, args.stream_retention),
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        pipeline = LocalPipeline(opts).start()
    except DataDirLocked as e:
        print(f"monuv-qr serve: {e}", file=sys.stderr)
        return 3
    except (StoreError, OSError) as e:
        print(f"monuv-qr serve: cannot start: {e}", file=sys.stderr)
        return 1
    print(
        f"monuv-qr serving on {pipeline.url}  (data: {opts.data}, cameras: {opts.registry_path}, "
        f"workers: {opts.workers})",
        flush=True,
    )
    if not len(pipeline.registry):
        print(
            "no cameras registered yet: add one with `monuv-qr cameras add CAMERA_ID --cinema C --room R "
            f"--cameras {opts.registry_path}`",
            flush=True,
        )
    tty = sys.stderr.isatty()
    try:
        while not stop.wait(1.0 if tty else 10.0):
            if not args.quiet:
                line = pipeline.status_line()
                print(f"\r{line}\033[K" if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
    finally:
        print("\nstopping: finishing in-flight frames and writing the lake...", file=sys.stderr, flush=True)
        pipeline.stop()
        print("stopped cleanly", file=sys.stderr, flush=True)
    return 0
