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

    It has no thread of its own (leader/follower): the caller that finds no write in progress becomes
    the leader and writes what is waiting, group after group, until nothing is; callers arriving
    meanwhile only queue their records and learn the outcome from their future (the worker-pipe readers
    of ``local.prefork`` go straight back to their pipe).  A thread hand-off per request is a context
    switch that preempts a decoding worker on a busy machine.
    """

    def __init__(self, store: SqliteStore, max_group: int = 64) -> None:
        self.store = store
        self.max_group = max_group
        self._waiting: list[tuple[Sequence[StreamEntry], Sequence[QueueMessage], Future]] = []
        self._writing = False
        self._closed = False
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self.groups = self.requests = 0

    def start(self) -> GroupCommitter:
        """Open for commits (kept for symmetry with :meth:`stop`; there is no thread to start)."""
        return self

    def commit(self, entries: Sequence[StreamEntry], messages: Sequence[QueueMessage]) -> None:
        """Write durably (stream first, then queue, as the handler does); raises ``PublishError``."""
        self.submit(entries, messages).result()

    def submit(self, entries: Sequence[StreamEntry], messages: Sequence[QueueMessage]) -> Future:
        """Queue a commit: the future's result is None once the records are durable.

        Returns at once if another thread is writing (it writes these too), or after writing them
        itself.  The future fails with ``PublishError`` if they could not be written.  Its callbacks
        run in the writing thread: keep them short (the worker-pipe acknowledgement in
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
            self._waiting.append((entries, messages, done))
            if self._writing:
                return done
            self._writing = True
        self._lead()
        return done

    def stop(self) -> None:
        """Refuse new commits and wait for the write in progress (queued ones are written by it)."""
        with self._lock:
            self._closed = True
            while self._writing:
                self._idle.wait()

    def alive(self) -> bool:
        """Whether commits are accepted."""
        return not self._closed

    def _lead(self) -> None:
        try:
            while True:
                with self._lock:
                    group, self._waiting = self._waiting[: self.max_group], self._waiting[self.max_group :]
                    if not group:
                        self._writing = False
                        self._idle.notify_all()
                        return
                self._write(group)
        except BaseException:  # (not from _write, which answers every future): let the next caller lead
            with self._lock:
                self._writing = False
                self._idle.notify_all()
            raise

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
