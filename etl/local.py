"""Local ETL: the SQLite stream -> the same transform -> the same Parquet lake, exactly once.

One batch, step by step (a crash may happen between any two):

1. read entries ``(after, upto]`` from the stream (``after`` = the committed checkpoint);
2. record the intent ``pending_to = upto`` in the checkpoint row (``SqliteStore.begin_batch``);
3. run the transform (``etl.columnar``: the output of ``etl.transforms.transform``, vectorised) and write
   one file per table and partition named after the range,
   ``s-<after+1>-<upto>.parquet``, each atomically and durably (``etl.writer.write_atomic``);
4. commit the checkpoint ``seq = upto`` and clear the intent in one SQLite transaction.

Exactly once: a record is in the lake only through a file whose name is its batch's range.  After a
crash before step 2, nothing was written.  After step 2, :meth:`LocalEtl.recover` redoes exactly the
pending range: the transform is deterministic, so it writes the same names with the same rows,
replacing whatever the crashed attempt left (``os.replace``).  After step 4, the batch is never
read again.  So no record is lost and none is written twice.

Batches close by size (``batch_records``) or age (``batch_seconds`` since the oldest unprocessed
entry arrived).  Closed hours are compacted (``etl.compact``) between batches.

Thread-safety: one :class:`LocalEtl` per stream consumer; ``run`` on one thread, ``status`` from any.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path

from etl import columnar, compact, writer
from etl.transforms import QUARANTINE_TABLE, Entry
from stream import schema
from stream.sqlite import SqliteStore, StreamRow

log = logging.getLogger(__name__)

CONSUMER = "etl"
"""Checkpoint name of the local ETL in the stream store."""

Fault = Callable[[str], None]


@dataclass
class EtlStatus:
    """Progress of the local ETL, for ``/health`` and the status line.

    ``lag_records`` = stream head - committed seq; ``lag_seconds`` = age of the oldest unprocessed entry.
    """

    committed_seq: int = 0
    head_seq: int = 0
    lag_records: int = 0
    lag_seconds: float = 0.0
    batches: int = 0
    records_in: int = 0
    rows_written: int = 0
    quarantined: int = 0
    duplicates: int = 0
    files_written: int = 0
    files_compacted: int = 0
    last_batch_at: str | None = None
    last_error: str | None = None
    running: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


class LocalEtl:
    """Consumes the local stream from its checkpoint and writes the lake under ``root``.

    Args:
        store: the SQLite stream (may be shared with a server process).
        root: lake root directory.
        batch_records: a batch closes at this many entries.
        batch_seconds: ...or when its oldest entry has waited this long.
        poll_s: idle sleep of :meth:`run` between stream polls.
        grace: closed-hour grace period of compaction.
        compact_every_s: minimum interval between compaction passes in :meth:`run`.
        fault: tests only: called with a stage name; raising simulates a crash there
            (``"temp-written"``, ``"files-written"``, ``"compacted-written"``).
    """

    def __init__(
        self,
        store: SqliteStore,
        root: str | Path,
        *,
        consumer: str = CONSUMER,
        batch_records: int = 5000,
        batch_seconds: float = 2.0,
        poll_s: float = 0.2,
        grace: timedelta = timedelta(hours=1),
        compact_every_s: float = 60.0,
        fault: Fault | None = None,
    ) -> None:
        if batch_records < 1:
            raise ValueError(f"batch_records must be >= 1, got {batch_records}")
        self.store = store
        self.root = Path(root)
        self.consumer = consumer
        self.batch_records = batch_records
        self.batch_seconds = batch_seconds
        self.poll_s = poll_s
        self.grace = grace
        self.compact_every_s = compact_every_s
        self.fault = fault
        self._c = EtlStatus()  # the counters; status() adds the stream positions
        self._recovered = False
        self._last_compact = 0.0

    # ------------------------------------------------------------------ single steps

    def recover(self) -> int:
        """Finish a batch a crash interrupted (redo its exact range); returns records redone."""
        writer.remove_temporaries(self.root)
        cp = self.store.checkpoint(self.consumer)
        self._recovered = True
        if cp.pending_to is None or cp.pending_to <= cp.seq:
            return 0
        rows = self.store.read_range(cp.seq, cp.pending_to)
        log.warning("redoing interrupted batch %d..%d (%d entries)", cp.seq + 1, cp.pending_to, len(rows))
        self._write_batch(cp.seq, cp.pending_to, rows)
        return len(rows)

    def process_available(self, max_batches: int | None = None) -> int:
        """Process everything in the stream now, in batches of ``batch_records``; returns entries processed."""
        if not self._recovered:
            self.recover()
        done = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            after = self.store.checkpoint(self.consumer).seq
            rows = self.store.read(after, self.batch_records)
            if not rows:
                break
            self.store.begin_batch(self.consumer, rows[-1].seq)
            self._write_batch(after, rows[-1].seq, rows)
            done += len(rows)
            batches += 1
        return done

    def compact(self, now: datetime | None = None) -> compact.CompactionResult:
        """Compact closed partitions (only files of committed batches)."""
        committed = self.store.checkpoint(self.consumer).seq
        res = compact.compact(self.root, committed, now=now, grace=self.grace, fault=self.fault)
        self._c.files_compacted += res.files_in
        return res

    def run(self, stop_event: threading.Event) -> None:
        """Loop until ``stop_event`` is set: batch by size or age, compact now and then.

        A failing batch is logged and retried after a pause (its intent makes the retry exact).
        """
        self._c.running = True
        try:
            while not stop_event.is_set():
                try:
                    if not self._recovered:
                        self.recover()
                    if self._batch_ready():
                        self.process_available(max_batches=1)
                        continue
                    if time.monotonic() - self._last_compact >= self.compact_every_s:
                        self._last_compact = time.monotonic()
                        self.compact()
                    self._c.last_error = None
                except Exception as e:  # keep the loop alive; /health shows the error
                    self._c.last_error = f"{type(e).__name__}: {e}"
                    log.exception("local ETL batch failed; retrying")
                    self._recovered = False
                    stop_event.wait(min(5.0, self.poll_s * 10))
                    continue
                stop_event.wait(self.poll_s)
            self.process_available()  # drain what is there on a graceful stop
        finally:
            self._c.running = False

    def status(self) -> EtlStatus:
        """Current progress and lag (reads the store; cheap)."""
        cp = self.store.checkpoint(self.consumer)
        head = self.store.head()
        lag_s = 0.0
        if head > cp.seq:
            nxt = self.store.read(cp.seq, 1)
            if nxt:
                lag_s = max(0.0, time.time() - nxt[0].arrived_at)
        return replace(
            self._c,
            committed_seq=cp.seq,
            head_seq=head,
            lag_records=max(0, head - cp.seq),
            lag_seconds=round(lag_s, 3),
        )

    # ------------------------------------------------------------------ internals

    def _batch_ready(self) -> bool:
        after = self.store.checkpoint(self.consumer).seq
        head = self.store.head()
        if head - after >= self.batch_records:
            return True
        if head <= after:
            return False
        oldest = self.store.read(after, 1)
        return bool(oldest) and time.time() - oldest[0].arrived_at >= self.batch_seconds

    def _write_batch(self, after: int, upto: int, rows: Sequence[StreamRow]) -> None:
        def entry_at(i: int) -> Entry:  # only for records that need the per-record path or quarantine
            r = rows[i]
            return Entry(r.data, r.partition_key, datetime.fromtimestamp(r.arrived_at, UTC), f"seq={r.seq}")

        batch = columnar.transform([r.data for r in rows], entry_at)
        lake_at = schema.now_utc()
        name = compact.file_name(after + 1, upto)
        files = 0
        for kind in schema.KINDS:
            table = schema.TABLE[kind]
            for dt, hour, tbl in batch.lake_tables(kind, lake_at):
                writer.write_atomic(tbl, writer.partition_dir(self.root, table, dt, hour) / name, self.fault)
                files += 1
        quarantine = sorted(batch.quarantine, key=lambda q: q.partition)
        for (dt, hour), group in groupby(quarantine, key=lambda q: q.partition):
            tbl = writer.quarantine_table(list(group), lake_at)
            writer.write_atomic(tbl, writer.partition_dir(self.root, QUARANTINE_TABLE, dt, hour) / name, self.fault)
            files += 1
        if self.fault:
            self.fault("files-written")
        self.store.commit(self.consumer, upto)
        c = self._c
        c.batches += 1
        c.records_in += len(rows)
        c.rows_written += batch.row_count
        c.quarantined += len(batch.quarantine)
        c.duplicates += batch.duplicates
        c.files_written += files
        c.last_batch_at = lake_at.isoformat()
        if batch.quarantine:
            log.warning("batch %d..%d: %d records quarantined", after + 1, upto, len(batch.quarantine))
        log.debug("batch %d..%d: %d rows in %d files", after + 1, upto, batch.row_count, files)
