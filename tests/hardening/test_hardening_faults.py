"""Faults: Kinesis throttling, SQS errors, a down/slow/flapping box office, disk full, camera clock skew.
For each: what the system does, and proof that no read is lost or duplicated.

(Killing the local ETL at random points and S3/Spark write failures are in test_hardening_crashes.py.)
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from etl.local import LocalEtl
from ingest import forwarder as ingest_forwarder
from ingest import handler as ingest_handler
from ingest.boxoffice import BoxOfficeConfig
from ingest.settings import Settings
from local.boxoffice_ref import BoxOfficeServer
from stream.kinesis import Backoff, KinesisStreamWriter
from stream.ports import QueueMessage
from stream.schema import format_ts, from_bytes, now_utc
from stream.sqlite import SqliteStore
from stream.sqs import SqsMessageQueue
from tests.events.make_events import build_event
from tests.hardening import hostile
from tests.hardening.conftest import MemoryQueue, MemoryStream, body_of, lake_rows

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

# ------------------------------------------------------------------------------------------- Kinesis


class FlakyKinesis:
    """A boto3-shaped Kinesis client: each entry fails (throttled) with probability ``p`` per call."""

    def __init__(self, p: float, seed: int) -> None:
        self.p = p
        self.rng = random.Random(seed)
        self.accepted: list[bytes] = []
        self.calls = 0

    def put_records(self, StreamName, Records):
        self.calls += 1
        out = []
        for r in Records:
            if self.rng.random() < self.p:
                out.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"})
            else:
                self.accepted.append(bytes(r["Data"]))
                out.append({"SequenceNumber": str(len(self.accepted)), "ShardId": "shardId-000000000000"})
        return {"FailedRecordCount": sum(1 for o in out if "ErrorCode" in o), "Records": out}


def _wire(cameras_registry, stream, queue=None) -> MemoryQueue:
    queue = queue or MemoryQueue()
    settings = Settings(kinesis_aggregation=False, max_clock_skew_seconds=10 * 365 * 86400)
    ingest_handler.use(stream, queue, cameras_registry, settings)
    return queue


def _batch_event(key_id: str, n: int, tag: str) -> dict:
    frames = [{"image_base64": hostile.b64(hostile.fresh_jpeg(f"{tag}-{i}"))} for i in range(n)]
    return build_event(json.dumps({"frames": frames}), "application/json", key_id=key_id)


def _acknowledged_ids(resp: dict) -> set[str]:
    doc = body_of(resp)
    return {f["frame_id"] for f in doc["frames"]} | {c["read_id"] for f in doc["frames"] for c in f["codes"]}


def _ids(blobs) -> list[str]:
    return [from_bytes(b).record_id for b in blobs]


@pytest.mark.parametrize("seed", range(6))
def test_kinesis_throttling_is_retried_and_every_acknowledged_record_arrives_once_per_attempt(cameras, seed):
    """Entries throttled at random (40 %): the writer re-sends only failed entries; a 200 means all arrived."""
    client = FlakyKinesis(p=0.4, seed=seed)
    writer = KinesisStreamWriter(client, "reads", Backoff(budget_seconds=5, base_seconds=0.001, cap_seconds=0.005))
    _wire(cameras.registry, writer)
    key_id = cameras.registry.get("door-1").key_id
    try:
        resp = ingest_handler.handler(_batch_event(key_id, 4, f"throttle-{seed}"))
    finally:
        ingest_handler.reset()
    assert resp["statusCode"] == 200, resp["body"]
    ids = _ids(client.accepted)
    assert len(ids) == len(set(ids)), "an accepted entry was sent again"
    assert _acknowledged_ids(resp) <= set(ids)
    assert client.calls > 1  # throttling really happened and was retried


def test_kinesis_throttled_until_the_budget_expires_is_503_and_the_retry_loses_nothing(cameras):
    client = FlakyKinesis(p=1.0, seed=0)  # ProvisionedThroughputExceeded on every entry
    writer = KinesisStreamWriter(client, "reads", Backoff(budget_seconds=0.3, base_seconds=0.01, cap_seconds=0.05))
    queue = _wire(cameras.registry, writer)
    key_id = cameras.registry.get("door-1").key_id
    event = _batch_event(key_id, 3, "budget")
    try:
        t0 = time.monotonic()
        first = ingest_handler.handler(event)
        elapsed = time.monotonic() - t0
        assert first["statusCode"] == 503 and first["headers"]["Retry-After"]
        assert body_of(first)["error"]["code"] == "unavailable"
        assert elapsed < 2, "the retries must stop when the budget is spent"
        assert client.accepted == [] and queue.messages == []  # stream first: nothing reached the box office
        client.p = 0.0  # the shard has capacity again; the camera retries the same request
        second = ingest_handler.handler(event)
    finally:
        ingest_handler.reset()
    assert second["statusCode"] == 200
    ids = _ids(client.accepted)
    assert set(ids) == _acknowledged_ids(second) | {json.loads(m.body)["read_id"] for m in queue.messages}
    assert len(ids) == len(set(ids)) and len(queue.messages) == 1


# ------------------------------------------------------------------------------------------- SQS


class FailingSqs:
    """A boto3-shaped SQS client failing the first ``fail_calls`` SendMessageBatch calls (server side)."""

    def __init__(self, fail_calls: int, partial: bool = False) -> None:
        self.fail_calls = fail_calls
        self.partial = partial
        self.calls = 0
        self.sent: dict[str, str] = {}  # dedup id -> body (FIFO de-duplication)

    def send_message_batch(self, QueueUrl, Entries):
        self.calls += 1
        failing = self.calls <= self.fail_calls
        ok, failed = [], []
        for i, e in enumerate(Entries):
            if failing and (not self.partial or i % 2 == 0):
                failed.append({"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "try again"})
            else:
                self.sent.setdefault(e["MessageDeduplicationId"], e["MessageBody"])
                ok.append({"Id": e["Id"], "MessageId": f"m{len(self.sent)}"})
        return {"Successful": ok, "Failed": failed}


def test_sqs_failures_within_the_budget_are_retried_and_each_ticket_is_queued_once():
    client = FailingSqs(fail_calls=3, partial=True)
    q = SqsMessageQueue(client, "https://sqs/q.fifo", Backoff(budget_seconds=5, base_seconds=0.001, cap_seconds=0.01))
    msgs = [QueueMessage(f'{{"n": {i}}}'.encode(), "cam", f"dedup-{i}") for i in range(15)]
    q.send(msgs)
    assert sorted(client.sent) == sorted(m.dedup_id for m in msgs) and client.calls > 2


def test_sqs_down_past_the_budget_is_503_and_the_retry_queues_each_ticket_once(cameras):
    client = FailingSqs(fail_calls=10_000)
    q = SqsMessageQueue(client, "https://sqs/q.fifo", Backoff(budget_seconds=0.2, base_seconds=0.01, cap_seconds=0.05))
    stream = MemoryStream()
    _wire(cameras.registry, stream, q)
    event = _batch_event(cameras.registry.get("door-1").key_id, 2, "sqs-down")
    try:
        first = ingest_handler.handler(event)
        assert first["statusCode"] == 503 and client.sent == {}
        client.fail_calls = 0
        second = ingest_handler.handler(event)
    finally:
        ingest_handler.reset()
    assert second["statusCode"] == 200
    assert len(client.sent) == 1  # one valid ticket in both frames: one box-office message
    # the stream got the records twice (before the 503 and on the retry): same ids, consumers dedupe
    ids = [r.record_id for r in stream.records()]
    assert set(ids) == _acknowledged_ids(second) and len(ids) == 2 * len(set(ids))


# ------------------------------------------------------------------------------------------- box office


def _queue_reads(store: SqliteStore, cameras, n: int, tag: str) -> list[str]:
    """Post ``n`` frames with distinct sold tickets through the handler into the SQLite store."""
    ingest_handler.use(store, store, cameras.registry, Settings(max_clock_skew_seconds=3600))
    key_id = cameras.registry.get("door-1").key_id
    tickets = []
    try:
        for i in range(n):
            t = f"TKT:REX:R1:S20261130-2030:T{tag}{i:03d}:F{i}"
            tickets.append(f"T{tag}{i:03d}")
            img = hostile.render_ticket(t, seed=i)
            resp = ingest_handler.handler(build_event(img, "image/jpeg", key_id=key_id))
            assert resp["statusCode"] == 200 and body_of(resp)["frames"][0]["codes"], resp["body"][:200]
    finally:
        ingest_handler.reset()
    return tickets


def _forward_until_empty(store: SqliteStore, timeout_s: float, on_round=None) -> None:
    """The local forwarder loop (as ``local.pipeline``): receive, ``ingest.forwarder.forward``, ack/nack."""
    from ingest.boxoffice import DELIVERED, PERMANENT

    deadline = time.monotonic() + timeout_s
    rounds = 0
    while time.monotonic() < deadline:
        depth = store.queue_depth()
        if depth["ready"] + depth["inflight"] == 0:
            return
        if on_round:
            on_round(rounds)
        rounds += 1
        for m in store.receive(10, visibility_s=2.0):
            try:
                delivery = ingest_forwarder.forward(m.body)
            except Exception as e:  # the outcome could not be published: retry later
                store.nack(m.receipt, delay_s=0.05, error=str(e))
                continue
            if delivery.disposition == DELIVERED:
                store.ack(m.receipt)
            elif delivery.disposition == PERMANENT:
                store.nack(m.receipt, error=delivery.detail)
            else:
                store.nack(m.receipt, delay_s=0.05, error=delivery.detail)
        time.sleep(0.05)
    raise AssertionError(f"queue not drained in {timeout_s} s: {store.queue_depth()}")


def _outcomes(store: SqliteStore) -> list:
    from stream.aggregate import deaggregate_many

    rows = store.read(0, 100_000)
    return [r for r in (from_bytes(b) for b in deaggregate_many(x.data for x in rows)) if r.kind == "box_office"]


@pytest.mark.parametrize("mode", ["flapping", "slow", "down-then-up"])
def test_box_office_faults_end_with_exactly_one_accepted_answer_per_ticket(cameras, tmp_path, mode):
    """Every sold ticket is eventually accepted exactly once; no read is lost; retries reuse Idempotency-Key."""
    store = SqliteStore(tmp_path / "stream.db", max_attempts=50)
    tickets = _queue_reads(store, cameras, 6, mode[:1].upper())
    bo = BoxOfficeServer(sold=tickets, token="bo-secret", fail_every=2 if mode == "flapping" else 0)
    if mode == "slow":
        bo.delay_s = 0.6  # longer than the forwarder's timeout below: every first attempt times out
    port = bo.server_address[1]
    if mode != "down-then-up":
        bo.start()
    else:
        bo.server_close()  # nothing listens on the port: connection refused
    ingest_forwarder.use(store, BoxOfficeConfig(f"http://127.0.0.1:{port}/entries", "bo-secret", 0.3))

    def on_round(n: int) -> None:
        nonlocal bo
        if mode == "slow" and n == 3:
            bo.delay_s = 0.0  # the box office recovers
        if mode == "down-then-up" and n == 3:
            bo = BoxOfficeServer(("127.0.0.1", port), sold=tickets, token="bo-secret").start()

    try:
        _forward_until_empty(store, 60, on_round)
    finally:
        ingest_forwarder.reset()
        with contextlib.suppress(Exception):
            bo.stop()
    assert sorted(bo.used) == sorted(tickets), "every sold ticket entered exactly once"
    assert bo.answers["accepted"] == len(tickets) and bo.answers["already_used"] == 0
    accepted = {o.read_id for o in _outcomes(store) if o.outcome == "accepted"}
    assert len(accepted) == len(tickets)  # one accepted outcome per read (outcome ids dedupe any re-publish)
    assert store.dead_letters() == []


# ------------------------------------------------------------------------------------------- disk full


@pytest.fixture
def tiny_disk(tmp_path):
    """A 3 MB tmpfs (needs root); skipped where mounting is not allowed."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last byte; returns the filler file."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:  # unbuffered: the last partial write fails here, not at close
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while f.write(b"\0" * size):
                    pass
    return filler


