"""A load generator for the camera API: many cameras posting pre-rendered frames over keep-alive HTTP.

Used by ``bench/bench_serve.py`` (throughput, latency, soak) and the end-to-end tests (a camera that
retries while the server is killed and restarted).  Loopback or any URL you own; always bounded by a
request count and/or a duration.

Every request carries a *unique* JPEG: the frame set's images are re-used, but a JPEG comment
segment holding a per-request counter is inserted after the start-of-image marker (decoders ignore
comments), so each request has its own ``frame_id`` and a lake count can be compared with the count
sent.  A camera-like retry policy is built in: connection errors, malformed answers, 429 and 503 are
retried with the same bytes (ids are deterministic, so a retry is harmless) until the deadline.

Run ``python -m local.loadgen --help`` for the command line; results are written as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import statistics
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from local.malloc import keep_freed_buffers
from stream.schema import format_ts, now_utc

RETRY_STATUSES = (429, 503)
MANIFEST = "frames.json"
MAX_HEAD_BYTES = 65536
"""A response head longer than this without its blank line is malformed (not a slow server)."""


# ------------------------------------------------------------------------------------------- frames


def unique_jpeg(jpeg: bytes, tag: str) -> bytes:
    """``jpeg`` with a comment segment (``FFFE``) holding ``tag`` inserted after SOI: same pixels, new bytes.

    Raises:
        ValueError: ``jpeg`` does not start with a JPEG start-of-image marker, or ``tag`` is too long.
    """
    return b"".join(unique_jpeg_parts(jpeg, tag))


def unique_jpeg_parts(jpeg: bytes, tag: str) -> tuple[bytes, memoryview]:
    """:func:`unique_jpeg` as two buffers (SOI + comment, then a view of the rest): nothing is copied."""
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG (no FFD8 start-of-image marker); unique_jpeg only handles JPEG frames")
    payload = tag.encode("utf-8")
    if len(payload) > 65000:
        raise ValueError(f"tag is {len(payload)} bytes; a JPEG comment holds at most 65533")
    return b"\xff\xd8\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload, memoryview(jpeg)[2:]


@dataclass(frozen=True)
class Frame:
    """One pre-rendered frame: the camera that sends it, its JPEG bytes, the payloads drawn in it."""

    camera_id: str
    image: bytes
    payloads: tuple[str, ...]


def _render_one(job: tuple[int, str, tuple[str, ...], tuple[int, int]]) -> bytes:
    from local.frames import render_frame

    seed, _camera, payloads, size = job
    return render_frame(list(payloads), seed=seed, size=size)


def ticket_payload(i: int, cinema: str = "BENCH", room: str = "1") -> str:
    """A valid ticket payload (the compact ``TKT:`` form of ``ingest.tickets``) for ticket number ``i``."""
    return f"TKT:{cinema}:R{int(room):02d}:S20260101-{19 + i % 4}00:T{i:07d}:A{i % 30}"


def render_frameset(
    out_dir: Path,
    cameras: Sequence[str],
    n: int = 60,
    size: tuple[int, int] = (960, 540),
    processes: int = 2,
    seed: int = 1,
) -> list[Frame]:
    """Render ``n`` frames (70 % one ticket, 10 % two, 20 % no code) to ``out_dir`` with a manifest.

    Frames are spread over ``cameras`` in turn.  Rendering runs in ``processes`` processes.
    """
    jobs = []
    for i in range(n):
        k = i % 10
        payloads = () if k < 2 else (ticket_payload(i), ticket_payload(i + n)) if k == 2 else (ticket_payload(i),)
        jobs.append((seed * 100_000 + i, cameras[i % len(cameras)], payloads, size))
    with ProcessPoolExecutor(processes) as pool:
        images = list(pool.map(_render_one, jobs, chunksize=4))
    out_dir.mkdir(parents=True, exist_ok=True)
    listed = []
    frames = []
    for (_seed, cam, payloads, _size), img in zip(jobs, images, strict=True):
        name = f"frame-{len(listed):04d}.jpg"
        (out_dir / name).write_bytes(img)
        listed.append((name, cam, payloads))
        frames.append(Frame(cam, img, payloads))
    write_manifest(out_dir, listed)
    return frames


def write_manifest(directory: Path, frames: Sequence[tuple[str, str, Sequence[str]]]) -> None:
    """Describe JPEG files already in ``directory`` as a frame set: ``(file name, camera id, payloads)`` each."""
    manifest = [{"file": name, "camera_id": cam, "payloads": list(payloads)} for name, cam, payloads in frames]
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1))


def load_frameset(directory: Path) -> list[Frame]:
    """The frames of a set written by :func:`render_frameset` or described by :func:`write_manifest`.

    Raises:
        FileNotFoundError: ``directory`` has no manifest (render one first).
    """
    manifest = json.loads((directory / MANIFEST).read_text())
    return [Frame(m["camera_id"], (directory / m["file"]).read_bytes(), tuple(m["payloads"])) for m in manifest]


# ------------------------------------------------------------------------------------------- load


@dataclass
class Sent:
    """One request as the client saw it: start (s since the run began), latency (s), final status."""

    start: float
    latency: float
    status: int
    attempts: int
    frame_ids: list[str] = field(default_factory=list)
    read_ids: list[str] = field(default_factory=list)
    reads: int = 0


@dataclass
class LoadResult:
    """Everything a run sent and what came back (``summary()`` for the figures)."""

    seconds: float
    requests: list[Sent]
    cpu_s: float = 0.0
    """CPU time (user + system) this process spent during the run, seconds: the load generator's own cost."""

    def summary(self) -> dict:
        """Requests, status counts, acknowledged frames and reads, frames/s, latency percentiles (ms)."""
        ok = [r for r in self.requests if r.status == 200]
        lat = sorted(r.latency for r in ok)
        statuses = Counter(r.status for r in self.requests)
        return {
            "seconds": round(self.seconds, 2),
            "requests": len(self.requests),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "frames_ok": sum(len(r.frame_ids) for r in ok),
            "reads_ok": sum(r.reads for r in ok),
            "retries": sum(r.attempts - 1 for r in self.requests),
            "frames_per_s": round(sum(len(r.frame_ids) for r in ok) / self.seconds, 2) if self.seconds else 0.0,
            "latency_ms_p50": round(percentile(lat, 0.50) * 1000, 1),
            "latency_ms_p99": round(percentile(lat, 0.99) * 1000, 1),
            "latency_ms_mean": round(statistics.fmean(lat) * 1000, 1) if lat else 0.0,
            "client_cpu_ms_per_request": round(self.cpu_s * 1000 / len(self.requests), 3) if self.requests else 0.0,
        }

    def acknowledged_frame_ids(self) -> list[str]:
        return [fid for r in self.requests if r.status == 200 for fid in r.frame_ids]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def parse_response_head(head: bytes) -> tuple[int, int, bool]:
    """Status, ``Content-Length`` and will-close of a response head (the bytes before its blank line).

    Only the three fields a keep-alive client needs are read (no header dictionary): this runs once
    per request on the cores the measured server uses.

    Raises:
        ValueError: the status line is not ``HTTP/1.x <number> ...``, or there is no valid ``Content-Length``.
    """
    lines = head.split(b"\r\n")
    fields = lines[0].split(b" ", 2)
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
    try:
        status = int(fields[1])
    except ValueError:
        raise ValueError(f"response status is not a number: {lines[0][:80]!r}") from None
    length, close = None, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise ValueError(f"Content-Length is not a number: {value[:40]!r}") from None
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    if length is None or length < 0:
        raise ValueError("response without Content-Length" if length is None else f"Content-Length {length} < 0")
    return status, length, close


