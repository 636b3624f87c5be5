"""KinesisStreamWriter: batching, retry of failed entries only, backoff within a budget, PublishError."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import Stubber
from moto import mock_aws

from stream.aggregate import deaggregate_many, pack
from stream.kinesis import Backoff, KinesisStreamWriter, batches
from stream.ports import PublishError, StreamEntry


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def backoff(fake: FakeClock, budget: float = 5.0) -> Backoff:
    return Backoff(budget_seconds=budget, base_seconds=0.05, cap_seconds=1.0, sleep=fake.sleep, clock=fake.clock,
                   rand=lambda: 1.0)  # fmt: skip


class ScriptedKinesis:
    """A fake client: each put_records call fails the entries whose data is in ``fail_rounds[call]``."""

    def __init__(self, fail_rounds: list[set[bytes] | Exception]) -> None:
        self.fail_rounds = fail_rounds
        self.calls: list[list[bytes]] = []
        self.accepted: list[bytes] = []

    def put_records(self, StreamName: str, Records: list[dict]) -> dict:
        datas = [r["Data"] for r in Records]
        assert all("ExplicitHashKey" not in r for r in Records)
        self.calls.append(datas)
        round_ = self.fail_rounds[len(self.calls) - 1] if len(self.calls) <= len(self.fail_rounds) else set()
        if isinstance(round_, Exception):
            raise round_
        out = []
        for d in datas:
            if d in round_:
                out.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"})
            else:
                self.accepted.append(d)
                out.append({"SequenceNumber": "1", "ShardId": "shardId-000000000000"})
        return {"FailedRecordCount": sum(1 for d in datas if d in round_), "Records": out}


def entries(n: int) -> list[StreamEntry]:
    return [StreamEntry(f"cam-{i % 2}", f'{{"i":{i}}}'.encode()) for i in range(n)]


def throttled() -> ClientError:
    return ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, "PutRecords")


def test_failed_entries_alone_are_resent_until_accepted():
    es = entries(5)
    fake = FakeClock()
    client = ScriptedKinesis([{es[1].data, es[3].data}, {es[3].data}])
    KinesisStreamWriter(client, "reads", backoff(fake)).put(es)
    assert client.calls == [[e.data for e in es], [es[1].data, es[3].data], [es[3].data]]
    assert sorted(client.accepted) == sorted(e.data for e in es)
    assert fake.sleeps == [0.05, 0.1]  # exponential (jitter pinned to its maximum)


def test_backoff_is_capped_and_stops_before_the_budget_is_spent():
    fake = FakeClock()
    b = Backoff(budget_seconds=4.0, base_seconds=0.5, cap_seconds=1.0, sleep=fake.sleep, clock=fake.clock,
                rand=lambda: 1.0)  # fmt: skip
    delays = []
    for d in b.delays():
        delays.append(d)
        fake.sleep(d)
    assert delays == [0.5, 1.0, 1.0, 1.0]  # 3.5 s slept; one more second would pass the 4 s deadline
    assert fake.now < 4.0


def test_backoff_jitter_draws_below_the_exponential_ceiling():
    fake = FakeClock()
    b = Backoff(budget_seconds=10.0, base_seconds=0.1, cap_seconds=0.4, sleep=fake.sleep, clock=fake.clock,
                rand=lambda: 0.5)  # fmt: skip
    gen = b.delays()
    assert [next(gen) for _ in range(4)] == [0.05, 0.1, 0.2, 0.2]


def test_entries_still_failing_after_the_budget_raise_publish_error():
    es = entries(3)
    fake = FakeClock()
    client = ScriptedKinesis([{es[0].data}] * 1000)
    with pytest.raises(PublishError) as ei:
        KinesisStreamWriter(client, "reads", backoff(fake, budget=2.0)).put(es)
    assert ei.value.failed == 1
    assert "ProvisionedThroughputExceededException" in str(ei.value)
    assert fake.now < 2.0
    assert len(client.calls) > 3


def test_whole_call_throttling_and_connection_errors_are_retried():
    es = entries(2)
    fake = FakeClock()
    client = ScriptedKinesis([throttled(), EndpointConnectionError(endpoint_url="https://kinesis"), set()])
    KinesisStreamWriter(client, "reads", backoff(fake)).put(es)
    assert len(client.calls) == 3
    assert sorted(client.accepted) == sorted(e.data for e in es)


def test_non_retryable_errors_fail_at_once():
    fake = FakeClock()
    missing = ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "no stream"}}, "PutRecords")
    client = ScriptedKinesis([missing])
    with pytest.raises(PublishError, match="ResourceNotFoundException"):
        KinesisStreamWriter(client, "reads", backoff(fake)).put(entries(2))
    assert len(client.calls) == 1
    assert fake.sleeps == []


def test_batches_respect_the_500_entry_and_5_mib_limits():
    many = [StreamEntry("k", b"x") for _ in range(1201)]
    assert [len(b) for b in batches(many)] == [500, 500, 201]
    big = [StreamEntry("k", b"x" * (1024 * 1024 - 10)) for _ in range(6)]
    sizes = [sum(len(e.data) + 1 for e in b) for b in batches(big)]
    assert len(sizes) == 2 and all(s <= 5 * 1024 * 1024 for s in sizes)


def test_stubbed_boto3_partial_failure_is_retried_with_the_failed_entry_only():
    client = boto3.client("kinesis", region_name="sa-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    es = entries(2)
    with Stubber(client) as stub:
        stub.add_response(
            "put_records",
            {"FailedRecordCount": 1, "Records": [
                {"SequenceNumber": "1", "ShardId": "shardId-000000000000"},
                {"ErrorCode": "InternalFailure", "ErrorMessage": "oops"}]},
            {"StreamName": "reads", "Records": [{"Data": e.data, "PartitionKey": e.partition_key} for e in es]},
        )  # fmt: skip
        stub.add_response(
            "put_records",
            {"Records": [{"SequenceNumber": "2", "ShardId": "shardId-000000000000"}]},
            {"StreamName": "reads", "Records": [{"Data": es[1].data, "PartitionKey": es[1].partition_key}]},
        )
        fake = FakeClock()
        KinesisStreamWriter(client, "reads", backoff(fake)).put(es)
        stub.assert_no_pending_responses()


def test_records_put_on_moto_read_back_identical(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("kinesis", region_name="sa-east-1")
        client.create_stream(StreamName="reads", ShardCount=1)
        records = [("cam-a", f'{{"i":{i}}}'.encode()) for i in range(50)]
        KinesisStreamWriter(client, "reads").put(pack(records))
        shard = client.list_shards(StreamName="reads")["Shards"][0]["ShardId"]
        it = client.get_shard_iterator(StreamName="reads", ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        got = client.get_records(ShardIterator=it["ShardIterator"])["Records"]
        assert len(got) == 1  # one aggregate for one camera
        assert deaggregate_many(r["Data"] for r in got) == [d for _, d in records]


def test_an_empty_stream_name_is_a_configuration_error():
    with pytest.raises(ValueError, match="READS_STREAM_NAME"):
        KinesisStreamWriter(object(), "")
