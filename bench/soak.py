"""Soak: the local server at its measured capacity for N minutes -- errors, latency, memory, nothing lost.

Run:  .venv/bin/python bench/soak.py --minutes 10 [--fraction 0.9] [--out DIR]

Loopback only; stops by itself (probe + soak + drain, each bounded).  Steps:

1. ``monuv-qr serve`` in a child process on a free port, with 4 cameras registered in a fresh data dir;
2. **capacity probe**: closed loop (``--concurrency`` keep-alive connections, as fast as answered) for
   ``--probe-seconds`` -> frames/s = the capacity measured in this run (the baseline of the ratios);
3. **soak**: open loop at ``--fraction`` x capacity for ``--minutes`` with the camera retry policy of
   ``local.loadgen`` (429/503/connection errors/malformed answers re-sent with the same bytes); every 10 s a window
   records requests, final errors, p50/p99 latency and the RSS of the server + its workers (growth is
   judged on the windows closed under load; the RSS as the load ends and after the drain is printed too);
4. **drain**: wait until ``/health`` shows the lake caught up, stop the server (SIGTERM), then count
   distinct frame ids in the Parquet ``frames`` table that the soak acknowledged: must equal the count
   acknowledged (and every acknowledged read id must be in ``reads``).

Output: ``soak.json`` (summary + windows) and ``soak.png`` (RSS, latency and throughput over time) in
``--out``; figures are printed as ratios to the probe's capacity and to the first windows.
Exit status 0 only when nothing was lost and the final error rate is below ``--max-error-rate``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from ingest.cameras import Registry
from local.loadgen import LoadGenerator, Sent, percentile, render_frameset
from local.server_process import ServerProcess

CAMERAS = ("soak-1", "soak-2", "soak-3", "soak-4")
WINDOW_S = 10.0


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Windows:
    """Per-window request statistics and RSS samples, fed from the load generator's threads."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self._lock = threading.Lock()
        self._current: list[Sent] = []
        self.rows: list[dict] = []
        self.t0 = time.monotonic()

    def add(self, s: Sent) -> None:
        with self._lock:
            self._current.append(s)

    def close_window(self, under_load: bool = True) -> dict:
        """Statistics of the requests finished since the last call, and the server's RSS now."""
        with self._lock:
            sent, self._current = self._current, []
        lat = sorted(s.latency for s in sent if s.status == 200)
        row = {
            "t_s": round(time.monotonic() - self.t0, 1),
            "requests": len(sent),
            "ok": len(lat),
            "errors": sum(1 for s in sent if s.status != 200),
            "retries": sum(s.attempts - 1 for s in sent),
            "p50_ms": round(percentile(lat, 0.5) * 1000, 1),
            "p99_ms": round(percentile(lat, 0.99) * 1000, 1),
            "rss_mb": round(self.server.rss_bytes() / 2**20, 1),
            "under_load": under_load,
        }
        self.rows.append(row)
        return row


def lake_counts(data: Path, frame_ids: set[str], read_ids: set[str]) -> dict:
    """Distinct acknowledged frame/read ids present in the Parquet lake."""
    import duckdb

    con = duckdb.connect()
    frames = {
        r[0]
        for r in con.execute(f"SELECT DISTINCT frame_id FROM read_parquet('{data}/frames/*/*/*.parquet')").fetchall()
    }
    reads = {
        r[0] for r in con.execute(f"SELECT DISTINCT read_id FROM read_parquet('{data}/reads/*/*/*.parquet')").fetchall()
    }
    frame_rows = con.execute(f"SELECT count(*) FROM read_parquet('{data}/frames/*/*/*.parquet')").fetchone()[0]
    return {
        "frames_acknowledged": len(frame_ids),
        "frames_in_lake": len(frame_ids & frames),
        "frame_rows_in_lake": frame_rows,
        "reads_acknowledged": len(read_ids),
        "reads_in_lake": len(read_ids & reads),
    }


