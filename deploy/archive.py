"""Deterministic zip archives: same input files -> byte-identical zip (sorted entries, fixed times and modes).

Deterministic archives make the content hash a cache key and stop ``pulumi up`` from re-uploading
unchanged code (Lambda and S3 compare the bytes' hash).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

FIXED_TIME = (1980, 1, 1, 0, 0, 0)
"""Earliest time a zip entry can carry; every entry gets it."""

SKIP_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class ArchiveInfo:
    """A written archive: path, SHA-256 of the zip bytes, sizes in bytes, number of files."""

    path: Path
    sha256: str
    zipped_bytes: int
    unzipped_bytes: int
    files: int


def iter_tree(root: Path, prefix: str = "", skip_names: Iterable[str] = ()) -> Iterator[tuple[str, Path]]:
    """(archive name, file path) for every file under ``root``, skipping caches and ``skip_names``."""
    skip = set(skip_names)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and d not in skip]
        for name in filenames:
            if name.endswith(SKIP_SUFFIXES) or name in skip:
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            yield (f"{prefix}/{rel}" if prefix else rel), path


def sha256_files(entries: Iterable[tuple[str, Path]]) -> str:
    """Hash of names and contents of the entries (order-independent): a cache key for their archive."""
    h = hashlib.sha256()
    for name, path in sorted(entries):
        data = path.read_bytes()
        h.update(name.encode("utf-8") + b"\0" + len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def write_zip(entries: Iterable[tuple[str, Path]], dest: Path) -> ArchiveInfo:
    """Write a deterministic zip of the entries (sorted by name) to ``dest`` atomically.

    Raises:
        ValueError: two entries share an archive name.
    """
    items = sorted(entries)
    names = [n for n, _ in items]
    if len(names) != len(set(names)):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate archive entries: {dupes[:5]}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".tmp")
    unzipped = 0
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name, path in items:
            data = path.read_bytes()
            unzipped += len(data)
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            executable = os.access(path, os.X_OK) or name.endswith(".so") or ".so." in name
            info.external_attr = ((0o755 if executable else 0o644) | 0o100000) << 16
            info.create_system = 3  # unix, so the modes above are honoured
            zf.writestr(info, data)
    os.replace(tmp, dest)
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    return ArchiveInfo(dest, digest, dest.stat().st_size, unzipped, len(items))


def describe_zip(path: Path) -> ArchiveInfo:
    """ArchiveInfo of an existing zip (sizes from its directory)."""
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        unzipped = sum(i.file_size for i in infos)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return ArchiveInfo(path, digest, path.stat().st_size, unzipped, len(infos))
