"""Fixtures of the hardening suites: knobs for the long run, cameras with real API keys, in-memory ports,
the camera API served over real loopback HTTP in-process, and a full local pipeline.

Knobs (environment variables; the defaults keep the CI run short):

* ``HARDENING_EXAMPLES`` -- hypothesis examples per fuzz test (default 40);
* ``HARDENING_KILLS``    -- SIGKILLs of the local ETL in the random-kill loop (default 6);
* ``HARDENING_LONG=1``   -- run the tests marked ``long`` (skipped otherwise).

The long run is one command (see RELIABILITY.md)::

    HARDENING_LONG=1 HARDENING_EXAMPLES=2000 HARDENING_KILLS=200 .venv/bin/pytest tests/hardening -m long
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

from ingest import handler as ingest_handler
from ingest.cameras import Registry
from ingest.settings import Settings
from local.events import decode_body
from local.server import CameraApiServer
from stream.aggregate import deaggregate_many
from stream.ports import PublishError, QueueMessage, StreamEntry
from stream.schema import Record, from_bytes

EXAMPLES = int(os.environ.get("HARDENING_EXAMPLES", "40"))
"""Hypothesis examples per fuzz test (raise for the long run)."""
KILLS = int(os.environ.get("HARDENING_KILLS", "6"))
"""SIGKILLs of the local ETL in the random-kill loop (raise for the long run)."""
LONG = os.environ.get("HARDENING_LONG", "") not in ("", "0")

IMAGE_ERROR_CODES = frozenset(
    {"bad_image", "empty_image", "not_an_image", "unsupported_format", "truncated_image", "too_many_pixels",
     "too_many_bytes"}
)  # fmt: skip
"""Error codes of an image that could not be decoded: for an authenticated camera the service records one
``rejected`` frame summary (camera health), by design (docs/ingest.md "What is recorded")."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "long: long hardening runs (set HARDENING_LONG=1); skipped in CI")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if LONG:
        return
    skip = pytest.mark.skip(reason="long hardening run: set HARDENING_LONG=1 (see RELIABILITY.md)")
    for item in items:
        if item.get_closest_marker("long") is not None:
            item.add_marker(skip)


# ------------------------------------------------------------------------------------------- ports


@dataclass
class MemoryStream:
    """StreamWriter keeping entries; ``fail`` makes every put raise PublishError."""

    entries: list[StreamEntry] = field(default_factory=list)
    fail: bool = False

    def put(self, entries: Sequence[StreamEntry]) -> None:
        if self.fail:
            raise PublishError("stream down (test)", len(entries))
        self.entries.extend(entries)

    def records(self) -> list[Record]:
        return [from_bytes(b) for b in deaggregate_many(e.data for e in self.entries)]


@dataclass
class MemoryQueue:
    """MessageQueue keeping every message sent."""

    messages: list[QueueMessage] = field(default_factory=list)
    fail: bool = False

    def send(self, messages: Sequence[QueueMessage]) -> None:
        if self.fail:
            raise PublishError("queue down (test)", len(messages))
        self.messages.extend(messages)


@dataclass
class Cameras:
    """A registry with real (hashed) API keys; ``keys`` = camera id -> API key."""

    registry: Registry
    keys: dict[str, str]
    path: Path


def _make_registry() -> tuple[Registry, dict[str, str]]:
    reg = Registry()
    keys = {}
    for cam, room in (("door-1", "1"), ("door-2", "2"), ("old-cam", "3")):
        _camera, keys[cam] = reg.add(cam, "REX", room, "America/Sao_Paulo")
    reg.revoke("old-cam")
    return reg, keys


REGISTRY, KEYS = _make_registry()
"""Cameras of this test process (keys are random per run, known at import: schemathesis needs them then)."""


@pytest.fixture(scope="session")
def cameras(tmp_path_factory) -> Cameras:
    path = tmp_path_factory.mktemp("cameras") / "cameras.json"
    REGISTRY.save(path)
    return Cameras(REGISTRY, KEYS, path)


# ------------------------------------------------------------------------------------------- HTTP


@dataclass
class Api:
    """The camera API over loopback HTTP, the Lambda handler in-process, publishing to memory."""

    server: CameraApiServer
    stream: MemoryStream
    queue: MemoryQueue
    cameras: Cameras

    def clear(self) -> None:
        self.stream.entries.clear()
        self.queue.messages.clear()

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        return http_request(self.server.server_address[:2], method, path, body, headers)


def http_request(
    address, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, bytes, dict[str, str]]:
    """One request on a fresh connection: (status, body, headers lower-cased)."""
    conn = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def invoke_in_process(event: dict) -> dict:
    """What ``local.pipeline`` does in a worker, minus the process hop: run the Lambda handler."""
    return ingest_handler.handler(event, None)


@pytest.fixture(scope="module")
def api(cameras: Cameras) -> Iterator[Api]:
    """The camera API on 127.0.0.1 (free port) in front of the real handler; skew limit 1 h, real clock.

    Module-scoped (stopping a server takes its 0.5 s poll interval): tests call ``api.clear()`` first.
    """
    stream, queue = MemoryStream(), MemoryQueue()
    ingest_handler.use(stream, queue, cameras.registry, Settings(max_clock_skew_seconds=3600, dedup_window_seconds=300))
    srv = CameraApiServer(("127.0.0.1", 0), invoke_in_process, cameras.registry.authenticate)
    srv.start()
    try:
        yield Api(srv, stream, queue, cameras)
    finally:
        srv.stop()
        ingest_handler.reset()


def json_body(raw: bytes) -> dict:
    """A response body that must be a JSON object."""
    doc = json.loads(raw)
    assert isinstance(doc, dict), raw[:200]
    return doc


def assert_refusal(status: int, raw: bytes) -> dict:
    """A 4xx with the documented error document (code + human reason); returns the error."""
    assert 400 <= status < 500, (status, raw[:300])
    err = json_body(raw)["error"]
    assert isinstance(err["code"], str) and err["code"], err
    assert isinstance(err["reason"], str) and len(err["reason"]) >= 10, err
    return err


def assert_published_only_the_rejection(stream: MemoryStream, queue: MemoryQueue, err: dict) -> None:
    """After a refusal: no read, no queue message; at most one ``rejected`` frame summary (image errors only)."""
    records = stream.records()
    assert queue.messages == []
    assert not [r for r in records if r.kind != "frame"], records
    if err["code"] in IMAGE_ERROR_CODES:
        assert len(records) <= 1
        for r in records:
            assert (r.outcome, r.reject_reason) == ("rejected", err["code"])
    else:
        assert records == [], (err, records)


def body_of(response: dict) -> dict:
    return json.loads(decode_body(response))


def lake_rows(lake: Path, table: str) -> list[dict]:
    """Every row of one lake table (all partitions, compacted or not), with ``dt``/``hour`` from the path."""
    import pyarrow.dataset as ds

    base = lake / table
    if not base.exists():
        return []
    files = [str(p) for p in base.glob("dt=*/hour=*/*.parquet") if not p.name.startswith(".")]
    if not files:
        return []
    tbl = ds.dataset(files, format="parquet", partitioning="hive", partition_base_dir=str(base)).to_table()
    rows = tbl.to_pylist()
    for r in rows:
        r["dt"], r["hour"] = str(r["dt"]), str(r["hour"]).zfill(2)
    return rows
