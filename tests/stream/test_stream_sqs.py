"""SqsMessageQueue: FIFO de-duplication on moto, batches of 10, retries of failed entries, sender faults."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from stream.kinesis import Backoff
from stream.ports import PublishError, QueueMessage
from stream.sqs import SqsMessageQueue, message_text


def no_wait(budget: float = 5.0) -> Backoff:
    t = [0.0]

    def sleep(s: float) -> None:
        t[0] += s

    return Backoff(budget_seconds=budget, sleep=sleep, clock=lambda: t[0])


def msg(i: int, dedup: str | None = None, group: str = "cam-a") -> QueueMessage:
    return QueueMessage(json.dumps({"i": i}).encode(), group, dedup or f"d{i}")


@pytest.fixture
def fifo(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        sqs = boto3.client("sqs", region_name="sa-east-1")
        url = sqs.create_queue(QueueName="q.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        yield sqs, url


def receive_all(sqs, url) -> list[dict]:
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
        if not got:
            return out
        out.extend(got)
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_messages_arrive_once_per_dedup_id_with_their_group(fifo):
    sqs, url = fifo
    q = SqsMessageQueue(sqs, url)
    q.send([msg(1), msg(2)])
    q.send([msg(1), msg(3, dedup="d2")])  # a resend and a new body under an already-used dedup id
    got = receive_all(sqs, url)
    assert sorted(json.loads(m["Body"])["i"] for m in got) == [1, 2]
    assert {m["Attributes"]["MessageGroupId"] for m in got} == {"cam-a"}
    assert {m["Attributes"]["MessageDeduplicationId"] for m in got} == {"d1", "d2"}


def test_more_than_ten_messages_go_out_in_several_batches(fifo):
    sqs, url = fifo
    q = SqsMessageQueue(sqs, url)
    q.send([msg(i) for i in range(23)])
    assert sorted(json.loads(m["Body"])["i"] for m in receive_all(sqs, url)) == list(range(23))


class ScriptedSqs:
    def __init__(self, rounds: list) -> None:
        self.rounds = rounds
        self.calls: list[list[str]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict]) -> dict:
        self.calls.append([e["MessageDeduplicationId"] for e in Entries])
        r = self.rounds[len(self.calls) - 1] if len(self.calls) <= len(self.rounds) else {}
        if isinstance(r, Exception):
            raise r
        failed = [
            {
                "Id": e["Id"],
                "SenderFault": r[e["MessageDeduplicationId"]],
                "Code": "InvalidMessageContents" if r[e["MessageDeduplicationId"]] else "InternalError",
                "Message": "x",
            }
            for e in Entries
            if e["MessageDeduplicationId"] in r
        ]
        ok = [{"Id": e["Id"], "MessageId": "m", "MD5OfMessageBody": "x"} for e in Entries if e["Id"] not in r]
        return {"Successful": ok, "Failed": failed}


def test_server_side_failures_are_resent_alone():
    client = ScriptedSqs([{"d1": False}, {}])
    SqsMessageQueue(client, "https://q", no_wait()).send([msg(0), msg(1), msg(2)])
    assert client.calls == [["d0", "d1", "d2"], ["d1"]]


def test_a_queue_that_keeps_failing_raises_publish_error():
    client = ScriptedSqs([{"d0": False}] * 10_000)
    with pytest.raises(PublishError) as ei:
        SqsMessageQueue(client, "https://q", no_wait(budget=1.0)).send([msg(0)])
    assert ei.value.failed == 1


def test_sender_faults_are_not_retried():
    client = ScriptedSqs([{"d0": True}])
    client_fault = ScriptedSqs([ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "SendMessageBatch")])
    with pytest.raises(PublishError, match="refused"):
        SqsMessageQueue(client, "https://q", no_wait()).send([msg(0)])
    with pytest.raises(PublishError, match="AccessDenied"):
        SqsMessageQueue(client_fault, "https://q", no_wait()).send([msg(0)])
    assert len(client.calls) == 1 and len(client_fault.calls) == 1


def test_bodies_with_characters_sqs_refuses_are_sent_as_ascii_json(fifo):
    sqs, url = fifo
    body = json.dumps({"text": "ticket \uffff\ufffe end"}, ensure_ascii=False).encode("utf-8")
    assert message_text(body).isascii()
    assert json.loads(message_text(body)) == json.loads(body)
    SqsMessageQueue(sqs, url).send([QueueMessage(body, "cam", "x1")])
    assert json.loads(receive_all(sqs, url)[0]["Body"]) == json.loads(body)
    with pytest.raises(ValueError, match="UTF-8"):
        message_text(b"\xff\xfe")


def test_ids_outside_the_sqs_limits_are_refused_before_sending():
    with pytest.raises(ValueError, match="dedup_id"):
        SqsMessageQueue(ScriptedSqs([]), "https://q").send([QueueMessage(b"{}", "g", "")])
