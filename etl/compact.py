"""Compaction of the local lake: many small batch files of a closed hour -> one file, crash-safely.

Streaming writes one file per batch and partition (``s-<first>-<last>.parquet``, the stream
sequence range of the batch).  Once an hour partition is *closed* -- its hour ended more than
``grace_s`` ago -- its files are merged into ``c-<first>-<last>.parquet`` whose name claims the
sequence range it covers.

Crash safety without a directory swap: the merged file is written atomically first, then the
inputs are deleted.  A crash in between leaves inputs whose range lies inside a ``c-`` file's range;
every pass starts by deleting such *superseded* files, so the partition converges to exact content.
The claim is sound because only files of committed batches are compacted, and any file written
later in the partition has a range beyond every committed sequence number.  (Between the rename
and the deletes a reader may briefly see rows twice; lake readers de-duplicate by id anyway.)

A late record arriving after compaction adds a new small file; the next pass merges it again.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from etl import writer
from etl.transforms import QUARANTINE_TABLE
from stream import schema

log = logging.getLogger(__name__)

TABLES = (*schema.TABLE.values(), QUARANTINE_TABLE)

_NAME = re.compile(r"^([sc])-(\d+)-(\d+)\.parquet$")


@dataclass(frozen=True)
class LakeFile:
    """A lake file whose name carries its stream sequence range."""

    path: Path
    compacted: bool
    first: int
    last: int

    @classmethod
    def parse(cls, path: Path) -> LakeFile | None:
        m = _NAME.match(path.name)
        return cls(path, m[1] == "c", int(m[2]), int(m[3])) if m else None


def file_name(first: int, last: int, compacted: bool = False) -> str:
    """``s-<first>-<last>.parquet`` (a batch) or ``c-...`` (a compaction), zero-padded to sort."""
    return f"{'c' if compacted else 's'}-{first:012d}-{last:012d}.parquet"


@dataclass
class CompactionResult:
    partitions: int = 0
    files_in: int = 0
    files_out: int = 0
    superseded_removed: int = 0


def _closed(dt: str, hour: str, now: datetime, grace: timedelta) -> bool:
    start = datetime.strptime(f"{dt} {hour}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    return start + timedelta(hours=1) + grace <= now


def remove_superseded(directory: Path) -> int:
    """Delete files whose range is inside a compacted file's range (leftovers of a crash)."""
    files = [f for f in map(LakeFile.parse, writer.parquet_files(directory)) if f]
    covers = [f for f in files if f.compacted]
    removed = 0
    for f in files:
        if any(c is not f and c.first <= f.first and f.last <= c.last for c in covers):
            f.path.unlink(missing_ok=True)
            removed += 1
    if removed:
        writer.fsync_dir(directory)
        log.info("removed %d superseded files in %s", removed, directory)
    return removed


def compact_partition(directory: Path, committed_seq: int, fault=None) -> tuple[int, int]:
    """Merge the committed files of one partition into one; returns (files_in, files_out).

    ``fault`` (tests only) is called with ``"compacted-written"`` between writing the merged file and
    deleting its inputs.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [f for f in map(LakeFile.parse, writer.parquet_files(directory)) if f and f.last <= committed_seq]
    if len(files) < 2:
        return 0, 0
    files.sort(key=lambda f: f.first)
    table = pa.concat_tables([pq.ParquetFile(f.path).read() for f in files])
    target = directory / file_name(files[0].first, max(f.last for f in files), compacted=True)
    writer.write_atomic(table, target)
    if fault:
        fault("compacted-written")
    for f in files:
        if f.path != target:
            f.path.unlink(missing_ok=True)
    writer.fsync_dir(directory)
    return len(files), 1


def compact(
    root: Path, committed_seq: int, now: datetime | None = None, grace: timedelta = timedelta(hours=1), fault=None
) -> CompactionResult:
    """Compact every closed partition of every table under ``root``.

    Args:
        root: the lake root.
        committed_seq: the ETL's committed checkpoint; files beyond it are never touched.
        now: the current time (UTC); partitions whose hour ended ``grace`` before it are closed.
        grace: how long after an hour ends its partition still receives on-time files.
    """
    now = now or datetime.now(UTC)
    result = CompactionResult()
    for table in TABLES:
        for dt, hour, directory in writer.partitions(root, table):
            result.superseded_removed += remove_superseded(directory)
            if not _closed(dt, hour, now, grace):
                continue
            n_in, n_out = compact_partition(directory, committed_seq, fault)
            if n_in:
                result.partitions += 1
                result.files_in += n_in
                result.files_out += n_out
    if result.partitions:
        log.info("compacted %d partitions: %d files -> %d", result.partitions, result.files_in, result.files_out)
    return result
