"""Benchmark of QR decoding strategies on realistic 1080p camera frames (ratios, same run).

Run:  .venv/bin/python bench/bench_decode.py [--limit N] [--reps 3] [--frames DIR] [--generator PATH]

The frame set comes from the shared generator (``../shared/bench/make_frames.py`` with its default
seed: 300 frames holding 379 ticket codes in easy/medium/hard buckets, 50 frames without a code); it is
generated once into ``bench/.frames/default`` (gitignored) and reused.  Every candidate decodes every
frame ``--reps`` times, interleaved (frame by frame, candidate order rotated) on one thread; a frame's
cost is the median of its repetitions.  Cost is per-thread CPU time by default (robust on a shared,
noisy machine; ``--clock wall`` for wall time).  Results are printed as a Markdown table plus ratios
against zxing-cpp alone and pyzbar alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from decode_candidates import Decoder, candidates

ROOT = Path(__file__).resolve().parent.parent
BUCKETS = ("easy", "medium", "hard")


@dataclass
class Tally:
    """Detection and cost figures of one candidate."""

    frames_read: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    codes_read: int = 0
    false_on_empty: int = 0
    wrong_text: int = 0
    ms_code: list[float] = field(default_factory=list)
    ms_empty: list[float] = field(default_factory=list)


def ensure_frames(frames_dir: Path, generator: Path) -> dict:
    """Return the manifest of ``frames_dir``, generating the frame set first if it is missing."""
    manifest = frames_dir / "manifest.json"
    if not manifest.exists():
        if not generator.exists():
            sys.exit(f"bench_decode: frame generator not found at {generator}; pass --generator PATH")
        print(f"generating the frame set into {frames_dir} (about 4 minutes, once) ...", flush=True)
        subprocess.run([sys.executable, str(generator), str(frames_dir)], check=True)
    return json.loads(manifest.read_text())


def p95(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]


def run(frames: list[tuple[dict, bytes]], decoders: dict[str, Decoder], reps: int, clock) -> dict[str, Tally]:
    """Decode every frame with every decoder ``reps`` times, interleaved; tally detection and cost."""
    names = list(decoders)
    tallies = {n: Tally() for n in names}
    t_start = time.monotonic()
    for i, (info, data) in enumerate(frames):
        expected = set(info["expected"])
        costs: dict[str, list[float]] = {n: [] for n in names}
        seen: dict[str, set[str]] = {}
        for r in range(reps):
            k = (i + r) % len(names)
            for name in names[k:] + names[:k]:  # rotate the order: no candidate always runs first
                t0 = clock()
                texts = decoders[name](data)
                costs[name].append((clock() - t0) * 1000.0)
                seen.setdefault(name, texts)
        for name in names:
            t, texts = tallies[name], seen[name]
            ms = statistics.median(costs[name])
            if info["positive"]:
                t.ms_code.append(ms)
                t.codes_read += len(texts & expected)
                t.frames_read[info["bucket"]] += expected <= texts
                t.wrong_text += len(texts - expected)
            else:
                t.ms_empty.append(ms)
                t.false_on_empty += len(texts)
        if (i + 1) % 25 == 0 or i + 1 == len(frames):
            el = time.monotonic() - t_start
            left = el / (i + 1) * (len(frames) - i - 1)
            print(
                f"  {i + 1}/{len(frames)} frames, {el:.0f} s elapsed, ~{left:.0f} s left",
                file=sys.stderr,
                flush=True,
            )
    return tallies


def report(tallies: dict[str, Tally], frames: list[tuple[dict, bytes]]) -> str:
    """The Markdown results table, with ratios against zxing-cpp and pyzbar."""
    pos = [f for f, _ in frames if f["positive"]]
    n_pos, n_codes = len(pos), sum(len(f["expected"]) for f in pos)
    per_bucket = {b: sum(1 for f in pos if f["bucket"] == b) for b in BUCKETS}
    med = {
        n: (statistics.median(t.ms_code) if t.ms_code else 0.0, statistics.median(t.ms_empty) if t.ms_empty else 0.0)
        for n, t in tallies.items()
    }
    best_single = max(
        (sum(t.frames_read.values()) for n, t in tallies.items() if "monuv" not in n and "->" not in n), default=0
    )
    lines = [
        f"{n_pos} frames with {n_codes} codes (easy/medium/hard: "
        + "/".join(str(per_bucket[b]) for b in BUCKETS)
        + f"), {len(frames) - n_pos} empty frames.  A frame counts as read only if all its codes are read.",
        "",
        "| candidate | frames read | rate | codes | easy / med / hard | false pos. (empty / wrong) "
        "| ms code med / p95 | ms empty med / p95 | × zxing code / empty | × pyzbar code / empty |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    zx, zb = med.get("zxing-cpp"), med.get("pyzbar")

    def ratio(base: tuple[float, float] | None, m: tuple[float, float]) -> str:
        return f"{m[0] / base[0]:.2f} / {m[1] / base[1]:.2f}" if base and base[0] and base[1] else "n/a"

    for n, t in tallies.items():
        fr = sum(t.frames_read.values())
        rate = 100.0 * fr / n_pos if n_pos else 0.0
        lines.append(
            f"| {n} | {fr} | {rate:.1f} % ({rate - 100.0 * best_single / n_pos:+.1f}) | {t.codes_read} "
            f"| {' / '.join(str(t.frames_read[b]) for b in BUCKETS)} | {t.false_on_empty} / {t.wrong_text} "
            f"| {med[n][0]:.1f} / {p95(t.ms_code) if t.ms_code else 0:.1f} "
            f"| {med[n][1]:.1f} / {p95(t.ms_empty) if t.ms_empty else 0:.1f} "
            f"| {ratio(zx, med[n])} | {ratio(zb, med[n])} |"
        )
    lines += ["", "rate: (+x) is the difference in points to the best single-library configuration."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog="See docs/bench-decode.md.")
    ap.add_argument(
        "--frames",
        type=Path,
        default=ROOT / "bench" / ".frames" / "default",
        help="frame-set directory (generated there if it has no manifest.json)",
    )
    ap.add_argument(
        "--generator",
        type=Path,
        default=ROOT.parent / "shared" / "bench" / "make_frames.py",
        help="path of the shared make_frames.py (default: ../shared/bench/make_frames.py)",
    )
    ap.add_argument(
        "--limit",
        type=int,
        default=0,
        help="quick run: use only N frames (positives and empties in the set's proportion)",
    )
    ap.add_argument("--reps", type=int, default=3, help="repetitions per frame and candidate (median; >= 3)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="thread CPU time or wall time")
    ap.add_argument("--only", action="append", default=[], help="run only candidates whose name contains this")
    a = ap.parse_args(argv)
    manifest = ensure_frames(a.frames, a.generator)
    infos = manifest["frames"]
    if a.limit:
        step = max(1, len(infos) // a.limit)
        infos = infos[::step][: a.limit]
    frames = [(f, (a.frames / f["file"]).read_bytes()) for f in infos]
    decoders = candidates()
    if a.only:
        keep = {"zxing-cpp", "pyzbar"}
        decoders = {n: d for n, d in decoders.items() if n in keep or any(s in n for s in a.only)}
    clock = time.thread_time if a.clock == "cpu" else time.perf_counter
    print(
        f"{len(frames)} frames x {len(decoders)} candidates x {a.reps} reps, single thread, clock={a.clock}",
        file=sys.stderr,
        flush=True,
    )
    tallies = run(frames, decoders, a.reps, clock)
    print(report(tallies, frames))
    return 0


if __name__ == "__main__":
    sys.exit(main())
