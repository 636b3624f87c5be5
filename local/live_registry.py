"""The camera registry of a running server: the registry file, re-read whenever it changes."""

from __future__ import annotations

import threading
from pathlib import Path

from ingest.cameras import Camera, Registry


class LiveRegistry(Registry):
    """A registry file re-read when it changes, so ``monuv-qr cameras add`` applies to a running server.

    Each lookup costs one ``stat`` of the file; the file is parsed again only when its modification
    time or size changed.  Thread-safe.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        """Re-read the file if it changed since the last look (a missing file is an empty registry)."""
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        with self._lock:
            if stamp != self._stamp:
                self._cameras = Registry.load(self.path)._cameras
                self._stamp = stamp

    def by_key_id(self, key_id: str | None) -> Camera | None:
        self.refresh()
        return super().by_key_id(key_id)

    def authenticate(self, key: str | None) -> Camera | None:
        self.refresh()
        return super().authenticate(key)
