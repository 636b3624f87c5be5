"""The camera API as pre-forked worker processes on one listening socket (the parent's side).

The parent binds the socket, then starts ``workers`` processes (``multiprocessing`` *spawn*: safe
while the parent runs threads, and the socket is handed over as an inherited descriptor).  Each
worker accepts connections and runs the handler itself (``local.worker``), so the parent's work per
request is one small pipe message: the records the request published, handed to the
:class:`~local.groupcommit.GroupCommitter`, and the acknowledgement once they are durable.

The parent also supervises: a worker that dies is logged and replaced (same slot, same counters);
``stop`` drains every worker (requests in progress finish and commit, idle keep-alive connections
close) before it returns.  Each worker's pipe has its own reader thread (a blocking read: cheaper per
message than polling every pipe), and one supervisor thread watches for exits.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from local.groupcommit import GroupCommitter
from local.worker import COUNTERS, WorkerSpec, from_wire, send_message
from local.worker import run as worker_run
from stream.ports import PublishError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
"""How long the workers may take to import and report ready (a spawn costs about a second)."""
STOP_TIMEOUT_S = 60.0
"""How long ``stop`` waits for a draining worker before killing it."""
BIND_RETRY_S = 3.0
"""How long a busy port is retried (the workers of a just-killed server on the same port are exiting)."""
RESTART_BACKOFF_S = 1.0


@dataclass
class _Worker:
    slot: int
    process: Any  # multiprocessing.Process (spawn context)
    conn: Connection
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    ready: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    reader: threading.Thread | None = None


class PreforkServer:
    """``workers`` processes serving the camera API on ``address``; commits through ``committer``.

    Args:
        address: (host, port) to listen on; port 0 picks a free port (see :attr:`server_address`).
        workers: number of worker processes (one request decoding at a time in each).
        registry_path: the camera registry file every worker reads (re-read when it changes).
        committer: the group committer every request's records go through before its 200.
        health: the ``/health`` document (the workers ask for it over their pipes).
        max_in_flight: requests one worker takes at once; more get 429.
    """

    def __init__(
        self,
        address: tuple[str, int],
        workers: int,
        registry_path: str,
        committer: GroupCommitter,
        health: Callable[[], dict],
        max_in_flight: int = 8,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.address = address
        self.n = workers
        self.registry_path = registry_path
        self.committer = committer
        self.health = health
        self.max_in_flight = max_in_flight
        self.restarts = 0
        self._ctx = multiprocessing.get_context("spawn")
        self._counters = self._ctx.RawArray("q", workers * len(COUNTERS))
        self._workers: dict[int, _Worker] = {}
        self._stopping = False
        self._socket: socket.socket | None = None
        self._supervisor = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)
        self.server_address: tuple[str, int] = address

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> PreforkServer:
        """Bind, start the workers and wait until each reports ready.

        Raises:
            OSError: the address cannot be bound (e.g. the port is in use).
            RuntimeError: a worker exited or did not get ready in time (its stderr says why).
        """
        self._socket = _bind(self.address)
        self.server_address = self._socket.getsockname()[:2]
        for slot in range(self.n):
            self._spawn(slot)
        self._supervisor.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        for w in list(self._workers.values()):
            while not w.ready.wait(0.1):
                if not w.process.is_alive() or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"worker {w.slot} did not start (exit code {w.process.exitcode}); see the messages above"
                    )
        log.info("%d worker processes accept on %s", self.n, self.url)
        return self

    def _spawn(self, slot: int) -> None:
        assert self._socket is not None
        parent_end, child_end = self._ctx.Pipe()
        spec = WorkerSpec(slot, self.registry_path, self.max_in_flight, os.getpid(), self.n)
        self._counters[slot * len(COUNTERS) + COUNTERS.index("connections")] = 0  # a dead worker's are gone
        p = self._ctx.Process(
            target=worker_run, args=(spec, self._socket, child_end, self._counters), name=f"monuv-worker-{slot}"
        )
        p.daemon = True
        p.start()
        child_end.close()
        w = _Worker(slot, p, parent_end)
        w.reader = threading.Thread(target=self._read_pipe, args=(w,), name=f"worker-pipe-{slot}", daemon=True)
        w.reader.start()
        self._workers[slot] = w

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Drain: every worker stops accepting, finishes its requests in progress (their records are
        committed) and closes idle keep-alive connections; then the dispatcher stops.  Workers that
        do not finish within ``timeout_s`` are killed."""
        self._stopping = True
        if self._socket is not None:
            self._socket.close()  # the workers hold their own copies until they drain
        workers = list(self._workers.values())
        for w in workers:
            self._answer(w, ("drain",))
        # wait on the sentinels only: the supervisor reaps the processes (two threads waiting for the
        # same child race in waitpid, and the loser would take an exiting worker for a live one)
        pending = {w.process.sentinel: w for w in workers}
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for s in wait(list(pending), timeout=max(0.0, deadline - time.monotonic())):
                pending.pop(s)
        for w in pending.values():
            log.warning("worker %d did not drain within %.0f s; killing it", w.slot, timeout_s)
            w.process.kill()
        if self._supervisor.is_alive():
            self._supervisor.join(timeout=10)
        for w in workers:
            w.process.join(5)  # the supervisor has stopped: nothing else waits for these now
            if w.reader is not None:
                w.reader.join(5)  # it reads to the end of the exited worker's pipe
            w.conn.close()
        self._workers.clear()

    def alive(self) -> int:
        """Worker processes running now."""
        return sum(1 for w in list(self._workers.values()) if w.process.is_alive())

    def pids(self) -> list[int]:
        """Process ids of the current workers, by slot."""
        return [w.process.pid for _slot, w in sorted(self._workers.items())]

    def counters(self) -> dict[str, int]:
        """Request counters summed over every worker (and every process a slot ever had)."""
        k = len(COUNTERS)
        return {name: sum(self._counters[s * k + i] for s in range(self.n)) for i, name in enumerate(COUNTERS)}

    def per_worker(self, name: str) -> list[int]:
        """One counter (``COUNTERS``) of each worker slot."""
        k, i = len(COUNTERS), COUNTERS.index(name)
        return [self._counters[s * k + i] for s in range(self.n)]

    # -- pipes and supervision ---------------------------------------------------------------
    def _supervise(self) -> None:
        """Restart workers that exit (until stopping); return once every worker has exited."""
        while True:
            by_sentinel = {w.process.sentinel: w for w in self._workers.values()}
            if self._stopping and not any(w.process.is_alive() for w in self._workers.values()):
                return
            for ready in wait(list(by_sentinel), timeout=0.5):
                self._reap(by_sentinel[ready])

    def _read_pipe(self, w: _Worker) -> None:
        """Serve one worker's messages until its end of the pipe closes (it exited)."""
        while True:
            try:
                msg = w.conn.recv()
            except (EOFError, OSError):  # the worker is exiting: the supervisor reaps it
                return
            self._receive(w, msg)

    def _receive(self, w: _Worker, msg: tuple) -> None:
        kind = msg[0]
        if kind == "commit":
            rid = msg[1]
            entries, messages = from_wire(msg[2], msg[3])
            try:
                fut = self.committer.submit(entries, messages)
            except PublishError as e:
                self._answer(w, ("ack", rid, str(e)))
                return
            fut.add_done_callback(lambda f: self._answer(w, ("ack", rid, _error_text(f))))
        elif kind == "health":
            try:
                doc = self.health()
            except Exception as e:  # never leave a worker waiting: report the failure as the document
                log.exception("health document failed")
                doc = {"status": "degraded", "error": f"health check failed: {e}"}
            self._answer(w, ("health", msg[1], doc))
        elif kind == "ready":
            w.ready.set()
        else:
            log.error("worker %d sent an unknown message %r", w.slot, kind)

    def _answer(self, w: _Worker, msg: tuple) -> None:
        with contextlib.suppress(OSError), w.send_lock:  # a dead worker's requests are gone anyway
            send_message(w.conn, msg)

    def _reap(self, w: _Worker) -> None:
        w.process.join(1)
        if w.process.is_alive():
            return
        if self._workers.get(w.slot) is not w:
            return
        if self._stopping:
            return  # stop() closes the pipe once its reader has finished
        code = w.process.exitcode
        log.error("worker %d (pid %s) exited with code %s; starting a new one", w.slot, w.process.pid, code)
        if w.reader is not None:
            w.reader.join(5)  # the dead worker's pipe is at its end: its reader returns
        w.conn.close()
        wait_s = RESTART_BACKOFF_S - (time.monotonic() - w.started)
        if wait_s > 0:  # a worker that dies at once (broken install) must not spin
            time.sleep(wait_s)
        self.restarts += 1
        self._spawn(w.slot)


def _error_text(f: Any) -> str | None:
    e = f.exception()
    return None if e is None else str(e)


def _bind(address: tuple[str, int]) -> socket.socket:
    """A listening TCP socket on ``address`` (SO_REUSEADDR); a busy port is retried for ``BIND_RETRY_S``."""
    deadline = time.monotonic() + BIND_RETRY_S
    while True:
        try:
            return socket.create_server(address, backlog=128)
        except OSError as e:
            if e.errno != errno.EADDRINUSE or time.monotonic() > deadline or address[1] == 0:
                raise
            time.sleep(0.1)
