"""Local durable stream and queue in one SQLite file (WAL mode): Kinesis and SQS for local mode.

* **Stream** (:class:`SqliteStore.put`, ``read``, ``head``): an append-only log of
  :class:`~stream.ports.StreamEntry` with a monotonically increasing ``seq`` (like a one-shard
  Kinesis stream), plus named consumer checkpoints committed in a transaction.  A checkpoint also
  holds an optional *pending* upper bound: a consumer records the range it is about to process
  before it writes anything, so after a crash it redoes exactly that range (a write-ahead intent).
* **Queue** (``send``, ``receive``, ``ack``, ``nack``): SQS-FIFO-like delivery -- one message in
  flight per group in order, a visibility timeout, an attempt count, and a ``dead`` state after
  ``max_attempts`` receives (the dead-letter queue).  ``send`` drops a message whose ``dedup_id`` was
  sent within :data:`DEDUP_WINDOW_S` (SQS FIFO's 5-minute de-duplication interval).

Durability: ``synchronous=FULL`` in WAL mode -- a returned ``put``/``send``/``publish`` survives a process kill
and a power cut.  Several processes may open the same file (a server writing, the ETL reading);
writers wait up to ``busy_timeout_s`` for each other.  Within a process one instance is thread-safe
(one connection serialised by a lock).

Errors: transport failures of ``put``/``send`` raise :class:`~stream.ports.PublishError` (the port
contract); everything else raises :class:`StoreError` with what was wrong and what to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from stream.ports import PublishError, QueueMessage, StreamEntry

DEDUP_WINDOW_S = 300.0
"""De-duplication window of ``send`` in seconds: SQS FIFO's 5-minute interval.
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/FIFO-queues-exactly-once-processing.html"""

DEFAULT_VISIBILITY_S = 30.0
"""Default visibility timeout of a received message (SQS default: 30 s)."""

DEFAULT_MAX_ATTEMPTS = 5
"""Receives before a message goes to the dead-letter state (SQS ``maxReceiveCount``)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stream (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    partition_key TEXT NOT NULL,
    data BLOB NOT NULL,
    arrived_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    pending_to INTEGER,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id TEXT NOT NULL,
    dedup_id TEXT NOT NULL,
    body BLOB NOT NULL,
    sent_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'ready',
    receipt TEXT,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS queue_group ON queue(group_id, state, id);
CREATE INDEX IF NOT EXISTS queue_state ON queue(state, id);
CREATE TABLE IF NOT EXISTS queue_dedup (
    dedup_id TEXT PRIMARY KEY,
    sent_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_dedup_sent ON queue_dedup(sent_at);
"""


class StoreError(RuntimeError):
    """The SQLite store cannot be used (locked too long, corrupt, not a database, disk full)."""


class DataDirLocked(StoreError):
    """Another process owns the data directory (see :class:`OwnerLock`)."""


class StreamRow(NamedTuple):
    """One stream entry as read back: position, key, bytes, and arrival time (Unix seconds)."""

    seq: int
    partition_key: str
    data: bytes
    arrived_at: float


@dataclass(frozen=True)
class Checkpoint:
    """A consumer's committed position and, while a batch is in progress, its planned end."""

    seq: int
    pending_to: int | None = None


@dataclass(frozen=True)
class Received:
    """A message handed to a consumer; settle it with ``ack(receipt)`` or ``nack(receipt)``."""

    id: int
    body: bytes
    group_id: str
    dedup_id: str
    attempts: int
    receipt: str


def _explain(e: sqlite3.Error, path: Path) -> str:
    msg = str(e)
    if "locked" in msg or "busy" in msg:
        return (
            f"SQLite store {path} is locked by another process for longer than the busy timeout ({msg}); "
            "check for a stuck process holding a write transaction, or raise busy_timeout_s"
        )
    if "not a database" in msg or "malformed" in msg or "corrupt" in msg:
        return (
            f"SQLite store {path} is corrupt or not a database ({msg}); stop every process using it, move the "
            "file (and its -wal/-shm) aside and restart, or restore it from a backup"
        )
    if "disk" in msg or "full" in msg:
        return f"SQLite store {path} cannot write: {msg}; free disk space and retry"
    return f"SQLite store {path}: {msg}"


class SqliteStore:
    """Local durable stream + queue in one SQLite file; implements ``StreamWriter`` and ``MessageQueue``.

    Args:
        path: the database file (created with its directory when missing).
        busy_timeout_s: how long a writer waits for another process's write transaction.
        visibility_s: default visibility timeout of ``receive``.
        max_attempts: receives before a message is moved to the dead state.
        clock: ``time.time``-like function (tests move time).

    Raises:
        StoreError: the file is corrupt, not a SQLite database, or cannot be created.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        busy_timeout_s: float = 10.0,
        visibility_s: float = DEFAULT_VISIBILITY_S,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        clock=time.time,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.path = Path(path)
        self.visibility_s = visibility_s
        self.max_attempts = max_attempts
        self._clock = clock
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as e:
            raise StoreError(_explain(e, self.path) if isinstance(e, sqlite3.Error) else str(e)) from e

    # ------------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE): all or nothing."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise StoreError(_explain(e, self.path)) from e
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise

    def _query(self, sql: str, args: Sequence = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                raise StoreError(_explain(e, self.path)) from e

    def close(self) -> None:
        """Close the connection (the file stays consistent whether or not this is called)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ stream

    def put(self, entries: Sequence[StreamEntry]) -> None:
        """Append entries durably, all or none (``StreamWriter``).

        Raises:
            PublishError: the store could not accept them (locked, disk full, corrupt).
        """
        self.publish(entries, ())

    def publish(self, entries: Sequence[StreamEntry], messages: Sequence[QueueMessage]) -> None:
        """Append stream entries and enqueue messages in one durable transaction: all or none.

        What :meth:`put` then :meth:`send` do, with one commit (one fsync) instead of two -- the local
        group committer writes every waiting request this way.  Messages whose ``dedup_id`` was sent
        within the window are dropped, as in :meth:`send`.

        Raises:
            PublishError: the store could not accept them (locked, disk full, corrupt); nothing was written.
        """
        if not entries and not messages:
            return
        now = self._clock()
        try:
            with self._tx() as db:
                if entries:
                    db.executemany(
                        "INSERT INTO stream(partition_key, data, arrived_at) VALUES (?, ?, ?)",
                        [(e.partition_key, bytes(e.data), now) for e in entries],
                    )
                if messages:
                    self._enqueue(db, messages, now)
        except (sqlite3.Error, StoreError) as e:
            msg = _explain(e, self.path) if isinstance(e, sqlite3.Error) else str(e)
            raise PublishError(msg, failed=len(entries) or len(messages)) from e

    def read(self, after_seq: int, limit: int = 1000) -> list[StreamRow]:
        """Up to ``limit`` entries with ``seq > after_seq``, in order."""
        rows = self._query(
            "SELECT seq, partition_key, data, arrived_at FROM stream WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [StreamRow(s, k, bytes(d), a) for s, k, d, a in rows]

    def read_range(self, after_seq: int, upto_seq: int) -> list[StreamRow]:
        """Entries with ``after_seq < seq <= upto_seq``, in order."""
        rows = self._query(
            "SELECT seq, partition_key, data, arrived_at FROM stream WHERE seq > ? AND seq <= ? ORDER BY seq",
            (after_seq, upto_seq),
        )
        return [StreamRow(s, k, bytes(d), a) for s, k, d, a in rows]

    def head(self) -> int:
        """Highest ``seq`` ever written (0 when empty; not lowered by :meth:`trim`)."""
        rows = self._query("SELECT seq FROM sqlite_sequence WHERE name = 'stream'")
        return int(rows[0][0]) if rows else 0

    def trim(self, upto_seq: int) -> int:
        """Delete entries with ``seq <= upto_seq`` (retention); returns how many were deleted."""
        with self._tx() as db:
            return db.execute("DELETE FROM stream WHERE seq <= ?", (upto_seq,)).rowcount

    def checkpoint(self, consumer: str) -> Checkpoint:
        """A consumer's checkpoint (``Checkpoint(0)`` before its first commit)."""
        rows = self._query("SELECT seq, pending_to FROM checkpoints WHERE consumer = ?", (consumer,))
        return Checkpoint(int(rows[0][0]), rows[0][1]) if rows else Checkpoint(0)

    def begin_batch(self, consumer: str, upto_seq: int) -> None:
        """Record that ``consumer`` is about to process entries up to ``upto_seq`` (write-ahead intent)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO checkpoints(consumer, seq, pending_to, updated_at) VALUES (?, 0, ?, ?) "
                "ON CONFLICT(consumer) DO UPDATE SET pending_to = excluded.pending_to, "
                "updated_at = excluded.updated_at",
                (consumer, upto_seq, self._clock()),
            )

    def commit(self, consumer: str, seq: int) -> None:
        """Durably move ``consumer``'s checkpoint to ``seq`` and clear its pending batch.

        Raises:
            StoreError: ``seq`` is behind the committed checkpoint (a second consumer with the same name?).
        """
        with self._tx() as db:
            row = db.execute("SELECT seq FROM checkpoints WHERE consumer = ?", (consumer,)).fetchone()
            if row and seq < row[0]:
                raise StoreError(
                    f"checkpoint of {consumer!r} would move back from {row[0]} to {seq}: "
                    "is another process consuming under the same name?"
                )
            db.execute(
                "INSERT INTO checkpoints(consumer, seq, pending_to, updated_at) VALUES (?, ?, NULL, ?) "
                "ON CONFLICT(consumer) DO UPDATE SET seq = excluded.seq, pending_to = NULL, "
                "updated_at = excluded.updated_at",
                (consumer, seq, self._clock()),
            )

    # ------------------------------------------------------------------ queue

    def send(self, messages: Sequence[QueueMessage]) -> None:
        """Enqueue messages durably, all or none (``MessageQueue``); duplicates within the window are dropped.

        Raises:
            PublishError: the store could not accept them.
        """
        self.publish((), messages)

    @staticmethod
    def _enqueue(db: sqlite3.Connection, messages: Sequence[QueueMessage], now: float) -> None:
        db.execute("DELETE FROM queue_dedup WHERE sent_at < ?", (now - DEDUP_WINDOW_S,))
        for m in messages:
            fresh = db.execute("INSERT OR IGNORE INTO queue_dedup(dedup_id, sent_at) VALUES (?, ?)", (m.dedup_id, now))
            if fresh.rowcount != 1:  # sent within the window: a duplicate
                continue
            db.execute(
                "INSERT INTO queue(group_id, dedup_id, body, sent_at, visible_at) VALUES (?, ?, ?, ?, ?)",
                (m.group_id, m.dedup_id, bytes(m.body), now, now),
            )

    def receive(self, max_messages: int = 10, visibility_s: float | None = None) -> list[Received]:
        """Up to ``max_messages`` visible messages, at most one per group (the oldest unsettled one).

        Each becomes invisible for the visibility timeout; one received ``max_attempts`` times
        already goes to the dead state instead of being delivered again.
        """
        now = self._clock()
        vis = self.visibility_s if visibility_s is None else visibility_s
        out: list[Received] = []
        with self._tx() as db:
            rows = db.execute(
                "SELECT q.id, q.body, q.group_id, q.dedup_id, q.attempts FROM queue q "
                "WHERE q.state IN ('ready', 'inflight') AND q.visible_at <= ? AND q.id = ("
                "  SELECT MIN(q2.id) FROM queue q2 WHERE q2.group_id = q.group_id AND q2.state IN ('ready', 'inflight')"
                ") ORDER BY q.id LIMIT ?",
                (now, max_messages * 2),
            ).fetchall()
            for mid, body, group, dedup, attempts in rows:
                if attempts >= self.max_attempts:
                    db.execute("UPDATE queue SET state = 'dead', receipt = NULL WHERE id = ?", (mid,))
                    continue
                if len(out) >= max_messages:
                    break
                receipt = uuid.uuid4().hex
                db.execute(
                    "UPDATE queue SET state = 'inflight', visible_at = ?, attempts = attempts + 1, receipt = ? "
                    "WHERE id = ?",
                    (now + vis, receipt, mid),
                )
                out.append(Received(mid, bytes(body), group, dedup, attempts + 1, receipt))
        return out

    def ack(self, receipt: str) -> bool:
        """Delete a delivered message; False when the receipt is stale (visibility expired, re-delivered)."""
        with self._tx() as db:
            return db.execute("DELETE FROM queue WHERE receipt = ? AND state = 'inflight'", (receipt,)).rowcount == 1

    def nack(self, receipt: str, delay_s: float = 0.0, error: str | None = None) -> bool:
        """Give a message back for redelivery after ``delay_s``; False when the receipt is stale."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE queue SET state = 'ready', visible_at = ?, receipt = NULL, last_error = ? "
                "WHERE receipt = ? AND state = 'inflight'",
                (self._clock() + delay_s, error, receipt),
            )
            return cur.rowcount == 1

    def dead_letters(self, limit: int = 100) -> list[tuple[int, bytes, str, int, str | None]]:
        """Dead messages: (id, body, group_id, attempts, last_error)."""
        rows = self._query(
            "SELECT id, body, group_id, attempts, last_error FROM queue WHERE state = 'dead' ORDER BY id LIMIT ?",
            (limit,),
        )
        return [(i, bytes(b), g, a, e) for i, b, g, a, e in rows]

    def redrive(self) -> int:
        """Move every dead message back to ready with a fresh attempt count; returns how many."""
        with self._tx() as db:
            return db.execute(
                "UPDATE queue SET state = 'ready', attempts = 0, visible_at = ? WHERE state = 'dead'", (self._clock(),)
            ).rowcount

    def queue_depth(self) -> dict[str, int]:
        """Messages per state: ``ready``, ``inflight``, ``dead``."""
        counts = dict.fromkeys(("ready", "inflight", "dead"), 0)
        for state, n in self._query("SELECT state, COUNT(*) FROM queue GROUP BY state"):
            counts[state] = n
        return counts

    # ------------------------------------------------------------------ batch settlement (local forwarder)

    def ack_many(self, receipts: Sequence[str]) -> int:
        """Delete several delivered messages in one transaction (one fsync instead of one per message).

        Same rule per receipt as :meth:`ack`: a stale receipt (visibility expired, message received
        again) deletes nothing.  Returns how many messages were deleted.
        """
        if not receipts:
            return 0
        with self._tx() as db:
            return db.executemany(
                "DELETE FROM queue WHERE receipt = ? AND state = 'inflight'", [(r,) for r in receipts]
            ).rowcount


class OwnerLock:
    """Exclusive ownership of a data directory: a second server on the same directory is refused.

    Holds ``fcntl.flock`` on ``<data>/LOCK`` (released by the kernel when the process dies, so a
    killed server never leaves a stale lock).  The file records the owner's pid for the message.

    Raises:
        DataDirLocked: another live process holds the lock.
    """

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.path = Path(data_dir) / "LOCK"
        self._fd: int | None = None

    def acquire(self) -> OwnerLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise DataDirLocked(
                f"data directory {self.path.parent} is already in use by another process (pid {owner}); "
                "stop it first or choose another --data directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OwnerLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
