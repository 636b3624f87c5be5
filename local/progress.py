"""A dependency-free progress bar for long work, with an optional live status suffix."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable


class Progress:
    """``[#####.....]  45%  700/1500 frames  55.1/s  <status>`` on stderr; redrawn at most 5 times a second.

    On a terminal the line is rewritten in place; otherwise a line is printed every 10 %.
    Thread-safe: ``advance`` may be called from many threads.
    """

    def __init__(self, total: int, unit: str, status: Callable[[], str] | None = None, width: int = 30) -> None:
        self.total = max(1, total)
        self.unit = unit
        self.status = status
        self.width = width
        self.done = 0
        self.t0 = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1
        self._lock = threading.Lock()
        self._tty = sys.stderr.isatty()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            if self._tty and now - self._last_draw >= 0.2:
                self._last_draw = now
                self._draw(end="")
            elif not self._tty and (decile := self.done * 10 // self.total) != self._last_decile:
                self._last_decile = decile
                self._draw(end="\n")

    def _draw(self, end: str) -> None:
        frac = min(1.0, self.done / self.total)
        bar = "#" * int(frac * self.width) + "." * (self.width - int(frac * self.width))
        rate = self.done / max(1e-9, time.monotonic() - self.t0)
        line = f"[{bar}] {frac:4.0%}  {self.done}/{self.total} {self.unit}  {rate:.1f}/s"
        if self.status:
            line += "  " + self.status()
        prefix = "\r" if self._tty else ""
        print(f"{prefix}{line}\033[K" if self._tty else line, end=end, file=sys.stderr, flush=True)

    def close(self) -> None:
        """Draw the final state once (unless the last line already showed it) and end the line."""
        with self._lock:
            if self._tty or self._last_decile < 10:
                self._draw(end="\n")
