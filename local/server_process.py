"""``monuv-qr serve`` as a child process: for the benchmark, the end-to-end tests and soak runs."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit


class ServerProcess:
    """``monuv-qr serve`` run as a child process (benchmarks, end-to-end tests, soak runs).

    Output goes to ``<log_dir>/serve.out`` / ``serve.err``; :attr:`url` is parsed from the
    "serving on" line the command prints.  Stop it with :meth:`stop` (SIGTERM, graceful) or
    :meth:`kill` (SIGKILL, a crash).
    """

    def __init__(self, data: Path, *, port: int = 0, workers: int | None = None, args: Sequence[str] = ()) -> None:
        self.data = data
        self.log_dir = data.parent / f"{data.name}-logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.cmd = [sys.executable, "-m", "local.cli", "serve", "--data", str(data), "--port", str(port), "--quiet"]
        self.cmd += ["--stream-retention", "0"]  # keep the stream: tests compare it with the lake
        if workers:
            self.cmd += ["--workers", str(workers)]
        self.cmd += list(args)
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout_s: float = 60.0) -> ServerProcess:
        """Start and wait for the URL line; raises RuntimeError with the server's stderr if it exits or stalls."""
        out = (self.log_dir / "serve.out").open("ab")
        err = (self.log_dir / "serve.err").open("ab")
        self._out_offset = out.tell()
        self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=err, cwd=Path(__file__).resolve().parents[1])
        out.close()
        err.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with (self.log_dir / "serve.out").open("rb") as f:
                f.seek(self._out_offset)
                m = re.search(rb"serving on (http://\S+)", f.read())
            if m:
                self.url = m.group(1).decode()
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"serve did not start (exit {self.proc.returncode}): {self.stderr()[-2000:]}")

    def stderr(self) -> str:
        return (self.log_dir / "serve.err").read_text(errors="replace")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def health(self, timeout_s: float = 10.0) -> dict:
        """``GET /health`` as a dict (also for a 503 "degraded" answer)."""
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
        try:
            conn.request("GET", "/health")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def wait_lake_caught_up(self, timeout_s: float = 60.0) -> dict:
        """Poll ``/health`` until the ETL has written everything on the stream (lag 0, twice in a row).

        Raises:
            TimeoutError: the lag did not reach 0 in time (the last health document is in the message).
        """
        deadline = time.monotonic() + timeout_s
        calm, h = 0, {}
        while time.monotonic() < deadline:
            h = self.health()
            calm = calm + 1 if h["etl"]["lag_records"] == 0 and h["etl"]["committed_seq"] == h["etl"]["head_seq"] else 0
            if calm >= 2:
                return h
            time.sleep(0.25)
        raise TimeoutError(f"the lake did not catch up in {timeout_s} s: {json.dumps(h)[:1000]}")

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (graceful: in-flight requests finish, the ETL drains) and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the server (and its worker processes, which then exit on their own)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def rss_bytes(self) -> int:
        """Resident memory of the server and its child processes (Linux ``/proc``), bytes."""
        return sum(_rss(pid) for pid in [self.pid, *child_pids(self.pid)])


def child_pids(pid: int) -> list[int]:
    """Process ids of every descendant of ``pid`` (Linux ``/proc``)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(c) for c in task.read_text().split()]
        except OSError:
            continue
    return out + [g for c in out for g in child_pids(c)]


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
