"""local.prefork + local.worker: worker processes accept on one socket, run the handler, commit centrally."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from ingest.cameras import Registry
from local.frames import render_frame
from local.pipeline import LocalPipeline, ServeOptions
from stream.aggregate import deaggregate_many
from stream.schema import from_bytes

TICKET = "TKT:REX:R01:S20260101-2000:T00001:A1"


@pytest.fixture(scope="module")
def key_and_frame(tmp_path_factory) -> tuple[str, bytes, object]:
    cameras = tmp_path_factory.mktemp("prefork-cameras") / "cameras.json"
    registry = Registry()
    key = registry.add("door-1", "REX", "1")[1]
    registry.save(cameras)
    return key, render_frame([TICKET], seed=3, size=(480, 270)), cameras


@pytest.fixture
def pipe(tmp_path, key_and_frame) -> Iterator[LocalPipeline]:
    _key, _frame, cameras = key_and_frame
    opts = ServeOptions(data=tmp_path, port=0, cameras=cameras, workers=2, etl_batch_seconds=0.2, stream_retention_s=0)
    with LocalPipeline(opts) as p:
        yield p


def post(pipe: LocalPipeline, key: str, body: bytes, tag: str = "") -> tuple[int, dict]:
    conn = http.client.HTTPConnection(*pipe.server.server_address, timeout=30)
    try:
        conn.request(
            "POST", "/upload", body=body + tag.encode(), headers={"x-api-key": key, "Content-Type": "image/jpeg"}
        )
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def stream_frame_ids(pipe: LocalPipeline) -> list[str]:
    rows = pipe.store.read(0, 10_000)
    return [r.frame_id for r in (from_bytes(b) for b in deaggregate_many(x.data for x in rows)) if r.kind == "frame"]


def test_the_handler_runs_in_the_worker_processes_not_the_main_one(pipe, key_and_frame):
    key, frame, _ = key_and_frame
    assert len(set(pipe.server.pids())) == 2 and os.getpid() not in pipe.server.pids()
    status, body = post(pipe, key, frame)
    assert status == 200 and body["frames"][0]["codes"][0]["text"] == TICKET
    assert pipe.counters.snapshot()["requests"] == 1  # counted by a worker, in shared memory


def test_a_200_is_sent_only_after_the_records_are_in_the_store(pipe, key_and_frame):
    key, frame, _ = key_and_frame
    for i in range(3):
        status, body = post(pipe, key, frame, tag=f"-{i}")
        assert status == 200
        assert body["frames"][0]["frame_id"] in stream_frame_ids(pipe)  # no wait: already committed


def test_counters_of_every_worker_add_up_in_health(pipe, key_and_frame):
    key, frame, _ = key_and_frame
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda i: post(pipe, key, frame, tag=f"c{i}")[0], range(12)))
    assert statuses == [200] * 12
    health = pipe.health()
    assert health["api"]["requests"] == health["api"]["frames"] == 12 and health["api"]["reads"] == 12
    assert sum(health["workers"]["requests_per_worker"]) == 12


def test_a_killed_worker_is_replaced_and_the_server_keeps_answering(pipe, key_and_frame):
    key, frame, _ = key_and_frame
    victim = pipe.server.pids()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        h = pipe.health()["workers"]
        if h["restarts"] == 1 and h["alive"] == 2:
            break
        time.sleep(0.1)
    assert (h["restarts"], h["alive"]) == (1, 2) and victim not in pipe.server.pids()
    assert all(post(pipe, key, frame, tag=f"k{i}")[0] == 200 for i in range(4))
    assert pipe.health()["status"] == "ok"


def test_a_failed_group_commit_answers_503_with_retry_after_and_nothing_is_acknowledged(pipe, key_and_frame):
    key, frame, _ = key_and_frame
    before = pipe.store.head()
    pipe.committer.store.close()  # the committer's writes now fail
    conn = http.client.HTTPConnection(*pipe.server.server_address, timeout=30)
    conn.request("POST", "/upload", body=frame + b"fail", headers={"x-api-key": key, "Content-Type": "image/jpeg"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    assert resp.status == 503 and resp.getheader("Retry-After") and body["error"]["code"] == "unavailable"
    assert pipe.store.head() == before


def test_a_worker_whose_main_process_is_gone_fails_its_waiting_commits_and_drains():
    from multiprocessing import Pipe

    from local.worker import ParentLink
    from stream.ports import PublishError, StreamEntry

    worker_end, parent_end = Pipe()
    link = ParentLink(worker_end).start()
    errors: list[BaseException] = []

    def commit() -> None:
        try:
            link.commit([StreamEntry("k", b"x")], [])
        except BaseException as e:
            errors.append(e)

    waiting = threading.Thread(target=commit)
    waiting.start()
    assert parent_end.recv()[0] == "commit"  # the request reached the "parent", which now dies
    parent_end.close()
    waiting.join(10)
    assert len(errors) == 1 and isinstance(errors[0], PublishError) and link.drain.is_set()
    assert link.health()["status"] == "degraded"


def test_keep_alive_connections_are_spread_over_the_workers(pipe, key_and_frame):
    """Connections stay with the worker that accepted them, so accepts are balanced by open connections."""
    key, frame, _ = key_and_frame
    conns = [http.client.HTTPConnection(*pipe.server.server_address, timeout=30) for _ in range(8)]

    def use(i: int) -> int:
        conns[i].request("POST", "/upload", body=frame + f"b{i}".encode(), headers={"x-api-key": key})
        return conns[i].getresponse().read() and 1

    try:
        with ThreadPoolExecutor(8) as pool:
            assert sum(pool.map(use, range(8))) == 8
        per_worker = pipe.health()["workers"]["connections_per_worker"]
        assert sum(per_worker) == 8 and max(per_worker) - min(per_worker) <= 2, per_worker
    finally:
        for c in conns:
            c.close()