def test_disk_full_lake_fails_the_batch_cleanly_and_recovers_exactly_once(tiny_disk, tmp_path, cameras):
    store = SqliteStore(tmp_path / "stream.db")  # the stream on a healthy disk, the lake on the tiny one
    lake = tiny_disk / "lake"
    ingest_handler.use(store, store, cameras.registry, Settings(max_clock_skew_seconds=3600))
    key_id = cameras.registry.get("door-1").key_id
    try:
        for i in range(5):
            resp = ingest_handler.handler(build_event(hostile.fresh_jpeg(f"disk-{i}"), "image/jpeg", key_id=key_id))
            assert resp["statusCode"] == 200
    finally:
        ingest_handler.reset()
    filler = _fill(tiny_disk)
    etl = LocalEtl(store, lake, batch_records=1000)
    with pytest.raises(OSError) as e:
        etl.process_available()
    assert "No space left" in str(e.value) or e.value.errno == 28
    assert store.checkpoint("etl").seq == 0  # nothing committed
    assert not list(lake.rglob("*.tmp")) and not list(lake.rglob("*.parquet"))  # no torn or partial file
    filler.unlink()  # space frees up; the ETL is restarted
    LocalEtl(store, lake, batch_records=1000).process_available()
    frames = lake_rows(lake, "frames")
    assert len(frames) == 5 and len({r["frame_id"] for r in frames}) == 5
    assert len(lake_rows(lake, "reads")) == 5


