"""Benchmark: the local server's sustained frames/s versus raw ``decode_frame`` on the same cores.

Run:  .venv/bin/python bench/bench_serve.py [--seconds 20] [--rounds 3] [--concurrency 8] [--server-workers N]
Soak: .venv/bin/python bench/bench_serve.py --minutes 10      (RSS over time; not run in CI)

Loopback only, bounded in time.  Steps, all in one run:

1. make a frame set: by default ``--frames`` camera frames from the team's generator of realistic
   frames (``../shared/bench/make_frames.py``: 1920x1080 JPEG, ticket codes with blur, glare, tilt and
   noise; 80 % with a code, 20 % without), spread over 4 cameras; with ``--frame-source rendered``, or
   when that generator is not there (a user's clone), frames rendered by ``local.frames`` (``--size``,
   clean codes on a synthetic background, 70 % one ticket, 10 % two, 20 % none), which decode faster;
2. baseline: a pool of ``--workers`` processes running ``decode_frame`` on those frames (frames/s, and
   the pool's CPU ms per frame);
3. ``--warmup`` seconds of load that is not measured (the first requests pay one-time costs), then
   ``--rounds`` times: the load generator (``local.loadgen``) in a *second* child process posts unique
   raw-JPEG frames to ``monuv-qr serve`` (started once, in a child process) over ``--concurrency``
   keep-alive connections for ``--seconds`` -- sustained frames/s, request latency p50/p99, CPU ms
   per frame of the server's main process, of each worker and of the load generator (counted until
   the lake has caught up) -- then the baseline again while the server idles.  Each round's ratio is
   against the two baselines around it: on a shared machine the speed drifts by 10 % and more within
   minutes, so the median of several bracketed rounds is the figure to quote;
4. checks every acknowledged frame is in ``frames_unique`` exactly once and measures freshness =
   ``lake_at - received_at`` (upload -> queryable in a view) p50/p99 over all frames;
5. with ``--minutes M``: an open-loop run at ``--soak-rate`` (default 70 % of the best round's rate)
   for M minutes, sampling RSS every 10 s, and compares the RSS of the last fifth with the second.

The CPU-bound ratio (raw CPU per frame / server + load generator CPU per frame) is what the
throughput ratio would be on otherwise idle cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ingest.cameras import Registry
from local.loadgen import load_frameset, render_frameset, write_manifest
from local.malloc import keep_freed_buffers
from local.server_process import ServerProcess

ROOT = Path(__file__).resolve().parents[1]

CAMERAS = ("bench-1", "bench-2", "bench-3", "bench-4")
GENERATOR = ROOT.parent / "shared" / "bench" / "make_frames.py"
"""The team's generator of realistic camera frames (not part of a user's clone)."""


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- baseline

_frames: list[bytes] = []


def _load(directory: str) -> None:
    keep_freed_buffers()  # the same memory setting as the server's workers: a like-for-like baseline
    _frames.extend(f.image for f in load_frameset(Path(directory)))


def _decode_many(idx: list[int]) -> int:
    from ingest.decode import decode_frame

    for i in idx:
        decode_frame(_frames[i % len(_frames)])
    return len(idx)


def shared_frameset(generator: Path, out_dir: Path, n: int, cameras: tuple[str, ...]) -> None:
    """``n`` frames from the shared generator (80 % with codes), written as a load-generator frame set.

    Raises:
        subprocess.CalledProcessError: the generator failed.
    """
    positives = round(0.8 * n)
    cmd = [sys.executable, str(generator), "--positives", str(positives), "--negatives", str(n - positives)]
    subprocess.run([*cmd, str(out_dir)], check=True, stdout=subprocess.DEVNULL)
    made = json.loads((out_dir / "manifest.json").read_text())["frames"]  # the generator's own manifest
    write_manifest(
        out_dir, [(f["file"], cameras[i % len(cameras)], [c["text"] for c in f["codes"]]) for i, f in enumerate(made)]
    )


def raw_decode_fps(frame_dir: Path, workers: int, seconds: float) -> tuple[float, float]:
    """``decode_frame`` alone in a pool of ``workers`` processes (frames pre-loaded in each).

    Returns frames/s and the pool's CPU milliseconds per frame (user + system, from the processes'
    resource usage once they have exited).
    """
    cpu0 = children_cpu()
    with ProcessPoolExecutor(workers, initializer=_load, initargs=(str(frame_dir),)) as pool:
        list(pool.map(_decode_many, [[0]] * workers))  # start and warm every worker
        done, i, t0 = 0, 0, time.monotonic()
        pending = set()
        while time.monotonic() - t0 < seconds or pending:
            while time.monotonic() - t0 < seconds and len(pending) < 2 * workers:
                pending.add(pool.submit(_decode_many, list(range(i, i + 4))))
                i += 4
            finished = {f for f in pending if f.done()}
            if not finished:
                time.sleep(0.002)
            for f in finished:
                done += f.result()
            pending -= finished
        fps = done / (time.monotonic() - t0)
    return fps, (children_cpu() - cpu0) * 1000 / max(1, done + workers)


# ------------------------------------------------------------------------------------------- server run


def sample_rss(server: ServerProcess, stop: threading.Event, every_s: float, out: list[tuple[float, int]]) -> None:
    t0 = time.monotonic()
    while not stop.is_set():
        out.append((time.monotonic() - t0, server.rss_bytes()))
        stop.wait(every_s)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux ``/proc/<pid>/stat``), seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu(server: ServerProcess) -> dict[str, float]:
    """CPU seconds so far of the server's main process and of each worker process (by pid)."""
    from local.server_process import child_pids

    return {"main": cpu_seconds(server.pid), **{f"worker {c}": cpu_seconds(c) for c in child_pids(server.pid)}}


