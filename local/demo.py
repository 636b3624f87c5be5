"""``monuv-qr demo``: an evening at three cinemas through the whole local pipeline, checked against ground truth.

1. registers the cinemas' cameras (one API key each) and starts a reference box office;
2. starts the local pipeline (``local.pipeline``) on a free loopback port;
3. renders the simulated frames (``local.simulate``) and POSTs them over HTTP, mixing the raw, JSON
   and batch request forms, with a progress bar;
4. waits until every read is in Parquet and every ticket has the box office's answer;
5. queries the views with DuckDB, prints the hourly peaks, writes the HTML report, and exits 0 only
   if what the views say equals what was simulated.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import queue
import secrets
import shutil
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from ingest import settings as env_names
from ingest.cameras import Registry
from local.boxoffice_ref import BoxOfficeServer
from local.frames import background, render_on
from local.pipeline import LocalPipeline, ServeOptions
from local.progress import Progress
from local.simulate import Scenario, SimFrame, build
from stream.schema import format_ts

FRAME_SIZE = (960, 540)
SENDERS = 4
BATCH = 5


def add_parser(sub: argparse._SubParsersAction, name: str, help_: str) -> None:
    p = sub.add_parser(
        name,
        help=help_,
        description="Simulate an evening at three cinemas (five cameras, three sessions each) through the "
        "whole local pipeline, then print the hourly peaks, write the HTML report, and check every number "
        "against the simulation's ground truth (exit 0 only if they all match).",
    )
    p.add_argument(
        "--data", type=Path, default=Path("demo-data"), help="data directory, emptied first (default: %(default)s)"
    )
    p.add_argument("--tickets", type=int, default=20, help="tickets per session and room (default: %(default)s)")
    p.add_argument("--seed", type=int, default=7, help="scenario seed (default: %(default)s)")
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="server worker processes (default: CPU count)"
    )
    p.add_argument("--report", type=Path, default=None, help="HTML report path (default: DATA/report.html)")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------- sending


class Sender:
    """Renders frames and posts them to the camera API from a few threads (keep-alive connections)."""

    def __init__(self, url: str, keys: dict[str, str], progress: Progress) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.addr = (host, int(port))
        self.keys = keys
        self.progress = progress
        self.backgrounds = {cam: background(*FRAME_SIZE, seed=i) for i, cam in enumerate(sorted(keys))}
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self._lock = threading.Lock()

    def _image(self, f: SimFrame) -> bytes:
        return render_on(self.backgrounds[f.camera_id], list(f.payloads), f.seed)

    def _request(self, conn: http.client.HTTPConnection, camera: str, frames: list[SimFrame], form: str) -> None:
        headers = {"x-api-key": self.keys[camera]}
        if form == "raw":
            (f,) = frames
            body = self._image(f)
            headers |= {"Content-Type": "image/jpeg", "X-Captured-At": format_ts(f.captured_at)}
        elif form == "json":
            (f,) = frames
            doc = {
                "camera_id": camera,
                "captured_at": format_ts(f.captured_at),
                "image_base64": base64.b64encode(self._image(f)).decode(),
            }
            body, headers["Content-Type"] = json.dumps(doc).encode(), "application/json"
        else:
            doc = {
                "camera_id": camera,
                "frames": [
                    {"captured_at": format_ts(f.captured_at), "image_base64": base64.b64encode(self._image(f)).decode()}
                    for f in frames
                ],
            }
            body, headers["Content-Type"] = json.dumps(doc).encode(), "application/json"
        for attempt in range(5):  # a camera retries 429/503 (ids are deterministic, retries are harmless)
            conn.request("POST", "/upload", body=body, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            if resp.status not in (429, 503):
                break
            time.sleep(0.2 * (attempt + 1))
        with self._lock:
            self.statuses[resp.status] += 1
            if resp.status != 200:
                self.failures.append(f"{camera} {form}: HTTP {resp.status} {payload[:200]!r}")
        self.progress.advance(len(frames))

    def send_all(self, jobs: list[tuple[str, list[SimFrame], str]]) -> None:
        work: queue.Queue = queue.Queue()
        for job in jobs:
            work.put(job)

        def worker() -> None:
            conn = http.client.HTTPConnection(*self.addr, timeout=60)
            while True:
                try:
                    camera, frames, form = work.get_nowait()
                except queue.Empty:
                    break
                try:
                    self._request(conn, camera, frames, form)
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    conn = http.client.HTTPConnection(*self.addr, timeout=60)
                    with self._lock:
                        self.failures.append(f"{camera}: {e}")
            conn.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(SENDERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def plan_requests(sc: Scenario) -> list[tuple[str, list[SimFrame], str]]:
    """Group the frames into requests: camera i uses the raw, JSON or batch form by turns."""
    forms = {cam: ("raw", "json", "batch")[i % 3] for i, (cam, *_rest) in enumerate(sc.cameras)}
    jobs: list[tuple[str, list[SimFrame], str]] = []
    pending: dict[str, list[SimFrame]] = {}
    for f in sc.frames:
        if forms[f.camera_id] != "batch":
            jobs.append((f.camera_id, [f], forms[f.camera_id]))
            continue
        pending.setdefault(f.camera_id, []).append(f)
        if len(pending[f.camera_id]) == BATCH:
            jobs.append((f.camera_id, pending.pop(f.camera_id), "batch"))
    jobs.extend((cam, frames, "batch") for cam, frames in pending.items())
    return jobs


# ------------------------------------------------------------------------------------------- checking


def wait_until_settled(pipeline: LocalPipeline, timeout_s: float = 120.0) -> bool:
    """Wait until the queue is delivered and the lake holds everything on the stream (stable twice)."""
    deadline = time.monotonic() + timeout_s
    calm = 0
    while time.monotonic() < deadline:
        h = pipeline.health()
        q = h["queue"]
        etl = h["etl"]
        settled = q.get("ready", 0) + q.get("inflight", 0) == 0 and etl.get("lag_records", 1) == 0
        calm = calm + 1 if settled else 0
        if calm >= 3:
            return True
        time.sleep(0.5)
    return False


def compare(sc: Scenario, con, sent_frames: int) -> tuple[list[str], list[tuple[str, object, object]]]:
    """Query the views and compare with the ground truth; returns printable peak lines and mismatches."""
    mismatches: list[tuple[str, object, object]] = []

    def check(what: str, got: object, want: object) -> None:
        if got != want:
            mismatches.append((what, got, want))

    peaks = {
        (c, str(d)): (h, n)
        for c, d, h, n in con.execute(
            "SELECT cinema_id, day, peak_hour, peak_entries FROM hourly_peak WHERE room_id IS NULL AND day_entries > 0"
        ).fetchall()
    }
    lines = []
    for (cinema, day), (hour, n) in sorted(sc.peaks().items()):
        got = peaks.get((cinema, day))
        ok = got == (hour, n)
        lines.append(
            f"  {cinema:<8} {day}  peak {hour:02d}:00-{hour:02d}:59 local  {n:>3} entries   "
            f"{'✓' if ok else f'✗ views say {got}'}"
        )
        check(f"peak {cinema} {day}", got, (hour, n))
    check("cinema-days with entries", len(peaks), len(sc.peaks()))

    rows = con.execute(
        "SELECT cinema_id, room_id, CAST(day AS VARCHAR), hour, entries FROM hourly_entries WHERE entries > 0"
    ).fetchall()
    check("entries per room and hour", {(c, r, d, h): n for c, r, d, h, n in rows}, dict(sc.room_entries))
    check("frames in the lake", con.execute("SELECT count(*) FROM frames_unique").fetchone()[0], sent_frames)
    check(
        "reads that are not tickets",
        con.execute("SELECT count(*) FROM reads_unique WHERE NOT ticket_valid").fetchone()[0],
        sc.invalid_reads,
    )
    got_bo = dict(con.execute("SELECT outcome, count(*) FROM box_office_unique GROUP BY outcome").fetchall())
    check("box-office answers", got_bo, dict(sc.box_office))
    return lines, mismatches


# ------------------------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> int:
    data: Path = args.data
    if data.exists():
        if any(data.iterdir()) and not (data / ".monuv-demo").exists():
            print(f"monuv-qr demo: {data} exists and was not made by the demo; choose another --data", file=sys.stderr)
            return 2
        shutil.rmtree(data)
    data.mkdir(parents=True)
    (data / ".monuv-demo").touch()
    evening = (datetime.now(ZoneInfo("America/Sao_Paulo")) - timedelta(days=1)).date()
    sc = build(evening, seed=args.seed, tickets_per_session=args.tickets)

    registry = Registry()
    keys = {}
    for cam, cinema, room, tz in sc.cameras:
        keys[cam] = registry.add(cam, cinema, room, tz)[1]
    registry.save(data / "cameras.json")
    token = secrets.token_urlsafe(16)
    box = BoxOfficeServer(sold=sc.sold, token=token).start()
    os.environ[env_names.MAX_CLOCK_SKEW_SECONDS] = str(3 * 86400)  # the evening was yesterday
    jobs = plan_requests(sc)
    n_frames = len(sc.frames)
    print(
        f"Simulating the evening of {evening} at {len({c for _, c, _, _ in sc.cameras})} cinemas: "
        f"{len(sc.cameras)} cameras, {n_frames} frames in {len(jobs)} requests, "
        f"{len(sc.sold)} tickets sold. The demo knows the ground truth and checks the views against it."
    )
    t0 = time.monotonic()
    opts = ServeOptions(
        data=data, port=0, workers=args.workers, box_office_url=box.url, box_office_token=token, etl_batch_seconds=1.0
    )
    with LocalPipeline(opts) as pipeline:
        print(f"Local pipeline on {pipeline.url} (data in {data}, {args.workers} decoding workers)")
        progress = Progress(n_frames, "frames", status=pipeline.status_line)
        sender = Sender(pipeline.url, keys, progress)
        sender.send_all(jobs)
        progress.close()
        print("Waiting for the lake and the box office to catch up...", flush=True)
        settled = wait_until_settled(pipeline)
    box.stop()
    elapsed = time.monotonic() - t0
    if sender.failures:
        print(f"{len(sender.failures)} request(s) failed, e.g. {sender.failures[0]}", file=sys.stderr)
    if not settled:
        print("the pipeline did not settle within 2 minutes", file=sys.stderr)

    from analytics.report import write_report
    from analytics.sql import open_lake

    con = open_lake(data)
    lines, mismatches = compare(sc, con, n_frames)
    print(f"\nHourly peaks per cinema (local time), from the hourly_peak view — {elapsed:.0f} s end to end:")
    print("\n".join(lines))
    report = args.report or data / "report.html"
    write_report(con, report)
    print(f"\nHTML report with the hourly entries per room: {report}")
    print(f"Box office answered: {dict(sorted(sc.box_office.items()))}")
    if mismatches or sender.failures or not settled:
        print("\nMISMATCH between the views and the simulated ground truth:", file=sys.stderr)
        for what, got, want in mismatches:
            print(f"  {what}: views say {got!r}, simulation says {want!r}", file=sys.stderr)
        return 1
    print(
        "\nAll numbers equal the simulated ground truth ✓ (entries per room and hour, peaks, frames, "
        "non-ticket reads, box-office answers)."
    )
    return 0