def plot(rows: list[dict], capacity: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] / 60 for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    axes[0].plot(t, [r["rss_mb"] for r in rows], color="tab:blue")
    axes[0].set_ylabel("RSS server+workers (MB)")
    axes[0].set_ylim(bottom=0)
    axes[1].plot(t, [r["p50_ms"] for r in rows], label="p50")
    axes[1].plot(t, [r["p99_ms"] for r in rows], label="p99")
    axes[1].set_ylabel("latency (ms)")
    axes[1].legend()
    axes[2].plot(t, [r["ok"] / WINDOW_S for r in rows], label="acknowledged/s")
    axes[2].axhline(capacity, color="grey", linestyle="--", label="probe capacity")
    axes[2].plot(t, [r["errors"] / WINDOW_S for r in rows], color="tab:red", label="final errors/s")
    axes[2].set_ylabel("requests/s")
    axes[2].set_xlabel("minutes")
    axes[2].legend()
    fig.suptitle("monuv-qr serve soak (loopback)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="soak duration (default 10)")
    p.add_argument("--fraction", type=float, default=0.9, help="soak rate as a fraction of the probed capacity")
    p.add_argument("--probe-seconds", type=float, default=30.0, help="closed-loop capacity probe duration")
    p.add_argument("--concurrency", type=int, default=6, help="keep-alive connections of the load generator")
    p.add_argument("--workers", type=int, default=None, help="serve --workers (default: serve's default)")
    p.add_argument("--frames", type=int, default=40, help="distinct frames rendered (each request is unique)")
    p.add_argument("--max-error-rate", type=float, default=0.001, help="final (after retries) error rate allowed")
    p.add_argument("--out", type=Path, default=None, help="directory for soak.json and soak.png")
    args = p.parse_args(argv)
    if not 0 < args.minutes <= 24 * 60 or not 0 < args.fraction <= 1.5:
        p.error("--minutes must be in (0, 1440] and --fraction in (0, 1.5]")

    work = Path(tempfile.mkdtemp(prefix="monuv-soak-"))
    out = args.out or work
    out.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    reg = Registry()
    keys = {c: reg.add(c, "SOAK", str(i + 1))[1] for i, c in enumerate(CAMERAS)}
    reg.save(data / "cameras.json")
    say(f"rendering {args.frames} frames ...")
    frames = render_frameset(work / "frames", CAMERAS, n=args.frames)
    server = ServerProcess(data, workers=args.workers).start()
    say(f"serve on {server.url} (data {data})")
    acked_frames: set[str] = set()
    acked_reads: set[str] = set()
    try:
        say(f"capacity probe: closed loop, {args.concurrency} connections, {args.probe_seconds:.0f} s ...")
        probe = LoadGenerator(server.url, keys, frames, concurrency=args.concurrency, tag="probe")
        probe_res = probe.run(seconds=args.probe_seconds)
        ps = probe_res.summary()
        capacity = ps["frames_per_s"]
        acked_frames.update(probe_res.acknowledged_frame_ids())
        acked_reads.update(rid for r in probe_res.requests if r.status == 200 for rid in r.read_ids)
        say(f"  capacity {capacity:.1f} frames/s, p50 {ps['latency_ms_p50']} ms, p99 {ps['latency_ms_p99']} ms")
        rate = max(0.5, capacity * args.fraction)
        seconds = args.minutes * 60
        say(f"soak: open loop at {rate:.1f} req/s ({args.fraction:.0%} of capacity) for {args.minutes:g} min ...")
        windows = Windows(server)
        gen = LoadGenerator(
            server.url,
            keys,
            frames,
            concurrency=max(args.concurrency, int(rate * 2) + 2),
            rate=rate,
            tag="soak",
            retry_until_s=30.0,
            on_request=windows.add,
        )
        result_box: dict = {}
        runner = threading.Thread(target=lambda: result_box.update(r=gen.run(seconds=seconds)), daemon=True)
        runner.start()
        while runner.is_alive():
            runner.join(WINDOW_S)
            row = windows.close_window(under_load=runner.is_alive())
            say(
                f"  {row['t_s']:6.0f} s  {row['ok'] / WINDOW_S:5.1f} ok/s  errors {row['errors']}  "
                f"p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  RSS {row['rss_mb']} MB"
            )
        result = result_box["r"]
        summary = result.summary()
        acked_frames.update(result.acknowledged_frame_ids())
        acked_reads.update(rid for r in result.requests if r.status == 200 for rid in r.read_ids)
        say("drain: waiting for the lake to catch up ...")
        server.wait_lake_caught_up(timeout_s=180)
        rss_drained = round(server.rss_bytes() / 2**20, 1)
    finally:
        code = server.stop()
    lake = lake_counts(data, acked_frames, acked_reads)
    rows = [r for r in windows.rows if r["requests"]]
    # growth is judged on windows closed while the load ran; the last window closes as all the client
    # connections do at once (hundreds of worker threads wake and exit), which moves the RSS by up to
    # ~100 MB that the workers then keep for reuse (local.malloc): it is reported on its own line
    loaded = [r for r in rows if r["under_load"]] or rows
    fifth = max(1, len(loaded) // 5)
    rss_early = sorted(r["rss_mb"] for r in loaded[fifth : 2 * fifth])[len(loaded[fifth : 2 * fifth]) // 2]
    rss_late = sorted(r["rss_mb"] for r in loaded[-fifth:])[len(loaded[-fifth:]) // 2]
    rss_end = rows[-1]["rss_mb"] if rows else None
    errors = summary["requests"] - summary["statuses"].get("200", 0)
    error_rate = errors / summary["requests"] if summary["requests"] else 1.0
    lost_frames = lake["frames_acknowledged"] - lake["frames_in_lake"]
    lost_reads = lake["reads_acknowledged"] - lake["reads_in_lake"]
    report = {
        "minutes": args.minutes,
        "capacity_frames_per_s": capacity,
        "probe": ps,
        "soak_rate": round(rate, 2),
        "soak": summary,
        "final_error_rate": round(error_rate, 6),
        "rss_mb_second_fifth_median": rss_early,
        "rss_mb_last_fifth_median": rss_late,
        "rss_growth_ratio": round(rss_late / rss_early, 3) if rss_early else None,
        "rss_mb_end_of_load": rss_end,
        "rss_mb_after_drain": rss_drained,
        "throughput_ratio_to_capacity": round(summary["frames_per_s"] / capacity, 3) if capacity else None,
        "p99_ratio_soak_to_probe": round(summary["latency_ms_p99"] / ps["latency_ms_p99"], 2)
        if ps["latency_ms_p99"]
        else None,
        "lake": lake,
        "lost_frames": lost_frames,
        "lost_reads": lost_reads,
        "serve_exit_code": code,
        "windows": windows.rows,
    }
    (out / "soak.json").write_text(json.dumps(report, indent=1))
    plot(rows, capacity, out / "soak.png")
    say("")
    say(f"capacity (probe, closed loop)      {capacity:.1f} frames/s  (baseline)")
    say(f"soak throughput / capacity         {report['throughput_ratio_to_capacity']}")
    say(
        f"requests / final errors / retries  {summary['requests']} / {errors} ({error_rate:.4%}) / {summary['retries']}"
    )
    say(f"latency p50 / p99                  {summary['latency_ms_p50']} / {summary['latency_ms_p99']} ms "
        f"(p99 = {report['p99_ratio_soak_to_probe']} x probe p99)")  # fmt: skip
    growth = report["rss_growth_ratio"]
    say(f"RSS median 2nd fifth -> last fifth {rss_early} -> {rss_late} MB (ratio {growth}, under load)")
    say(f"RSS as the load ends / drained     {rss_end} / {rss_drained} MB ({gen.concurrency} connections close)")
    say(f"acknowledged frames / in Parquet   {lake['frames_acknowledged']} / {lake['frames_in_lake']}")
    say(f"acknowledged reads / in Parquet    {lake['reads_acknowledged']} / {lake['reads_in_lake']}")
    say(f"results: {out / 'soak.json'}, plot: {out / 'soak.png'}")
    ok = lost_frames == 0 and lost_reads == 0 and error_rate <= args.max_error_rate and code == 0
    say("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
