"""Handler + Kinesis/SQS adapters on moto: read back what was published, SQS dedup, partial failures -> 503."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from ingest import handler as ingest_handler
from stream.kinesis import Backoff, KinesisStreamWriter
from stream.schema import FrameSummary, Read, from_bytes
from stream.sqs import SqsMessageQueue
from tests.events.make_events import TICKET_1, build_event, frame, load


def call(event) -> tuple[int, dict]:
    resp = ingest_handler.handler(event)
    return resp["statusCode"], json.loads(resp["body"])


def instant_backoff(budget: float = 2.0) -> Backoff:
    t = [0.0]

    def sleep(s: float) -> None:
        t[0] += s

    return Backoff(budget_seconds=budget, sleep=sleep, clock=lambda: t[0])


class FlakyKinesis:
    """Wraps the moto client: the first ``failing_calls`` put_records calls fail every other entry."""

    def __init__(self, client, failing_calls: int) -> None:
        self.client = client
        self.failing_calls = failing_calls
        self.calls = 0

    def put_records(self, StreamName: str, Records: list[dict]) -> dict:
        self.calls += 1
        if self.calls > self.failing_calls:
            return self.client.put_records(StreamName=StreamName, Records=Records)
        keep = Records[1::2]
        resp = self.client.put_records(StreamName=StreamName, Records=keep) if keep else {"Records": []}
        results, ok = [], iter(resp["Records"])
        for i in range(len(Records)):
            results.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow"}
                           if i % 2 == 0 else next(ok))  # fmt: skip
        return {"FailedRecordCount": (len(Records) + 1) // 2, "Records": results}


@pytest.fixture
def on_moto(aws, registry, settings):
    def wire(kinesis=None, aggregation: bool = True, budget: float = 2.0):
        stream = KinesisStreamWriter(kinesis or aws.kinesis, aws.stream_name, instant_backoff(budget))
        queue = SqsMessageQueue(aws.sqs, aws.queue_url, instant_backoff(budget))
        from tests.events.make_events import NOW

        ingest_handler.use(stream, queue, registry, replace(settings, kinesis_aggregation=aggregation), lambda: NOW)

    yield wire
    ingest_handler.reset()


@pytest.mark.parametrize("aggregation", [True, False])
def test_published_records_read_back_from_kinesis_match_the_responses(aws, on_moto, aggregation):
    on_moto(aggregation=aggregation)
    answered = {}
    for name in ("upload_binary_jpeg", "upload_json", "upload_batch", "truncated_jpeg"):
        status, body = call(load(name))
        answered[name] = (status, body)
    records = aws.stream_records()
    reads = {r.read_id: r for r in records if isinstance(r, Read)}
    frames = {r.frame_id: r for r in records if isinstance(r, FrameSummary)}
    want_reads = {c["read_id"]: c for _, b in answered.values() for f in b.get("frames", []) for c in f["codes"]}
    assert set(reads) == set(want_reads)
    for rid, code in want_reads.items():
        assert (reads[rid].text, reads[rid].ticket_valid) == (code["text"], code["ticket_valid"])
        assert reads[rid].camera_id == "rex-1-door" and reads[rid].cinema_id == "REX"
    want_frames = {f["frame_id"]: f["outcome"] for _, b in answered.values() for f in b.get("frames", [])}
    want_frames[answered["truncated_jpeg"][1]["error"]["frame_id"]] = "rejected"
    assert {fid: f.outcome for fid, f in frames.items()} == want_frames
    sent = sum(1 + len(f["codes"]) for _, b in answered.values() for f in b.get("frames", [])) + 1  # + the rejected
    assert len(records) == sent  # each request's records exactly once (two requests share a frame: same ids)


def test_kinesis_entries_are_aggregates_per_camera_when_aggregation_is_on(aws, on_moto):
    on_moto(aggregation=True)
    call(load("upload_batch"))
    shard_records = []
    for shard in aws.kinesis.list_shards(StreamName=aws.stream_name)["Shards"]:
        it = aws.kinesis.get_shard_iterator(
            StreamName=aws.stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        shard_records += aws.kinesis.get_records(ShardIterator=it)["Records"]
    assert len(shard_records) == 1 and shard_records[0]["PartitionKey"] == "rex-1-door"
    assert shard_records[0]["Data"][:4] == b"\xf3\x89\x9a\xc2"


def test_sqs_gets_one_message_per_valid_ticket_deduplicated_across_retries_and_frames(aws, on_moto):
    on_moto()
    assert call(load("upload_binary_jpeg"))[0] == 200
    assert call(load("upload_binary_jpeg"))[0] == 200  # the camera retried
    other_frame_same_ticket = build_event(frame([TICKET_1], seed=9), "image/jpeg")
    assert call(other_frame_same_ticket)[0] == 200
    call(load("upload_json"))  # T000124 (valid) + a URL that is no ticket
    msgs = aws.queue_messages()
    bodies = [from_bytes(m["Body"].encode()) for m in msgs]
    assert sorted(b.ticket_id for b in bodies) == ["T000123", "T000124"]
    assert all(isinstance(b, Read) and b.ticket_valid for b in bodies)
    assert {m["Attributes"]["MessageGroupId"] for m in msgs} == {"rex-1-door"}


def test_kinesis_partial_failures_are_retried_without_loss_or_duplicates(aws, on_moto):
    flaky = FlakyKinesis(aws.kinesis, failing_calls=2)
    on_moto(kinesis=flaky, aggregation=False)
    status, _body = call(load("upload_json"))  # 3 records: summary + 2 reads
    assert status == 200 and flaky.calls == 3
    records = aws.stream_records()
    assert len(records) == 3 and len({r.record_id for r in records}) == 3


def test_kinesis_failures_beyond_the_budget_answer_503_and_a_retry_later_succeeds(aws, on_moto):
    flaky = FlakyKinesis(aws.kinesis, failing_calls=10_000)
    on_moto(kinesis=flaky, aggregation=False, budget=0.5)
    resp = ingest_handler.handler(load("upload_json"))
    assert resp["statusCode"] == 503 and resp["multiValueHeaders"]["Retry-After"] == ["5"]
    assert aws.queue_messages() == []  # box office not told about reads the stream did not take
    flaky.failing_calls = 0
    status, _ = call(load("upload_json"))
    assert status == 200
    ids = [r.record_id for r in aws.stream_records()]
    assert len(set(ids)) == 3  # same ids on the retry: consumers de-duplicate the partial first attempt
    assert len(aws.queue_messages()) == 1
