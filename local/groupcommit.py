"""Group commit for the local pipeline: what many concurrent requests publish, made durable together.

The decoding workers run the Lambda handler with :class:`RecordingPorts`, which only *record* what
the handler publishes.  The parent process hands each request's records to one
:class:`GroupCommitter`, which writes the records of every request waiting at that moment in one
transaction (stream entries and queue messages together), and only then lets the request answer 200.

Why: ``stream.sqlite`` commits with ``synchronous=FULL`` (an fsync per transaction, about 7 ms on
the reference machine).  With a transaction per request, each worker spent as long waiting for the
disk as decoding, and SQLite's single writer lock serialised those waits: the cores sat half idle.
The durability promise is unchanged: 200 means the records are on disk.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future

from stream.ports import PublishError, QueueMessage, StreamEntry
from stream.sqlite import SqliteStore

log = logging.getLogger(__name__)


class RecordingPorts:
    """``StreamWriter`` + ``MessageQueue`` that keep what one request publishes (worker side)."""

    def __init__(self) -> None:
        self.entries: list[StreamEntry] = []
        self.messages: list[QueueMessage] = []

    def put(self, entries: Sequence[StreamEntry]) -> None:
        self.entries.extend(entries)

    def send(self, messages: Sequence[QueueMessage]) -> None:
        self.messages.extend(messages)

    def take(self) -> tuple[list[StreamEntry], list[QueueMessage]]:
        """What was published since the last call, and forget it."""
        out = (self.entries, self.messages)
        self.entries, self.messages = [], []
        return out


class GroupCommitter:
    """Makes what concurrent requests published durable together: one transaction for stream and queue.

    :meth:`commit` blocks until the records are in ``store`` (``synchronous=FULL``: a returned commit
    survives a kill or power cut) and raises ``PublishError`` if they could not be written.  While one
    group is being written the next accumulates, so a busy server does one fsync per *group* of
    requests instead of one per request.  Thread-safe.
    """

    def __init__(self, store: SqliteStore, max_group: int = 64) -> None:
        self.store = store
        self.max_group = max_group
        self._pending: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._closed = False
        self._lock = threading.Lock()
        self.groups = self.requests = 0

    def start(self) -> GroupCommitter:
        self._thread.start()
        return self

    def commit(self, entries: Sequence[StreamEntry], messages: Sequence[QueueMessage]) -> None:
        """Write durably (stream first, then queue, as the handler does); raises ``PublishError``."""
        self.submit(entries, messages).result()

    def submit(self, entries: Sequence[StreamEntry], messages: Sequence[QueueMessage]) -> Future:
        """Queue a commit without waiting: the future's result is None once the records are durable.

        The future fails with ``PublishError`` if they could not be written.  Callbacks added to it
        run in the committer thread: keep them short (the worker-pipe acknowledgement in
        ``local.prefork`` is one small send).

        Raises:
            PublishError: the committer is stopped (the pipeline is shutting down).
        """
        done: Future = Future()
        if not entries and not messages:
            done.set_result(None)
            return done
        with self._lock:
            if self._closed:
                raise PublishError("the local pipeline is stopping; retry after the restart", failed=len(entries))
            self._pending.put((entries, messages, done))
        return done

    def stop(self) -> None:
        """Finish the queued commits and stop the thread."""
        with self._lock:
            self._closed = True
            self._pending.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while True:
            item = self._pending.get()
            group = [] if item is None else [item]
            while item is not None and len(group) < self.max_group:
                try:
                    item = self._pending.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    group.append(item)
            if group:
                self._write(group)
            if item is None:
                return

    def _write(self, group: list) -> None:
        try:
            self.store.publish(
                [e for entries, _m, _f in group for e in entries], [m for _e, messages, _f in group for m in messages]
            )
        except Exception as e:  # PublishError (or a bug): every request of the group answers 503
            err = e if isinstance(e, PublishError) else PublishError(f"group commit failed: {e}")
            for *_x, done in group:
                done.set_exception(err)
            return
        self.groups += 1
        self.requests += len(group)
        for *_x, done in group:
            done.set_result(None)


class CommittingStream:
    """A ``StreamWriter`` that publishes through a :class:`GroupCommitter` (the box-office forwarder's port)."""

    def __init__(self, committer: GroupCommitter) -> None:
        self.committer = committer

    def put(self, entries: Sequence[StreamEntry]) -> None:
        self.committer.commit(entries, ())


def unavailable_response(error: PublishError) -> dict:
    """The handler's answer when publishing fails: 503 + ``Retry-After`` (safe to retry: ids are stable)."""
    from ingest.handler import unavailable

    log.error("group commit failed; answering 503: %s", error)
    return unavailable()
