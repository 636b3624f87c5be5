"""Benchmark: cost of the camera-API handler per frame versus ``decode_frame`` alone, plus a cost estimate.

Run:  .venv/bin/python bench/bench_handler.py [--seconds 60] [--memory-mb 1769]

Single thread, thread CPU time (robust to other load on the machine).  1080p JPEG frames with codes
(2 tickets) and without; each measured through
``ingest.handler.handler`` (API Gateway event -> parse -> decode -> records -> KPL aggregation ->
publish to in-memory stub ports, Powertools logging and EMF metrics on, stdout discarded) and
through ``decode_frame`` alone, interleaved in the same run.  Figures are ratios against that
baseline.  Then a cost per million frames from the measured handler milliseconds and list prices
(see docs/bench-ingest.md for the prices, their region and date).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")

from ingest import handler as ingest_handler
from ingest.cameras import Camera, Registry
from ingest.decode import decode_frame
from ingest.settings import LocalContext, Settings
from local.frames import Placement, render_frame
from stream.aggregate import PUT_PAYLOAD_UNIT_BYTES
from stream.ports import QueueMessage, StreamEntry
from stream.schema import now_utc

# us-east-1 list prices (USD), see docs/bench-ingest.md for sources and date.
PRICE_APIGW_REST_PER_M = 3.50
PRICE_LAMBDA_PER_M_REQ = 0.20
PRICE_LAMBDA_GB_S_X86 = 0.0000166667
PRICE_KINESIS_PER_M_PUT_UNITS = 0.014
PRICE_SQS_FIFO_PER_M = 0.50

KEY_ID = "ck_bench"


class StubStream:
    """In-memory StreamWriter that keeps only counts (what a fast transport would cost: nothing)."""

    def __init__(self) -> None:
        self.entries = 0
        self.bytes: list[int] = []

    def put(self, entries: Sequence[StreamEntry]) -> None:
        self.entries += len(entries)
        self.bytes.extend(len(e.data) for e in entries)


class StubQueue:
    def __init__(self) -> None:
        self.messages = 0

    def send(self, messages: Sequence[QueueMessage]) -> None:
        self.messages += len(messages)


def event(body: bytes | str, content_type: str) -> dict:
    is_bin = isinstance(body, bytes)
    return {
        "resource": "/upload",
        "path": "/upload",
        "httpMethod": "POST",
        "headers": {"Content-Type": content_type},
        "multiValueHeaders": {"Content-Type": [content_type]},
        "requestContext": {"requestId": "bench", "identity": {"apiKeyId": KEY_ID}},
        "body": base64.b64encode(body).decode() if is_bin else body,
        "isBase64Encoded": is_bin,
    }


def timed(fn, *args) -> float:
    """CPU milliseconds of this thread spent in ``fn(*args)``.

    Thread CPU time, not wall time: on a shared machine other processes' load would otherwise
    dominate the ratio (the decoder and the handler are single-threaded and CPU-bound).
    """
    t0 = time.thread_time()
    fn(*args)
    return (time.thread_time() - t0) * 1000.0


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measure(frames: dict[str, list[bytes]], seconds: float) -> dict[str, dict[str, float]]:
    """Median ms per frame of decode_frame, raw-body handler and batch handler, interleaved."""
    out = {}
    per_kind = seconds / len(frames)
    devnull = open(os.devnull, "w")  # noqa: SIM115 - kept open for the run
    for kind, imgs in frames.items():
        dec, raw, batch = [], [], []
        raw_events = [event(img, "image/jpeg") for img in imgs]
        batch_event = event(
            json.dumps({"frames": [{"image_base64": base64.b64encode(i).decode()} for i in imgs]}), "application/json"
        )
        ctx = LocalContext()
        deadline = time.perf_counter() + per_kind
        rounds = 0
        while time.perf_counter() < deadline or rounds < 3:
            for i, (img, ev) in enumerate(zip(imgs, raw_events, strict=True)):
                with contextlib.redirect_stdout(devnull):
                    if (i + rounds) % 2:  # alternate which runs first: no order bias (caches, frequency)
                        raw.append(timed(ingest_handler.handler, ev, ctx))
                        dec.append(timed(decode_frame, img))
                    else:
                        dec.append(timed(decode_frame, img))
                        raw.append(timed(ingest_handler.handler, ev, ctx))
            with contextlib.redirect_stdout(devnull):
                batch.append(timed(ingest_handler.handler, batch_event, ctx) / len(imgs))
            rounds += 1
            progress(f"  {kind}: round {rounds}, {len(dec)} frames")
        out[kind] = {
            "decode_ms": statistics.median(dec),
            "handler_raw_ms": statistics.median(raw),
            "handler_batch_ms": statistics.median(batch),
            "min_ratio": min(raw) / min(dec),
            "n": len(dec),
        }
    return out


def cost_per_million(
    frame_ms: float, memory_mb: int, frames_per_request: int, put_units: float, sqs_msgs: float
) -> dict[str, float]:
    """USD per million frames: API Gateway REST + Lambda + Kinesis PUT units + SQS FIFO (send, receive, delete)."""
    requests = 1e6 / frames_per_request
    apigw = requests / 1e6 * PRICE_APIGW_REST_PER_M
    lam_req = requests / 1e6 * PRICE_LAMBDA_PER_M_REQ
    lam_gbs = 1e6 * frame_ms / 1000.0 * memory_mb / 1024.0 * PRICE_LAMBDA_GB_S_X86
    kinesis = requests * put_units / 1e6 * PRICE_KINESIS_PER_M_PUT_UNITS
    sqs = 1e6 * sqs_msgs * 3 / 1e6 * PRICE_SQS_FIFO_PER_M  # send + receive + delete, each a request
    return {"api_gateway": apigw, "lambda_requests": lam_req, "lambda_compute": lam_gbs, "kinesis": kinesis,
            "sqs": sqs, "total": apigw + lam_req + lam_gbs + kinesis + sqs}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="time budget for the measurements (default 60)")
    ap.add_argument(
        "--memory-mb",
        type=int,
        default=1769,
        help="Lambda memory for the cost estimate (default 1769 MB = one full vCPU, so measured CPU ms ~ Lambda ms)",
    )
    ap.add_argument("--frames", type=int, default=4, help="distinct frames per kind (batch size)")
    args = ap.parse_args(argv)

    progress("rendering 1080p frames ...")
    n = args.frames
    with_codes = [
        render_frame([f"TKT:REX:R1:S20261130-2030:T{i:06d}:F{i}", f"TKT:REX:R1:S20261130-2030:T{i + 500:06d}:G{i}"],
                     seed=i, size=(1920, 1080), placements=[Placement(module_px=6.0)] * 2)
        for i in range(n)
    ]  # fmt: skip
    without = [render_frame([], seed=100 + i, size=(1920, 1080)) for i in range(n)]
    frames = {"with_codes": with_codes, "no_code": without}

    stream, queue = StubStream(), StubQueue()
    registry = Registry([Camera("bench-cam", "REX", "1", "America/Sao_Paulo", key_id=KEY_ID)])
    ingest_handler.use(stream, queue, registry, Settings(max_clock_skew_seconds=86400), clock=now_utc)
    ingest_handler.logger.registered_handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - formatted, discarded
    progress("warming up ...")
    for img in with_codes[:1] + without[:1]:
        decode_frame(img)
        with contextlib.redirect_stdout(open(os.devnull, "w")):
            assert ingest_handler.handler(event(img, "image/jpeg"))["statusCode"] == 200

    results = measure(frames, args.seconds)
    print(f"\nhandler vs decode_frame, 1080p JPEG, single thread, median CPU ms per frame ({os.cpu_count()} cores)")
    print(f"{'frames':<12}{'decode ms':>10}{'raw ms':>9}{'raw/dec':>9}{'batch ms':>10}{'batch/dec':>10}{'n':>6}")
    for kind, r in results.items():
        raw_ratio, batch_ratio = r["handler_raw_ms"] / r["decode_ms"], r["handler_batch_ms"] / r["decode_ms"]
        print(f"{kind:<12}{r['decode_ms']:>10.2f}{r['handler_raw_ms']:>9.2f}{raw_ratio:>9.3f}"
              f"{r['handler_batch_ms']:>10.2f}{batch_ratio:>10.3f}{r['n']:>6}")  # fmt: skip
    for kind, r in results.items():
        over = (r["handler_raw_ms"] - r["decode_ms"]) / r["decode_ms"] * 100
        verdict = "OK" if over < 15 else "ABOVE TARGET"
        print(f"overhead {kind}: {over:+.1f}% of decode time (median; best-of-run {100 * (r['min_ratio'] - 1):+.1f}%)"
              f" -- target < 15%: {verdict}")  # fmt: skip
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    # cost: a frame mix of 50% with codes; entries per request measured from the stub stream
    mix_ms = statistics.mean(r["handler_raw_ms"] for r in results.values())
    mix_batch_ms = statistics.mean(r["handler_batch_ms"] for r in results.values())
    mean_entry = statistics.mean(stream.bytes) if stream.bytes else 1000
    units_single = max(1.0, mean_entry / PUT_PAYLOAD_UNIT_BYTES)
    units_batch = max(1.0, mean_entry * n / PUT_PAYLOAD_UNIT_BYTES)  # one aggregate per camera per request
    sqs_per_frame = 0.1  # assume 1 frame in 10 brings a *new* ticket (the rest are de-duplicated)
    single = cost_per_million(mix_ms, args.memory_mb, 1, units_single, sqs_per_frame)
    batch = cost_per_million(mix_batch_ms, args.memory_mb, 10, units_batch * 10 / n, sqs_per_frame)
    print(f"\ncost per million frames (USD, us-east-1 list prices, Lambda x86 {args.memory_mb} MB, "
          f"handler {mix_ms:.1f} ms/frame single, {mix_batch_ms:.1f} ms/frame batch)")  # fmt: skip
    print(f"{'item':<18}{'single':>10}{'batch of 10':>13}")
    for k in single:
        print(f"{k:<18}{single[k]:>10.2f}{batch[k]:>13.2f}")
    print(f"batch/single total: {batch['total'] / single['total']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
