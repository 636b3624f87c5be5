"""Fixtures of the end-to-end tests: a data directory with cameras registered through the CLI, frames
with real QR codes, and ``monuv-qr serve`` running as a child process on a free loopback port."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from local.frames import render_frame
from local.server_process import ServerProcess
from stream.schema import format_ts

ROOT = Path(__file__).resolve().parents[2]
FRAME_SIZE = (640, 360)
CAMERAS = (("door-1", "REX", "1"), ("door-2", "REX", "2"))


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``monuv-qr ARGS`` (``python -m local.cli``) and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "local.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def ticket(n: int, session: str = "20260101-2000") -> str:
    """A valid ticket payload (compact ``TKT:`` form) for ticket number ``n``."""
    return f"TKT:REX:R01:S{session}:T{n:05d}:A{n}"


@dataclass
class DataDir:
    """A data directory whose registry was made with ``monuv-qr cameras add``; ``keys`` = camera -> key."""

    path: Path
    keys: dict[str, str]


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    data = tmp_path / "data"
    keys = {}
    for camera, cinema, room in CAMERAS:
        done = cli(
            "cameras", "--cameras", str(data / "cameras.json"), "add", camera, "--cinema", cinema, "--room", room
        )
        assert done.returncode == 0, done.stderr
        m = re.search(r"API key: (\S+)", done.stdout)
        assert m, f"no key printed: {done.stdout!r}"
        keys[camera] = m.group(1)
    return DataDir(data, keys)


@pytest.fixture
def server(data_dir: DataDir) -> Iterator[ServerProcess]:
    srv = ServerProcess(data_dir.path, workers=2).start()
    try:
        yield srv
    finally:
        srv.kill()


@pytest.fixture(scope="session")
def frame_cache() -> dict:
    return {}


@pytest.fixture
def frame(frame_cache: dict):
    """``frame(payloads, seed, fmt)`` -> image bytes with those QR payloads (cached per session)."""

    def make(payloads: tuple[str, ...] = (), seed: int = 0, fmt: str = "JPEG") -> bytes:
        key = (payloads, seed, fmt)
        if key not in frame_cache:
            frame_cache[key] = render_frame(list(payloads), seed=seed, size=FRAME_SIZE, fmt=fmt)
        return frame_cache[key]

    return make


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 30) -> tuple[int, dict]:
    """POST /upload over a fresh connection; returns (status, JSON body)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("POST", "/upload", body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else {}
    finally:
        conn.close()


def post_oversized(url: str, key: str, length: int) -> int:
    """Announce a body of ``length`` bytes, send only its first KB, and return the status answered."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        head = (
            f"POST /upload HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {length}\r\n\r\n"
        )
        s.sendall(head.encode() + b"\xff\xd8" + b"\0" * 1022)
        answer = s.recv(4096).decode("latin-1")
    return int(answer.split(" ", 2)[1])


def ts(at: datetime) -> str:
    return format_ts(at)
