"""``monuv-qr cameras add|list|revoke``: manage the camera registry file (local mode and Pulumi stack)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ingest.cameras import Registry, RegistryError

DEFAULT_REGISTRY = Path("data/cameras.json")


def add_parser(sub: argparse._SubParsersAction, name: str, help_: str) -> None:
    p = sub.add_parser(
        name,
        help=help_,
        description="Register cameras and issue their API keys. A key is printed once, when the camera is "
        "added; only its SHA-256 is stored. The same registry file feeds `monuv-qr serve` and the Pulumi "
        "stack (config key `cameras`).",
    )
    p.add_argument("--cameras", type=Path, default=DEFAULT_REGISTRY, help="registry file (default: %(default)s)")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    a = verbs.add_parser("add", help="register a camera and print its new API key once")
    a.add_argument("camera_id", metavar="CAMERA_ID")
    a.add_argument("--cinema", required=True, help="cinema id, e.g. REX")
    a.add_argument("--room", required=True, help="room id within the cinema, e.g. 3")
    a.add_argument("--tz", default="UTC", help="IANA time zone of the cinema (default: %(default)s)")
    a.add_argument("--cameras", type=Path, default=argparse.SUPPRESS, help="registry file")
    a.set_defaults(func=_add)

    ls = verbs.add_parser("list", help="list cameras (never keys)")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--cameras", type=Path, default=argparse.SUPPRESS, help="registry file")
    ls.set_defaults(func=_list)

    r = verbs.add_parser("revoke", help="revoke a camera's key (the camera stays listed as revoked)")
    r.add_argument("camera_id", metavar="CAMERA_ID")
    r.add_argument("--cameras", type=Path, default=argparse.SUPPRESS, help="registry file")
    r.set_defaults(func=_revoke)


def _fail(message: str) -> int:
    print(f"monuv-qr cameras: {message}", file=sys.stderr)
    return 2


def _add(args: argparse.Namespace) -> int:
    try:
        reg = Registry.load(args.cameras)
        cam, key = reg.add(args.camera_id, args.cinema, args.room, args.tz)
        reg.save(args.cameras)
    except RegistryError as e:
        return _fail(str(e))
    print(f"camera {cam.camera_id} registered (cinema {cam.cinema_id}, room {cam.room_id}, {cam.tz})")
    print(f"key id:  {cam.key_id}")
    print(f"API key: {key}")
    print("Store the key in the camera now: it is not shown again (only its hash is kept).", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    try:
        reg = Registry.load(args.cameras)
    except RegistryError as e:
        return _fail(str(e))
    rows = [
        {
            "camera_id": c.camera_id,
            "cinema_id": c.cinema_id,
            "room_id": c.room_id,
            "tz": c.tz,
            "key_id": c.key_id,
            "status": "revoked" if c.revoked else "active",
            "created_at": c.created_at,
        }
        for c in reg
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no cameras in {args.cameras}; add one with: monuv-qr cameras add CAMERA_ID --cinema C --room R")
        return 0
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.upper().ljust(widths[c]) for c in cols).rstrip())
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols).rstrip())
    return 0


def _revoke(args: argparse.Namespace) -> int:
    try:
        reg = Registry.load(args.cameras)
        cam = reg.revoke(args.camera_id)
        reg.save(args.cameras)
    except RegistryError as e:
        return _fail(str(e))
    print(f"camera {cam.camera_id}: key {cam.key_id} revoked")
    return 0
