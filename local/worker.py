"""One worker process of ``monuv-qr serve``: accepts camera connections and runs the Lambda handler itself.

Every worker holds the same listening socket (inherited from the parent, ``local.prefork``) and runs a
:class:`~local.server.CameraApiServer` on it: whichever worker is free accepts the next connection,
parses the HTTP request, builds the API Gateway proxy event and calls ``ingest.handler.handler`` in
this process -- no image bytes cross a process boundary.  The handler publishes to
:class:`~local.groupcommit.RecordingPorts`; the worker sends what one request published (a few hundred
bytes) to the parent's group committer over its pipe and answers 200 only after the parent
acknowledges the records are on disk.  Durability is the same as one SQLite transaction per request.

Concurrency inside a worker: one thread per connection, but one handler call at a time (the
recording ports collect one request's records, and Powertools' logger keeps per-request keys in
module state), so a thread waiting for its commit
lets the next request decode.  Counters live in shared memory that the parent sums for ``/health``
and the status line.  ``GET /health`` is answered with the parent's document, asked over the pipe.

Lifetime: the worker dies with its parent (Linux ``PR_SET_PDEATHSIG``; elsewhere it notices the
closed pipe), ignores SIGINT (the parent coordinates a Ctrl-C), and drains on the parent's ``drain``
message or on SIGTERM: stop accepting, finish requests in progress, close idle keep-alive
connections, exit.
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import logging
import os
import pickle
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

from local.malloc import keep_freed_buffers
from stream.ports import PublishError, QueueMessage, StreamEntry

log = logging.getLogger(__name__)

COUNTERS = ("requests", "frames", "reads", "errors", "busy", "connections")
"""Per-worker counters in shared memory (one row of int64 per worker slot), summed by the parent.
``connections`` is a gauge (open connections now); the others only grow."""

BALANCE_WAIT_S = 0.02
"""How long a worker leaves a new connection to a sibling that holds fewer connections (then takes it)."""

COMMIT_TIMEOUT_S = 60.0
"""How long a request waits for the parent's commit acknowledgement before answering 503."""

HEALTH_TIMEOUT_S = 10.0

BUSY_WAIT_S = 5.0
"""How long a request waits for an in-flight slot before the worker answers 429."""

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to start (picklable: passed to a spawned process)."""

    slot: int
    """Index of the worker: its row in the shared counters."""
    registry_path: str
    max_in_flight: int
    """Requests one worker takes at once (decoding or waiting for their commit); more get 429."""
    parent_pid: int
    workers: int = 1
    """How many worker slots share the socket (for balancing accepts)."""


# ------------------------------------------------------------------------------------------- parent link


def send_message(conn: Connection, msg: tuple) -> None:
    """Send one pipe message (a tuple of plain values).

    ``Connection.send`` would pickle with multiprocessing's ``ForkingPickler``, which copies its
    reducer table on every call; these messages hold no descriptors, so plain ``pickle`` does
    (``Connection.recv`` reads either).
    """
    conn.send_bytes(pickle.dumps(msg, pickle.HIGHEST_PROTOCOL))


def to_wire(entries: Sequence[StreamEntry], messages: Sequence[QueueMessage]) -> tuple[list, list]:
    """A request's records as tuples of str/bytes (cheaper to pickle than the frozen dataclasses)."""
    return [(e.partition_key, e.data) for e in entries], [(m.body, m.group_id, m.dedup_id) for m in messages]


def from_wire(entries: list, messages: list) -> tuple[list[StreamEntry], list[QueueMessage]]:
    """The inverse of :func:`to_wire` (in the parent)."""
    return [StreamEntry(*e) for e in entries], [QueueMessage(*m) for m in messages]


