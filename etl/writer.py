"""Parquet files of the local lake: Arrow tables from transform output, written crash-safely.

Layout (fixed, shared with the Glue job and the Athena tables)::

    <root>/<table>/dt=YYYY-MM-DD/hour=HH/<name>.parquet      table in reads, frames, box_office
    <root>/quarantine/dt=YYYY-MM-DD/hour=HH/<name>.parquet

A file appears whole or not at all: it is written to a hidden temporary name in the same directory,
flushed and fsynced, renamed over the final name (``os.replace`` is atomic on POSIX), and the
directory is fsynced so the rename itself survives a power cut.  Rewriting a name replaces the old
file atomically -- which is what makes a replayed batch idempotent.

Readers (pyarrow datasets, DuckDB ``read_parquet('.../*.parquet')``) never see temporaries: they
start with ``.`` and end with ``.tmp``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from etl import transforms
from etl.transforms import Parsed, Quarantined
from stream import schema

log = logging.getLogger(__name__)

COMPRESSION = "zstd"
"""Parquet codec of every lake file (Athena, DuckDB, pyarrow and Spark 3.5 all read zstd)."""

TMP_SUFFIX = ".tmp"


def partition_dir(root: Path, table: str, dt: str, hour: str) -> Path:
    """Directory of one partition: ``<root>/<table>/dt=<dt>/hour=<hour>``."""
    return root / table / f"dt={dt}" / f"hour={hour}"


def record_table(kind: str, rows: Sequence[Parsed], lake_at: datetime):  # -> pyarrow.Table
    """Arrow table of valid records of one kind, in the lake schema."""
    import pyarrow as pa

    return pa.table(transforms.lake_columns(kind, rows, lake_at), schema=schema.arrow_schema(kind))


def quarantine_table(rows: Sequence[Quarantined], lake_at: datetime):  # -> pyarrow.Table
    """Arrow table of quarantine rows."""
    import pyarrow as pa

    sch = transforms.quarantine_arrow_schema()
    cols: list[list] = [[] for _ in sch.names]
    for q in rows:
        for col, v in zip(cols, q.values(lake_at), strict=True):
            col.append(v)
    return pa.table(dict(zip(sch.names, cols, strict=True)), schema=sch)


def fsync_dir(path: Path) -> None:
    """fsync a directory so renames/unlinks inside it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs(path: Path) -> None:
    """Create ``path`` and fsync each parent whose entry was added, so the directory survives a crash."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        fsync_dir(d.parent)


def write_atomic(table, path: Path, fault=None) -> int:
    """Write an Arrow table to ``path`` atomically and durably; returns the file size in bytes.

    ``fault`` (tests only) is called with a stage name (``"temp-written"``) to inject a crash.

    Raises:
        OSError: the disk is full or not writable; the temporary is removed and ``path`` untouched.
    """
    import pyarrow.parquet as pq

    _makedirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            pq.write_table(table, f, compression=COMPRESSION)
            f.flush()
            os.fsync(f.fileno())
        if fault:
            fault("temp-written")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path.stat().st_size


def remove_temporaries(root: Path) -> int:
    """Delete temporaries left by a crash under ``root``; returns how many were removed."""
    n = 0
    if not root.exists():
        return 0
    for p in root.rglob(f".*{TMP_SUFFIX}"):
        p.unlink(missing_ok=True)
        n += 1
    if n:
        log.info("removed %d temporary files left by an interrupted write under %s", n, root)
    return n


def parquet_files(directory: Path) -> list[Path]:
    """Visible Parquet files of one directory, sorted by name."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix == ".parquet" and not p.name.startswith((".", "_")))


def partitions(root: Path, table: str) -> Iterable[tuple[str, str, Path]]:
    """(dt, hour, directory) of every partition of a table that exists on disk."""
    base = root / table
    if not base.is_dir():
        return
    for dt_dir in sorted(base.glob("dt=*")):
        for hour_dir in sorted(dt_dir.glob("hour=*")):
            if hour_dir.is_dir():
                yield dt_dir.name[3:], hour_dir.name[5:], hour_dir
