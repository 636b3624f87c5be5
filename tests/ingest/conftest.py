"""Fixtures of the ingest tests: camera registry, in-memory ports, a wired handler, Lambda context, moto AWS."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "monuv-qr-test")

from ingest import handler as ingest_handler
from ingest.cameras import Registry
from ingest.settings import LocalContext, Settings
from stream.aggregate import deaggregate_many
from stream.ports import PublishError, QueueMessage, StreamEntry
from stream.schema import Record, from_bytes
from tests.events.make_events import NOW, REGISTRY


@dataclass
class MemoryStream:
    """StreamWriter keeping entries in a list; ``fail`` makes every put raise PublishError."""

    entries: list[StreamEntry] = field(default_factory=list)
    fail: bool = False
    calls: int = 0

    def put(self, entries: Sequence[StreamEntry]) -> None:
        self.calls += 1
        if self.fail:
            raise PublishError("stream down (test)", len(entries))
        self.entries.extend(entries)

    def records(self) -> list[Record]:
        return [from_bytes(b) for b in deaggregate_many(e.data for e in self.entries)]


@dataclass
class MemoryQueue:
    """MessageQueue keeping messages; like SQS FIFO it drops a repeated dedup id."""

    messages: list[QueueMessage] = field(default_factory=list)
    sent: list[QueueMessage] = field(default_factory=list)
    fail: bool = False

    def send(self, messages: Sequence[QueueMessage]) -> None:
        if self.fail:
            raise PublishError("queue down (test)", len(messages))
        self.sent.extend(messages)
        seen = {m.dedup_id for m in self.messages}
        for m in messages:
            if m.dedup_id not in seen:
                self.messages.append(m)
                seen.add(m.dedup_id)


@pytest.fixture
def registry() -> Registry:
    return Registry.from_json(json.dumps(REGISTRY), "test registry")


@pytest.fixture
def settings() -> Settings:
    return Settings(kinesis_aggregation=True, max_clock_skew_seconds=3600, dedup_window_seconds=300)


@pytest.fixture
def ports() -> tuple[MemoryStream, MemoryQueue]:
    return MemoryStream(), MemoryQueue()


@pytest.fixture
def wired(ports, registry, settings) -> Iterator[tuple[MemoryStream, MemoryQueue]]:
    """The Lambda handler wired to in-memory ports, the test registry and a clock fixed at NOW."""
    stream, queue = ports
    ingest_handler.use(stream, queue, registry, settings, clock=lambda: NOW)
    yield stream, queue
    ingest_handler.reset()


@pytest.fixture
def lambda_context() -> LocalContext:
    return LocalContext(function_name="ingest-test", aws_request_id="req-test-1")


@pytest.fixture
def aws_env(monkeypatch) -> None:
    """Fake credentials and region for moto (never a real account)."""
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "sa-east-1",
    }.items():
        monkeypatch.setenv(k, v)


@dataclass
class Aws:
    kinesis: object
    sqs: object
    stream_name: str
    queue_url: str
    dlq_url: str

    def stream_records(self) -> list[Record]:
        """Every record on the stream: GetRecords on each shard, de-aggregated, decoded."""
        blobs = []
        for shard in self.kinesis.list_shards(StreamName=self.stream_name)["Shards"]:
            it = self.kinesis.get_shard_iterator(
                StreamName=self.stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while it:
                resp = self.kinesis.get_records(ShardIterator=it, Limit=1000)
                blobs.extend(r["Data"] for r in resp["Records"])
                if not resp["Records"]:
                    break
                it = resp.get("NextShardIterator")
        return [from_bytes(b) for b in deaggregate_many(blobs)]

    def queue_messages(self) -> list[dict]:
        out: list[dict] = []
        while True:
            resp = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
            )
            msgs = resp.get("Messages", [])
            if not msgs:
                return out
            out.extend(msgs)
            for m in msgs:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture
def aws(aws_env) -> Iterator[Aws]:
    """moto Kinesis stream (2 shards) + SQS FIFO queue with a FIFO DLQ (redrive after 3 receives)."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        kinesis = boto3.client("kinesis", region_name="sa-east-1")
        sqs = boto3.client("sqs", region_name="sa-east-1")
        kinesis.create_stream(StreamName="reads", ShardCount=2)
        dlq = sqs.create_queue(QueueName="box-office-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(
            QueueName="box-office.fifo",
            Attributes={
                "FifoQueue": "true",
                "ContentBasedDeduplication": "false",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"}),
            },
        )["QueueUrl"]
        yield Aws(kinesis, sqs, "reads", url, dlq)