def test_disk_full_stream_answers_503_with_a_clear_reason_and_the_retry_succeeds(tiny_disk, cameras):
    store = SqliteStore(tiny_disk / "stream.db")
    ingest_handler.use(store, store, cameras.registry, Settings(max_clock_skew_seconds=3600))
    key_id = cameras.registry.get("door-1").key_id
    filler = _fill(tiny_disk)
    event = build_event(hostile.fresh_jpeg("full"), "image/jpeg", key_id=key_id)
    try:
        resp = None
        for i in range(20):  # SQLite may still fit a page or two in its WAL; keep posting until full bites
            resp = ingest_handler.handler(build_event(hostile.fresh_jpeg(f"full-{i}"), "image/jpeg", key_id=key_id))
            if resp["statusCode"] == 503:
                break
        assert resp["statusCode"] == 503, resp["body"]
        assert body_of(resp)["error"]["code"] == "unavailable" and resp["headers"]["Retry-After"]
        filler.unlink()
        ok = ingest_handler.handler(event)
    finally:
        ingest_handler.reset()
    assert ok["statusCode"] == 200
    store.close()
    reopened = SqliteStore(tiny_disk / "stream.db")  # the database is intact after the failed writes
    assert reopened._query("PRAGMA integrity_check") == [("ok",)]
    assert reopened.head() >= 1


