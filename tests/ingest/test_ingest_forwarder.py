"""Box-office forwarder against a local HTTP box office on 127.0.0.1: outcomes, retries, partial batch failures."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from ingest import forwarder
from ingest.boxoffice import PERMANENT, RETRY, BoxOfficeConfig, classify, deliver, detail_of
from ingest.decode import Code
from ingest.records import build_read
from ingest.settings import Settings
from stream.schema import BoxOfficeOutcome, outcome_id, to_bytes
from tests.events.make_events import NOW

TOKEN = "bo-secret-token-123"
ANSWERS = {"T-OK": 200, "T-NEW": 201, "T-USED": 409, "T-UNKNOWN": 404, "T-BAD": 400, "T-DOWN": 500, "T-BUSY": 429}
SLOW = "T-SLOW"


class BoxOffice(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if body["ticket_id"] == SLOW:
            time.sleep(0.6)
        status = ANSWERS.get(body["ticket_id"], 200)
        data = json.dumps({"detail": f"answer {status} for {body['ticket_id']}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # the timed-out client hung up: expected
        pass


@pytest.fixture(scope="module")
def box_office() -> Iterator[str]:
    server = QuietServer(("127.0.0.1", 0), BoxOffice)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cinemas/{{cinema_id}}/entries"
    server.shutdown()
    server.server_close()


@pytest.fixture
def wired(box_office, ports):
    stream, _ = ports
    BoxOffice.requests = []
    forwarder.use(stream, BoxOfficeConfig(box_office, TOKEN, 0.3), Settings(), clock=lambda: NOW)
    yield stream
    forwarder.reset()


def read_for(ticket: str, registry_camera, seat: str = "F1"):
    text = f"TKT:REX:R1:S20261130-2030:{ticket}:{seat}"
    code = Code(text=text, raw=text.encode(), corners=((0, 0), (1, 0), (1, 1), (0, 1)), decoder="test")
    return build_read(code, f"frame-{ticket}", registry_camera, NOW, NOW)


def sqs_event(reads, groups=None) -> dict:
    return {
        "Records": [
            {
                "messageId": f"m{i}",
                "receiptHandle": f"rh{i}",
                "body": to_bytes(r).decode(),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1796020000000",
                    "MessageGroupId": groups[i] if groups else f"g{i}",
                    "MessageDeduplicationId": f"d{i}",
                    "SequenceNumber": str(1000 + i),
                },
                "messageAttributes": {},
                "md5OfBody": "x",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:sa-east-1:123456789012:box-office.fifo",
                "awsRegion": "sa-east-1",
            }
            for i, r in enumerate(reads)
        ]
    }


def failures(resp: dict) -> list[str]:
    return sorted(f["itemIdentifier"] for f in resp["batchItemFailures"])


def test_each_box_office_answer_is_recorded_and_only_undecided_or_refused_messages_fail(wired, registry):
    cam = registry.get("rex-1-door")
    tickets = ["T-OK", "T-NEW", "T-USED", "T-UNKNOWN", "T-BAD", "T-DOWN", SLOW, "T-BUSY"]
    reads = [read_for(t, cam) for t in tickets]
    resp = forwarder.handler(sqs_event(reads))
    # T-BAD (400, permanent -> DLQ), T-DOWN (500), T-SLOW (timeout), T-BUSY (429) fail; the rest are done
    assert failures(resp) == ["m4", "m5", "m6", "m7"]
    outcomes = {r.read_id: r for r in wired.records()}
    assert all(isinstance(o, BoxOfficeOutcome) for o in outcomes.values())
    got = {
        t: (outcomes[r.read_id].outcome, outcomes[r.read_id].http_status)
        for t, r in zip(tickets, reads, strict=True)
        if r.read_id in outcomes
    }
    assert got == {
        "T-OK": ("accepted", 200),
        "T-NEW": ("accepted", 201),
        "T-USED": ("already_used", 409),
        "T-UNKNOWN": ("unknown_ticket", 404),
        "T-BAD": ("refused", 400),
    }
    assert outcomes[reads[4].read_id].detail == "answer 400 for T-BAD"
    assert all(o.outcome_id == outcome_id(o.read_id) and o.decided_at == NOW for o in outcomes.values())


def test_the_box_office_request_carries_token_idempotency_key_and_the_documented_fields(wired, registry):
    read = read_for("T-OK", registry.get("rex-1-door"), seat="H7")
    forwarder.handler(sqs_event([read]))
    (req,) = BoxOffice.requests
    assert req["path"] == "/cinemas/REX/entries"
    assert req["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert req["headers"]["Idempotency-Key"] == read.read_id
    assert req["body"] == {
        "read_id": read.read_id,
        "ticket_id": "T-OK",
        "cinema_id": "REX",
        "room_id": "1",
        "camera_id": "rex-1-door",
        "session_id": "20261130-2030",
        "seat": "H7",
        "captured_at": "2026-11-30T20:15:05.000000Z",
    }


def test_a_failure_holds_back_only_later_messages_of_the_same_camera(wired, registry):
    cam = registry.get("rex-1-door")
    reads = [read_for(t, cam) for t in ("T-DOWN", "T-OK", "T-OK2", "T-USED")]
    resp = forwarder.handler(sqs_event(reads, groups=["cam-a", "cam-a", "cam-b", "cam-b"]))
    assert failures(resp) == ["m0", "m1"]  # m1 is held back to keep cam-a's order; cam-b goes through
    assert [r["body"]["ticket_id"] for r in BoxOffice.requests] == ["T-DOWN", "T-OK2", "T-USED"]


def test_unconfigured_box_office_records_not_configured(ports, registry):
    stream, _ = ports
    forwarder.use(stream, BoxOfficeConfig(""), Settings(), clock=lambda: NOW)
    try:
        resp = forwarder.handler(sqs_event([read_for("T-OK", registry.get("rex-1-door"))]))
    finally:
        forwarder.reset()
    assert resp["batchItemFailures"] == []
    assert [r.outcome for r in stream.records()] == ["not_configured"]


def test_a_message_that_is_not_a_read_fails_to_the_dlq(wired):
    event = sqs_event([])
    event["Records"] = sqs_event([read_for("T-OK", _cam())])["Records"]
    event["Records"][0]["body"] = '{"kind": "frame"}'
    assert failures(forwarder.handler(event)) == ["m0"]
    with pytest.raises(forwarder.PoisonMessage):
        forwarder.parse_read(b"not json")


def _cam():
    from ingest.cameras import Camera

    return Camera("rex-1-door", "REX", "1", "America/Sao_Paulo")


def test_an_outcome_that_cannot_be_published_fails_the_message_for_a_retry(wired, registry):
    wired.fail = True
    assert failures(forwarder.handler(sqs_event([read_for("T-OK", _cam())]))) == ["m0"]


def test_the_token_never_reaches_the_logs(wired, registry):
    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    h.setFormatter(forwarder.logger.registered_formatter)
    inner = forwarder.logger._logger
    inner.addHandler(h)
    inner.setLevel(logging.DEBUG)
    try:
        forwarder.handler(sqs_event([read_for(t, _cam()) for t in ("T-OK", "T-BAD", "T-DOWN")]))
    finally:
        inner.removeHandler(h)
    out = buf.getvalue()
    assert "box office answered" in out and "refused" in out
    assert TOKEN not in out
    assert TOKEN not in repr(BoxOfficeConfig("http://x", TOKEN))


def test_unreachable_box_office_is_a_retry():
    cfg = BoxOfficeConfig("http://127.0.0.1:9/entries", TOKEN, 0.3)  # discard port: connection refused
    d = deliver(read_for("T-OK", _cam()), cfg)
    assert d.disposition == RETRY and d.outcome is None


@pytest.mark.parametrize(
    ("status", "outcome", "disposition"),
    [
        (200, "accepted", "delivered"),
        (204, "accepted", "delivered"),
        (409, "already_used", "delivered"),
        (404, "unknown_ticket", "delivered"),
        (400, "refused", PERMANENT),
        (401, "refused", PERMANENT),
        (422, "refused", PERMANENT),
        (408, None, RETRY),
        (429, None, RETRY),
        (302, None, RETRY),
        (500, None, RETRY),
        (503, None, RETRY),
    ],
)
def test_status_classification(status, outcome, disposition):
    assert classify(status) == (outcome, disposition)


def test_detail_is_short_printable_text():
    assert detail_of(b'{"message": "ticket T1 already used"}') == "ticket T1 already used"
    assert detail_of(b"plain\x00text\n") == "plain text"
    assert len(detail_of(b"x" * 5000)) == 200


def test_non_http_urls_are_refused_when_wiring(ports):
    with pytest.raises(ValueError, match="http"):
        forwarder.use(ports[0], BoxOfficeConfig("file:///etc/passwd"), Settings())
    forwarder.reset()


def test_token_comes_from_secrets_manager_as_text_or_json(aws_env):
    import boto3
    from moto import mock_aws

    with mock_aws():
        sm = boto3.client("secretsmanager", region_name="sa-east-1")
        plain = sm.create_secret(Name="bo-plain", SecretString=TOKEN)["ARN"]
        as_json = sm.create_secret(Name="bo-json", SecretString=json.dumps({"token": TOKEN + "-j"}))["ARN"]
        assert forwarder.box_office_token(Settings(box_office_secret_arn=plain)) == TOKEN
        assert forwarder.box_office_token(Settings(box_office_secret_arn=as_json)) == TOKEN + "-j"
    assert forwarder.box_office_token(Settings(box_office_token="local-token")) == "local-token"
