"""The camera registry of a running server: the registry file, re-read whenever it changes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ingest.cameras import Camera, Registry


class LiveRegistry(Registry):
    """A registry file re-read when it changes, so ``monuv-qr cameras add`` applies to a running server.

    A lookup looks at the file (one ``stat``) when the last look is more than ``check_every_s`` old:
    a camera added or revoked takes effect within that time.  The file is parsed again only when its
    modification time or size changed.  Thread-safe.
    """

    def __init__(self, path: Path, check_every_s: float = 1.0) -> None:
        super().__init__()
        self.path = path
        self.check_every_s = check_every_s
        self._stamp: tuple[int, int] | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self, force: bool = True) -> None:
        """Re-read the file if it changed (a missing file is an empty registry); without ``force``,
        only if the last look is more than ``check_every_s`` old."""
        now = time.monotonic()
        if not force and now - self._checked < self.check_every_s:
            return
        self._checked = now
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
        self.refresh(force=False)
        return super().by_key_id(key_id)

    def authenticate(self, key: str | None) -> Camera | None:
        self.refresh(force=False)
        return super().authenticate(key)