def test_disk_full_without_root_is_simulated_as_enospc_in_the_lake_writer(tmp_path, cameras, monkeypatch):
    """The same proof as above where tmpfs cannot be mounted: the writer's fsync fails with ENOSPC."""
    import errno

    from etl import writer

    store = SqliteStore(tmp_path / "stream.db")
    ingest_handler.use(store, store, cameras.registry, Settings(max_clock_skew_seconds=3600))
    try:
        key_id = cameras.registry.get("door-1").key_id
        ingest_handler.handler(build_event(hostile.fresh_jpeg("enospc"), "image/jpeg", key_id=key_id))
    finally:
        ingest_handler.reset()
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer.os, "fsync", full)
    with pytest.raises(OSError):
        LocalEtl(store, tmp_path / "lake", batch_records=100).process_available()
    assert not list((tmp_path / "lake").rglob("*.parquet")) and not list((tmp_path / "lake").rglob("*.tmp"))
    monkeypatch.setattr(writer.os, "fsync", real_fsync)
    LocalEtl(store, tmp_path / "lake", batch_records=100).process_available()
    assert len(lake_rows(tmp_path / "lake", "frames")) == 1


# ------------------------------------------------------------------------------------------- clock skew


@pytest.mark.parametrize("offset_min", [-59, -30, 0, 9])
def test_camera_clock_skew_within_the_limit_is_accepted_and_partitioned_by_event_time(cameras, tmp_path, offset_min):
    store = SqliteStore(tmp_path / "stream.db")
    ingest_handler.use(store, store, cameras.registry, Settings(max_clock_skew_seconds=3600))
    captured = now_utc() + timedelta(minutes=offset_min)
    event = build_event(
        hostile.fresh_jpeg(f"skew{offset_min}"), "image/jpeg", key_id=cameras.registry.get("door-1").key_id,
        headers={"X-Captured-At": format_ts(captured)},
    )  # fmt: skip
    try:
        resp = ingest_handler.handler(event)
    finally:
        ingest_handler.reset()
    assert resp["statusCode"] == 200
    LocalEtl(store, tmp_path / "lake", batch_records=100).process_available()
    (read,) = lake_rows(tmp_path / "lake", "reads")
    assert (read["dt"], read["hour"]) == (captured.strftime("%Y-%m-%d"), captured.strftime("%H"))
    assert not list((tmp_path / "lake").glob("quarantine/*/*/*.parquet"))