class _Reply:
    """One awaited answer from the parent: set once by the reader thread, waited for by one request."""

    __slots__ = ("_done", "error", "value")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self.value: Any = None
        self.error: BaseException | None = None

    def set(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error
        self._done.release()

    def wait(self, timeout_s: float) -> bool:
        return self._done.acquire(timeout=timeout_s)


class ParentLink:
    """The worker's end of its pipe to the parent: commit requests, health questions, the drain order.

    A reader thread matches answers to waiting requests.  If the parent goes away (EOF), every
    waiting commit fails with ``PublishError`` (the camera gets 503 and retries) and ``gone`` is set.
    Thread-safe.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._send_lock = threading.Lock()
        self._waiting: dict[int, _Reply] = {}
        self._ids = itertools.count(1)
        self.drain = threading.Event()
        """Set when the parent asks this worker to drain, or is gone."""
        self.gone = False
        self._reader = threading.Thread(target=self._read, name="parent-link", daemon=True)

    def start(self) -> ParentLink:
        self._reader.start()
        return self

    def send(self, msg: tuple) -> None:
        with self._send_lock:
            send_message(self.conn, msg)

    def _ask(self, kind: str, *payload: Any, timeout_s: float) -> Any:
        reply = _Reply()
        rid = next(self._ids)
        self._waiting[rid] = reply
        try:
            if self.gone:
                raise PublishError("the server's main process is gone; retry the same request later")
            try:
                self.send((kind, rid, *payload))
            except OSError as e:
                raise PublishError(f"the server's main process is unreachable ({e}); retry later") from e
            if not reply.wait(timeout_s):
                raise PublishError(f"no answer from the server's main process within {timeout_s:.0f} s")
            if reply.error is not None:
                raise reply.error
            return reply.value
        finally:
            self._waiting.pop(rid, None)

    def commit(self, entries: Sequence[StreamEntry], messages: Sequence[QueueMessage]) -> None:
        """Have the parent's group committer write these records; returns once they are durable.

        Raises:
            PublishError: the parent could not write them, is unreachable, or did not answer in time.
        """
        if not entries and not messages:
            return
        error = self._ask("commit", *to_wire(entries, messages), timeout_s=COMMIT_TIMEOUT_S)
        if error is not None:
            raise PublishError(error, failed=len(entries))

    def health(self) -> dict:
        """The parent's ``/health`` document (``degraded`` if the parent does not answer)."""
        try:
            return self._ask("health", timeout_s=HEALTH_TIMEOUT_S)
        except PublishError as e:
            return {"status": "degraded", "error": str(e)}

    def _read(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "drain":
                self.drain.set()
                continue
            reply = self._waiting.pop(msg[1], None)  # ("ack", id, error | None) or ("health", id, doc)
            if reply is not None:
                reply.set(msg[2])
        self.gone = True
        for rid in list(self._waiting):
            reply = self._waiting.pop(rid, None)
            if reply is not None:
                reply.set(error=PublishError("the server's main process is gone; retry the same request later"))
        self.drain.set()


# ------------------------------------------------------------------------------------------- requests


class Invoker:
    """Runs the Lambda handler for one request at a time and commits what it published (thread-safe)."""

    def __init__(self, link: ParentLink, counters: Any, spec: WorkerSpec) -> None:
        import ingest.handler
        from local.groupcommit import RecordingPorts

        self.handler = ingest.handler.handler
        self.link = link
        self.ports = RecordingPorts()
        self._handler_lock = threading.Lock()
        self._in_flight = threading.BoundedSemaphore(spec.max_in_flight)
        self._counters = counters
        self._base = spec.slot * len(COUNTERS)
        self._count_lock = threading.Lock()

    def __call__(self, event: dict) -> dict:
        """The handler's response to ``event``: 200 only after its records are committed; 429 if busy."""
        from ingest.handler import error_body, json_response
        from local.groupcommit import unavailable_response

        if not self._in_flight.acquire(timeout=BUSY_WAIT_S):
            self._add(requests=1, busy=1)
            busy = error_body("too_many_requests", "server busy; retry in a second")
            return json_response(429, busy, {"Retry-After": "1"})
        try:
            with self._handler_lock:  # the ports record one request at a time; the logger's keys are module state
                self.ports.take()
                response = self.handler(event, None)
                entries, messages = self.ports.take()
            try:
                self.link.commit(entries, messages)
            except PublishError as e:
                response = unavailable_response(e)
        finally:
            self._in_flight.release()
        self._count(response)
        return response

    def _count(self, response: dict) -> None:
        if int(response.get("statusCode", 500)) != 200:
            self._add(requests=1, errors=1)
            return
        try:
            frames = orjson.loads(response.get("body") or "{}").get("frames", [])
        except (ValueError, AttributeError):
            frames = []
        self._add(requests=1, frames=len(frames), reads=sum(len(f.get("codes", [])) for f in frames))

    def _add(self, **kw: int) -> None:
        with self._count_lock:
            for name, v in kw.items():
                self._counters[self._base + COUNTERS.index(name)] += v


# ------------------------------------------------------------------------------------------- accepting


class WorkerServer:
    """Mixin logic for :class:`~local.server.CameraApiServer` in a worker: balanced accepts, shared gauge.

    Keep-alive connections stay with the worker that accepted them, so a worker that happened to
    win most accepts would decode most frames while its sibling idles.  A worker holding more open
    connections than the least-loaded sibling therefore leaves a pending connection alone for up to
    ``BALANCE_WAIT_S`` (the sibling accepts it); after that it accepts anyway (a sibling that is
    restarting or stuck never starves the listener).
    """

    @staticmethod
    def build(spec: WorkerSpec, workers: int, counters: Any, *args: Any, **kwargs: Any) -> Any:
        from local.server import CameraApiServer

        k = len(COUNTERS)
        gauge = COUNTERS.index("connections")
        mine = spec.slot * k + gauge
        siblings = [s * k + gauge for s in range(workers)]

        class _Balanced(CameraApiServer):
            _yield_since = 0.0
            _last_yield = 0.0

            def get_request(self):  # type: ignore[override]
                now = time.monotonic()
                if counters[mine] > min(counters[i] for i in siblings):
                    if now - self._last_yield > BALANCE_WAIT_S:  # a new pending connection
                        self._yield_since = now
                    if now - self._yield_since < BALANCE_WAIT_S:
                        self._last_yield = now
                        time.sleep(0.001)  # the socket stays readable: don't spin while the sibling accepts
                        raise BlockingIOError("left for a worker with fewer connections")
                request = super().get_request()
                counters[mine] = len(self._connections) + 1  # now, not when its thread starts: bursts balance
                return request

            def track(self, conn: socket.socket, busy: bool) -> None:
                super().track(conn, busy)
                counters[mine] = len(self._connections)

            def untrack(self, conn: socket.socket) -> None:
                super().untrack(conn)
                counters[mine] = len(self._connections)

        return _Balanced(*args, **kwargs)


# ------------------------------------------------------------------------------------------- process


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a crashed server leaves no workers behind)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            log.debug("prctl(PR_SET_PDEATHSIG) unavailable; relying on the pipe to notice the parent's exit")
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def run(spec: WorkerSpec, listen_socket: socket.socket, conn: Connection, counters: Any) -> None:
    """Entry point of a worker process (``multiprocessing`` spawn target); returns after draining."""
    die_with_parent(spec.parent_pid)
    keep_freed_buffers()  # each request allocates several buffers of hundreds of KB
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s[worker]: %(message)s")
    # metrics are disabled locally; Powertools warns on every flush of the (cleared) buffer
    warnings.filterwarnings("ignore", message="No application metrics")
    import ingest.handler
    from local.live_registry import LiveRegistry

    link = ParentLink(conn).start()
    signal.signal(signal.SIGTERM, lambda *_: link.drain.set())
    registry = LiveRegistry(Path(spec.registry_path))
    invoker = Invoker(link, counters, spec)
    ingest.handler.use(invoker.ports, invoker.ports, registry)
    server = WorkerServer.build(
        spec, spec.workers, counters, ("", 0), invoker, registry.authenticate, link.health, listen_socket=listen_socket
    )
    server.block_on_close = True  # stop() waits for the requests in progress
    server.daemon_threads = False
    server.start()
    # the ~70k objects of the imported modules live as long as the process: move them out of the cyclic
    # collector's sight, so its periodic full collections (~40 ms each in a worker) scan only request garbage
    gc.collect()
    gc.freeze()
    link.send(("ready", os.getpid()))
    link.drain.wait()
    server.stop()
    conn.close()