def children_cpu() -> float:
    """CPU seconds of every finished child process of this one so far (user + system)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_loadgen(url: str, keys_file: Path, frame_dir: Path, out: Path, **opts: object) -> dict:
    """The load generator in a second process; returns its result document."""
    cmd = [sys.executable, "-m", "local.loadgen", "--url", url, "--keys", str(keys_file), "--frames", str(frame_dir)]
    for k, v in opts.items():
        if v is not None:
            cmd += [f"--{k.replace('_', '-')}", str(v)]
    cmd += ["--out", str(out)]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads(out.read_text())


def lake_figures(data: Path, acknowledged: list[str]) -> dict:
    """Freshness percentiles (s) and the exactly-once check of acknowledged frames against the lake."""
    from analytics.sql import open_lake

    con = open_lake(data)
    p50, p99 = con.execute(
        "SELECT quantile_cont(epoch(lake_at) - epoch(received_at), 0.5), "
        "quantile_cont(epoch(lake_at) - epoch(received_at), 0.99) FROM frames_unique"
    ).fetchone()
    in_lake = {r[0] for r in con.execute("SELECT frame_id FROM frames_unique").fetchall()}
    raw_rows = con.execute("SELECT count(*), count(DISTINCT frame_id) FROM frames").fetchone()
    con.close()
    missing = set(acknowledged) - in_lake
    return {
        "freshness_s_p50": round(p50 or 0.0, 3),
        "freshness_s_p99": round(p99 or 0.0, 3),
        "acknowledged": len(acknowledged),
        "in_lake": len(in_lake),
        "missing": len(missing),
        "raw_rows": raw_rows[0],
        "raw_distinct": raw_rows[1],
    }


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1920x1080, got {text!r}") from None
    return w, h


@dataclass
class Round:
    """One server phase and the decode baselines measured just before and just after it."""

    load: dict
    cpu_ms: dict[str, float]
    raw_before: tuple[float, float]
    raw_after: tuple[float, float] = (0.0, 0.0)

    @property
    def raw_fps(self) -> float:
        return (self.raw_before[0] + self.raw_after[0]) / 2

    @property
    def raw_cpu(self) -> float:
        return (self.raw_before[1] + self.raw_after[1]) / 2

    @property
    def ratio(self) -> float:
        return self.load["frames_per_s"] / self.raw_fps

    @property
    def cpu_ratio(self) -> float:
        return self.raw_cpu / sum(self.cpu_ms.values())


def server_round(server: ServerProcess, keys_file: Path, frame_dir: Path, out: Path, args, raw_before) -> Round:
    """Load the running server for ``args.seconds``; CPU per frame counted until the lake has caught up."""
    cpu0 = server_cpu(server)
    load = run_loadgen(server.url, keys_file, frame_dir, out, concurrency=args.concurrency, seconds=args.seconds)
    server.wait_lake_caught_up(120)  # the ETL's work for these frames belongs to this round
    cpu1 = server_cpu(server)
    s = load["summary"]
    n = max(1, s["requests"])
    cpu_ms = {k: (cpu1[k] - cpu0.get(k, 0.0)) * 1000 / n for k in cpu1}
    cpu_ms = {k: round(v, 2) for k, v in cpu_ms.items() if v >= 0.01}  # (the spawn resource tracker idles)
    cpu_ms["load generator"] = s["client_cpu_ms_per_request"]
    return Round({**s, "requests_detail": load["requests"]}, cpu_ms, raw_before)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="length of each measured phase (default 20)")
    p.add_argument("--rounds", type=int, default=3, help="server phases, each between two baselines (default 3)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of unmeasured load first (default 5)")
    p.add_argument("--concurrency", type=int, default=8, help="load generator connections (default 8)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="baseline decode processes (= cores)")
    p.add_argument("--server-workers", type=int, default=None, help="serve --workers (default: serve's own)")
    p.add_argument("--frames", type=int, default=60, help="distinct frames (default 60)")
    p.add_argument(
        "--frame-source",
        choices=("shared", "rendered"),
        default="shared" if GENERATOR.exists() else "rendered",
        help="realistic frames from ../shared/bench/make_frames.py (default when it exists) or frames "
        "rendered by local.frames (faster to decode)",
    )
    p.add_argument("--generator", type=Path, default=GENERATOR, help="path of the shared make_frames.py")
    p.add_argument("--size", type=_size, default=(1920, 1080), help="rendered frames' size WxH (default 1920x1080)")
    p.add_argument("--minutes", type=float, default=0.0, help="soak: minutes of open-loop load after the benchmark")
    p.add_argument("--soak-rate", type=float, default=None, help="soak requests/s (default: 70%% of measured)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be at least 1")

    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    frame_dir, data = tmp / "frames", tmp / "data"
    data.mkdir()
    registry = Registry()
    keys = {cam: registry.add(cam, "BENCH", "1", "UTC")[1] for cam in CAMERAS}
    registry.save(data / "cameras.json")
    keys_file = tmp / "keys.json"
    keys_file.write_text(json.dumps(keys))
    w, h = args.size
    steps = 2 + 2 * args.rounds
    if args.frame_source == "shared":
        if not args.generator.exists():
            p.error(f"the frame generator is not at {args.generator}; pass --generator PATH or --frame-source rendered")
        say(f"[1/{steps}] {args.frames} realistic 1920x1080 frames from {args.generator} into {frame_dir} ...")
        shared_frameset(args.generator, frame_dir, args.frames, CAMERAS)
    else:
        say(f"[1/{steps}] rendering {args.frames} frames ({w}x{h} JPEG) into {frame_dir} ...")
        render_frameset(frame_dir, CAMERAS, n=args.frames, size=args.size, processes=args.workers)

    def baseline(step: int) -> tuple[float, float]:
        say(f"[{step}/{steps}] baseline: decode_frame in {args.workers} processes for {args.seconds:.0f} s ...")
        fps, cpu = raw_decode_fps(frame_dir, args.workers, args.seconds)
        say(f"      {fps:.1f} frames/s, {cpu:.2f} ms CPU per frame")
        return fps, cpu

    raw = baseline(2)
    server = ServerProcess(data, workers=args.server_workers).start()
    rss: list[tuple[float, int]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(server, stop, 1.0, rss), daemon=True)
    sampler.start()
    rounds: list[Round] = []
    soak = None
    try:
        if args.warmup > 0:  # first requests pay one-time costs (imports, caches): not the sustained rate
            say(f"      warming the server up for {args.warmup:g} s (not measured) ...")
            warm = run_loadgen(
                server.url, keys_file, frame_dir, tmp / "warmup.json", concurrency=args.concurrency, seconds=args.warmup
            )
            server.wait_lake_caught_up(120)
        for r in range(args.rounds):
            say(
                f"[{3 + 2 * r}/{steps}] round {r + 1}: monuv-qr serve --workers {args.server_workers or 'default'}; "
                f"load generator (second process), {args.concurrency} connections, {args.seconds:.0f} s ..."
            )
            rnd = server_round(server, keys_file, frame_dir, tmp / f"load-{r}.json", args, raw)
            say(f"      {rnd.load['frames_per_s']:.1f} frames/s; CPU ms per frame {json.dumps(rnd.cpu_ms)}")
            raw = rnd.raw_after = baseline(4 + 2 * r)  # the server idles meanwhile
            rounds.append(rnd)
        say("checking the lake ...")
        answered = [q for rnd in rounds for q in rnd.load["requests_detail"]]
        if args.warmup > 0:
            answered += warm["requests"]
        acknowledged = [fid for q in answered if q["status"] == 200 for fid in q["frame_ids"]]
        lake = lake_figures(data, acknowledged)
        say(f"      {json.dumps(lake)}")
        if args.minutes > 0:
            best = max(rnd.load["requests"] / rnd.load["seconds"] for rnd in rounds)
            rate = args.soak_rate or round(0.7 * best, 1)
            say(f"[soak] {args.minutes:g} min at {rate} requests/s, RSS every 10 s ...")
            stop.set()
            sampler.join()
            soak_rss: list[tuple[float, int]] = []
            stop = threading.Event()
            sampler = threading.Thread(target=sample_rss, args=(server, stop, 10.0, soak_rss), daemon=True)
            sampler.start()
            soak_load = run_loadgen(
                server.url,
                keys_file,
                frame_dir,
                tmp / "soak.json",
                concurrency=args.concurrency,
                seconds=args.minutes * 60,
                rate=rate,
                tag="soak",
            )
            server.wait_lake_caught_up(300)
            acknowledged += [fid for r in soak_load["requests"] if r["status"] == 200 for fid in r["frame_ids"]]
            csv = tmp / "soak-rss.csv"
            csv.write_text("seconds,rss_mb\n" + "".join(f"{t:.0f},{b / 1e6:.1f}\n" for t, b in soak_rss))
            soak = {"load": soak_load["summary"], "rss": soak_rss, "lake": lake_figures(data, acknowledged), "csv": csv}
        health = server.health()
    finally:
        stop.set()
        sampler.join()
        code = server.stop()
    say(f"      server stopped (exit {code})")

    report(args, rounds, lake, health, rss, soak)
    if not args.keep and not args.minutes:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp}")
    return 0 if lake["missing"] == 0 else 1


def report(args, rounds: list[Round], lake: dict, health: dict, rss: list, soak: dict | None) -> None:
    rss_mb = [b / 1e6 for _t, b in rss]
    print("\n== bench_serve: local server vs decode_frame alone, same cores, same run ==")
    print(
        f"cores {os.cpu_count()}, baseline processes {args.workers}, server workers "
        f"{args.server_workers or 'default (= cores)'}, load connections {args.concurrency}, "
        f"{args.seconds:.0f} s per phase, load average now {os.getloadavg()[0]:.1f}"
    )
    w, h = args.size
    source = "realistic (../shared/bench)" if args.frame_source == "shared" else f"rendered {w}x{h}"
    print(f"frames: {args.frames} distinct, {source}")
    print("round | raw decode_frame (before/after) | server end to end | ratio | CPU ms per frame | CPU-bound ratio")
    for i, rnd in enumerate(rounds, 1):
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in rnd.cpu_ms.items())
        print(
            f"{i:5d} | {rnd.raw_fps:6.1f} frames/s ({rnd.raw_before[0]:.1f}/{rnd.raw_after[0]:.1f}) "
            f"| {rnd.load['frames_per_s']:6.1f} frames/s | {rnd.ratio:.0%} | {cpu}; total "
            f"{sum(rnd.cpu_ms.values()):.2f} vs raw {rnd.raw_cpu:.2f} | {rnd.cpu_ratio:.0%}"
        )
    ratios = sorted(rnd.ratio for rnd in rounds)
    print(
        f"server / raw decode_frame  median {statistics.median(ratios):.0%}, lowest {ratios[0]:.0%}, "
        f"highest {ratios[-1]:.0%} over {len(rounds)} rounds (target >= 80%)"
    )
    print(
        f"CPU-bound ratio           median {statistics.median(r.cpu_ratio for r in rounds):.0%} = raw CPU per frame "
        "/ server + load generator CPU per frame (the throughput ratio on otherwise idle cores)"
    )
    lat = rounds[len(rounds) // 2].load
    print(
        f"request latency           p50 {lat['latency_ms_p50']:.0f} ms, p99 {lat['latency_ms_p99']:.0f} ms "
        f"(middle round; statuses over all rounds "
        f"{dict(sum((Counter(r.load['statuses']) for r in rounds), Counter()))})"
    )
    print(
        f"freshness upload->view    p50 {lake['freshness_s_p50']:.2f} s, p99 {lake['freshness_s_p99']:.2f} s "
        f"(ETL micro-batch window 2 s)"
    )
    print(
        f"lake check                {lake['acknowledged']} acknowledged frames, {lake['missing']} missing, "
        f"{lake['raw_rows'] - lake['raw_distinct']} duplicate rows"
    )
    print(f"group commit              {health.get('group_commit')}")
    print(f"workers                   {health.get('workers')}")
    print(f"server RSS (all procs)    start {rss_mb[0]:.0f} MB, max {max(rss_mb):.0f} MB, end {rss_mb[-1]:.0f} MB")
    if soak:
        mb = [b / 1e6 for _t, b in soak["rss"]]
        k = max(1, len(mb) // 5)
        early, late = statistics.fmean(mb[k : 2 * k] or mb), statistics.fmean(mb[-k:])
        print(f"soak {args.minutes:g} min             {json.dumps(soak['load'])}")
        print(
            f"soak RSS                  second fifth {early:.0f} MB, last fifth {late:.0f} MB, "
            f"growth {late - early:+.0f} MB ({(late - early) / early:+.1%}); series in {soak['csv']}"
        )
        print(f"soak lake check           {json.dumps(soak['lake'])}")


if __name__ == "__main__":
    sys.exit(main())