@pytest.mark.parametrize("offset_min", [-61, 61, -60 * 24 * 365])
def test_camera_clock_skew_beyond_the_limit_is_422_and_publishes_nothing(cameras, offset_min):
    stream, queue = MemoryStream(), MemoryQueue()
    ingest_handler.use(stream, queue, cameras.registry, Settings(max_clock_skew_seconds=3600))
    event = build_event(
        hostile.good_jpeg(), "image/jpeg", key_id=cameras.registry.get("door-1").key_id,
        headers={"X-Captured-At": format_ts(now_utc() + timedelta(minutes=offset_min))},
    )  # fmt: skip
    try:
        resp = ingest_handler.handler(event)
    finally:
        ingest_handler.reset()
    assert resp["statusCode"] == 422 and "clock" in body_of(resp)["error"]["reason"]
    assert stream.entries == [] and queue.messages == []


@pytest.mark.parametrize(("ahead", "status"), [(timedelta(minutes=9), 200), (timedelta(hours=1), 422)])
def test_a_capture_time_the_api_accepts_is_never_quarantined_by_the_etl(cameras, tmp_path, ahead, status):
    """A camera clock ahead of the server: within MAX_CAPTURE_AHEAD the read reaches the reads table; beyond it
    the API refuses the frame with 422 (the ETL would quarantine it), so a 200 always means 'in the lake'."""
    store = SqliteStore(tmp_path / "stream.db")
    ingest_handler.use(store, store, cameras.registry, Settings())  # the default skew limit (24 h behind)
    captured = now_utc() + ahead
    event = build_event(
        hostile.fresh_jpeg("fast-clock"), "image/jpeg", key_id=cameras.registry.get("door-1").key_id,
        headers={"X-Captured-At": format_ts(captured)},
    )  # fmt: skip
    try:
        assert ingest_handler.handler(event)["statusCode"] == status
    finally:
        ingest_handler.reset()
    LocalEtl(store, tmp_path / "lake", batch_records=100).process_available()
    assert len(lake_rows(tmp_path / "lake", "reads")) == (1 if status == 200 else 0)