class Connection:
    """A minimal HTTP/1.1 keep-alive client for ``POST`` (the load generator's cameras).

    The load generator shares the machine's cores with the server it measures, so it avoids
    ``http.client``'s per-request cost (e-mail header parsing, several sends): one ``sendmsg`` per
    request with ``TCP_NODELAY``, and a response parser that reads only the status, ``Content-Length``
    and ``Connection``.  Not thread-safe: one per sending thread.

    Raises (from :meth:`post`): ``OSError`` (connection refused, reset, timed out) or ``ValueError``
    (a response that is not HTTP/1.x with a ``Content-Length``).
    """

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""

    def post(self, path: bytes, headers: bytes, body: Sequence[bytes | memoryview]) -> tuple[int, bytes, bool]:
        """Send one request (``headers``: CRLF-terminated lines; ``body``: its buffers, sent without
        joining them) and return status, body, will-close."""
        length = sum(len(part) for part in body)
        self._send_all([b"POST " + path + b" HTTP/1.1\r\n" + headers + b"Content-Length: %d\r\n\r\n" % length, *body])
        while (end := self._buf.find(b"\r\n\r\n")) < 0:
            if len(self._buf) > MAX_HEAD_BYTES:
                raise ValueError(f"no end of the response head in the first {len(self._buf)} bytes")
            self._recv()
        status, length, close = parse_response_head(self._buf[:end])
        self._buf = self._buf[end + 4 :]
        while len(self._buf) < length:
            self._recv()
        payload, self._buf = self._buf[:length], self._buf[length:]
        return status, payload, close

    def _send_all(self, buffers: list) -> None:
        views = [memoryview(b) for b in buffers]
        while views:
            sent = self.sock.sendmsg(views)
            while views and sent >= len(views[0]):
                sent -= len(views.pop(0))
            if sent:
                views[0] = views[0][sent:]

    def _recv(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        self._buf += chunk

    def close(self) -> None:
        self.sock.close()


class LoadGenerator:
    """Posts frames with ``concurrency`` keep-alive connections until a count or a deadline is reached.

    Args:
        url: the server's base URL (``http://127.0.0.1:8080``).
        keys: camera id -> API key.
        frames: the frames to cycle through (each request gets unique bytes, see :func:`unique_jpeg`).
        tag: makes this run's frames differ from another run's (default: the start time).
        rate: requests per second to aim for (open loop); ``None`` = as fast as the server answers.
        retry_until_s: keep retrying a failed request (connection error, malformed answer, 429, 503)
            this long after the run's deadline, like a camera that re-sends what was not acknowledged.
        on_request: called with each finished :class:`Sent` (from the sending thread).

    Thread-safety: ``run`` once per instance.
    """

    def __init__(
        self,
        url: str,
        keys: dict[str, str],
        frames: Sequence[Frame],
        *,
        concurrency: int = 4,
        tag: str | None = None,
        rate: float | None = None,
        timeout_s: float = 60.0,
        retry_until_s: float = 0.0,
        on_request: Callable[[Sent], None] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if not frames:
            raise ValueError("no frames to send; render a frame set first")
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.keys = keys
        self.frames = list(frames)
        self.concurrency = concurrency
        self.tag = tag or format_ts(now_utc())
        self.rate = rate
        self.timeout_s = timeout_s
        self.retry_until_s = retry_until_s
        self.on_request = on_request
        self.stop = threading.Event()
        self.started = 0.0
        """``time.monotonic()`` when :meth:`run` began (``Sent.start`` is relative to it)."""
        self._next = 0
        self._lock = threading.Lock()

    def _take(self, max_requests: int | None) -> int | None:
        with self._lock:
            i = self._next
            if max_requests is not None and i >= max_requests:
                return None
            self._next += 1
            return i

    def request_body(self, i: int) -> tuple[str, tuple[bytes, memoryview]]:
        """Camera id and unique JPEG of request number ``i`` (deterministic for a given tag), as buffers."""
        f = self.frames[i % len(self.frames)]
        return f.camera_id, unique_jpeg_parts(f.image, f"{self.tag}#{i}")

    def run(self, seconds: float | None = None, max_requests: int | None = None) -> LoadResult:
        """Send until ``seconds`` have passed or ``max_requests`` were sent (at least one must be given)."""
        if seconds is None and max_requests is None:
            raise ValueError("give seconds or max_requests: a load run must be bounded")
        missing = sorted({f.camera_id for f in self.frames} - set(self.keys))
        if missing:
            raise ValueError(f"no API key for camera(s) {missing} (keys has {sorted(self.keys)})")
        cpu0 = time.process_time()
        t0 = self.started = time.monotonic()
        deadline = t0 + seconds if seconds is not None else float("inf")
        sent: list[Sent] = []
        sent_lock = threading.Lock()

        def worker() -> None:
            conn: Connection | None = None
            while not self.stop.is_set():
                if time.monotonic() >= deadline:
                    break
                i = self._take(max_requests)
                if i is None:
                    break
                if self.rate:
                    due = t0 + i / self.rate
                    if due >= deadline:  # an open-loop request due after the run is not sent
                        break
                    wait = due - time.monotonic()
                    if wait > 0 and self.stop.wait(wait):
                        break
                conn, s = self._send(conn, i, t0, deadline)
                with sent_lock:
                    sent.append(s)
                if self.on_request:
                    self.on_request(s)
            if conn:
                conn.close()

        threads = [threading.Thread(target=worker, name=f"loadgen-{k}", daemon=True) for k in range(self.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent.sort(key=lambda s: s.start)
        return LoadResult(time.monotonic() - t0, sent, time.process_time() - cpu0)

    def _send(self, conn: Connection | None, i: int, t0: float, deadline: float) -> tuple[Connection | None, Sent]:
        camera, body = self.request_body(i)
        headers = (
            f"Host: {self.host}:{self.port}\r\nx-api-key: {self.keys[camera]}\r\nContent-Type: image/jpeg\r\n"
            f"X-Captured-At: {format_ts(now_utc())}\r\n"
        ).encode("latin-1")
        start = time.monotonic()
        sent = Sent(start - t0, 0.0, 0, 0)
        attempts = 0
        status = 0
        while True:
            attempts += 1
            try:
                if conn is None:
                    conn = Connection(self.host, self.port, self.timeout_s)
                status, payload, will_close = conn.post(b"/upload", headers, body)
                if will_close:
                    conn.close()
                    conn = None
                if status == 200:
                    _acknowledge(sent, payload)
            except (OSError, ValueError):
                if conn:
                    conn.close()
                conn, status = None, 0
            if status not in (0, *RETRY_STATUSES):
                break
            if time.monotonic() >= deadline + self.retry_until_s or self.stop.is_set():
                break
            if self.stop.wait(min(1.0, 0.05 * attempts)):
                break
        sent.latency, sent.status, sent.attempts = time.monotonic() - start, status, attempts
        return conn, sent


def _acknowledge(sent: Sent, payload: bytes) -> None:
    """Fill ``sent``'s frame and read ids from a 200 answer's JSON body.

    Raises:
        ValueError: the body is not JSON of the upload answer's shape (treated as a malformed response).
    """
    try:
        frames = orjson.loads(payload).get("frames", [])
        frame_ids = [f["frame_id"] for f in frames]
        read_ids = [c["read_id"] for f in frames for c in f.get("codes", [])]
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"a 200 answer that is not an upload acknowledgement ({e!r}): {payload[:80]!r}") from e
    sent.frame_ids, sent.read_ids, sent.reads = frame_ids, read_ids, len(read_ids)


# ------------------------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m local.loadgen",
        description="Post pre-rendered frames to a camera API (bounded by --seconds and/or --max-requests) "
        "and write what happened as JSON.",
    )
    p.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--keys", type=Path, required=True, help='JSON file {"camera_id": "api key", ...}')
    p.add_argument("--frames", type=Path, required=True, help="frame set directory (render_frameset)")
    p.add_argument("--concurrency", type=int, default=4, help="parallel keep-alive connections")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--max-requests", type=int, default=None, help="stop after this many requests")
    p.add_argument("--rate", type=float, default=None, help="target requests/s (default: as fast as answered)")
    p.add_argument("--tag", default=None, help="makes this run's frame ids unique (default: start time)")
    p.add_argument("--out", type=Path, required=True, help="result JSON (summary + every request)")
    args = p.parse_args(argv)
    if args.seconds is None and args.max_requests is None:
        p.error("give --seconds or --max-requests: a load run must be bounded")
    keep_freed_buffers()  # a unique copy of a frame per request: keep the memory, skip the page faults
    gen = LoadGenerator(
        args.url,
        json.loads(args.keys.read_text()),
        load_frameset(args.frames),
        concurrency=args.concurrency,
        rate=args.rate,
        tag=args.tag,
    )
    result = gen.run(args.seconds, args.max_requests)
    doc = {"summary": result.summary(), "requests": [asdict(r) for r in result.requests]}
    args.out.write_text(json.dumps(doc))
    print(json.dumps(result.summary()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
