"""local.server: API Gateway's contract in front of a fake ``invoke`` (no workers, no disk)."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time

import pytest

from ingest.cameras import Camera
from local.server import MAX_REQUEST_BYTES, CameraApiServer

CAM = Camera("door-1", "REX", "1", key_id="ck_1")


class Fake:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.events: list[dict] = []
        self.delay_s = delay_s

    def invoke(self, event: dict) -> dict:
        time.sleep(self.delay_s)
        self.events.append(event)
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": '{"frames": []}'}


@pytest.fixture
def api():
    fake = Fake()
    srv = CameraApiServer(("127.0.0.1", 0), fake.invoke, lambda k: CAM if k == "good" else None)
    srv.start()
    yield srv, fake
    srv.stop()


def request(srv, method, path, body=b"", headers=None):
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    out = resp.status, resp.read(), resp
    conn.close()
    return out


def test_upload_builds_a_proxy_event_with_a_base64_body_and_the_key_id_not_the_key(api):
    srv, fake = api
    headers = {"x-api-key": "good", "Content-Type": "image/jpeg"}
    status, body, _ = request(srv, "POST", "/upload?x=1", b"\xff\xd8jpeg", headers)
    assert status == 200 and json.loads(body) == {"frames": []}
    (event,) = fake.events
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\xff\xd8jpeg"
    assert event["requestContext"]["identity"]["apiKeyId"] == "ck_1"
    assert "good" not in json.dumps(event)  # the key itself never reaches the handler
    assert event["queryStringParameters"] == {"x": "1"}


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("POST", "/upload", {"Content-Type": "image/jpeg"}, 403),
        ("POST", "/upload", {"x-api-key": "bad", "Content-Type": "image/jpeg"}, 403),
        ("POST", "/elsewhere", {"x-api-key": "good"}, 404),
        ("GET", "/upload", {}, 405),
        ("PUT", "/upload", {"x-api-key": "good"}, 405),
    ],
)
def test_requests_outside_the_contract_are_refused_before_the_handler(api, method, path, headers, status):
    srv, fake = api
    got, body, _ = request(srv, method, path, b"x", headers)
    assert got == status and json.loads(body)["error"]["reason"]
    assert fake.events == []


def test_a_body_over_10_mb_is_refused_with_413_without_reading_it(api):
    srv, fake = api
    with socket.create_connection(srv.server_address[:2], timeout=5) as s:
        head = f"POST /upload HTTP/1.1\r\nx-api-key: good\r\nContent-Length: {MAX_REQUEST_BYTES + 1}\r\n\r\n"
        s.sendall(head.encode())
        assert s.recv(100).startswith(b"HTTP/1.1 413")
    assert fake.events == []


def test_health_is_200_when_ok_and_503_when_degraded():
    state = {"status": "ok"}
    srv = CameraApiServer(("127.0.0.1", 0), Fake().invoke, lambda k: None, lambda: dict(state))
    srv.start()
    try:
        assert request(srv, "GET", "/health")[0] == 200
        state["status"] = "degraded"
        assert request(srv, "GET", "/health")[0] == 503
    finally:
        srv.stop()


def test_stop_answers_the_request_in_progress_and_closes_idle_keep_alive_connections():
    fake = Fake(delay_s=0.5)
    srv = CameraApiServer(("127.0.0.1", 0), fake.invoke, lambda k: CAM)
    srv.block_on_close = True
    srv.daemon_threads = False
    srv.start()
    idle = http.client.HTTPConnection(*srv.server_address[:2], timeout=10)
    idle.request("GET", "/health")
    idle.getresponse().read()  # a keep-alive connection, now idle
    result = {}

    def slow() -> None:
        result["answer"] = request(srv, "POST", "/upload", b"x", {"x-api-key": "k", "Content-Type": "image/jpeg"})

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.2)  # the slow request is in the handler
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 5  # did not wait for the idle connection's 30 s timeout
    t.join(5)
    status, _body, resp = result["answer"]
    assert status == 200 and resp.getheader("Connection") == "close"
    with pytest.raises((OSError, http.client.HTTPException)):
        idle.request("GET", "/health")
        idle.getresponse()


def test_servers_in_several_threads_share_one_listening_socket_and_each_answers_what_it_accepts():
    """The pre-fork layout in miniature: two servers accept on one socket; neither blocks the other."""
    listener = socket.create_server(("127.0.0.1", 0))
    answered: dict[str, int] = {"a": 0, "b": 0}

    def invoke_as(name: str):
        def invoke(event: dict) -> dict:
            answered[name] += 1
            return {"statusCode": 200, "headers": {}, "body": json.dumps({"server": name})}

        return invoke

    servers = [CameraApiServer(("", 0), invoke_as(n), lambda k: CAM, listen_socket=listener) for n in ("a", "b")]
    for s in servers:
        s.start()
    try:
        assert servers[0].server_address == servers[1].server_address == listener.getsockname()
        seen = set()
        for _ in range(20):
            status, raw, _ = request(servers[0], "POST", "/upload", b"x", {"x-api-key": "k"})
            assert status == 200
            seen.add(json.loads(raw)["server"])
        assert sum(answered.values()) == 20 and seen <= {"a", "b"}
    finally:
        t0 = time.monotonic()
        for s in servers:
            s.stop()
        assert time.monotonic() - t0 < 5, "a server that lost an accept race must not hang in accept()"


def _raw_exchange(srv, data: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(srv.server_address[:2], timeout=10) as s:
        s.sendall(data)
        resp = b""
        while chunk := s.recv(65536):
            resp += chunk
    head, _, body = resp.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return int(lines[0].split(" ", 2)[1]), dict(line.split(": ", 1) for line in lines[1:]), body


def test_header_block_is_read_like_http_client_folded_lines_joined_trailing_blanks_kept(api):
    srv, fake = api
    status, headers, _ = _raw_exchange(
        srv,
        b"POST /upload HTTP/1.1\r\nHost: x\r\nX-API-KEY:   good\r\nContent-Type: image/jpeg\r\n"
        b"X-Note: first\r\n  folded\r\nX-Pad: v \t\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    )
    assert status == 200
    assert headers["Date"].endswith(" GMT") and headers["Content-Length"] == "14"
    sent = fake.events[0]["headers"]
    assert (sent["X-Note"], sent["X-Pad"]) == ("first folded", "v \t")
    assert "X-API-KEY" not in sent and fake.events[0]["requestContext"]["identity"]["apiKeyId"] == "ck_1"


@pytest.mark.parametrize(
    "request_line", [b"POST /upload HTTP/1.\xb2", b"POST /upload HTTP/one.1", b"POST /upload HTTP/2.0", b"POST"]
)
def test_bad_request_lines_are_4xx_json_never_a_dropped_connection(api, request_line):
    srv, fake = api
    got, _headers, body = _raw_exchange(srv, request_line + b"\r\nHost: x\r\n\r\n")
    assert 400 <= got < 500 and json.loads(body)["error"]["code"] == "bad_request" and fake.events == []


@pytest.mark.parametrize(
    ("header_block", "status"),
    [
        (b"Host: x\r\nno colon here\r\n", 400),
        (b" leading continuation\r\nHost: x\r\n", 400),
        (b"Bad Name : v\r\n", 400),
        (b"X: " + b"a" * 70_000 + b"\r\n", 431),
        (b"".join(b"X-%d: v\r\n" % i for i in range(101)), 431),
    ],
    ids=["no-colon", "first-line-folded", "blank-in-name", "70k-line", "101-headers"],
)
def test_malformed_or_oversized_header_blocks_are_4xx_json_and_never_reach_the_handler(api, header_block, status):
    srv, fake = api
    got, headers, body = _raw_exchange(srv, b"POST /upload HTTP/1.1\r\n" + header_block + b"\r\n")
    assert got == status and headers["Connection"] == "close"
    assert json.loads(body)["error"]["code"] == "bad_request" and fake.events == []
