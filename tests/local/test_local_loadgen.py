"""local.loadgen: unique frames that decode like the original, bounded runs, percentiles."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable

import orjson
import pytest

from ingest.decode import decode_frame
from local.frames import render_frame
from local.loadgen import (
    Connection,
    Frame,
    LoadGenerator,
    load_frameset,
    parse_response_head,
    percentile,
    render_frameset,
    ticket_payload,
    unique_jpeg,
    unique_jpeg_parts,
    write_manifest,
)
from stream.schema import frame_id


def test_unique_jpeg_changes_the_frame_id_but_not_the_codes():
    jpeg = render_frame([ticket_payload(1)], seed=1, size=(320, 240))
    a, b = unique_jpeg(jpeg, "run#1"), unique_jpeg(jpeg, "run#2")
    assert len({frame_id("c", jpeg), frame_id("c", a), frame_id("c", b)}) == 3
    assert [c.text for c in decode_frame(a)] == [c.text for c in decode_frame(jpeg)] == [ticket_payload(1)]
    with pytest.raises(ValueError, match="not a JPEG"):
        unique_jpeg(b"\x89PNG....", "x")


def test_a_rendered_frame_set_loads_back_with_its_cameras_and_payloads(tmp_path):
    made = render_frameset(tmp_path, ("cam-a", "cam-b"), n=3, size=(960, 540), processes=1)
    assert load_frameset(tmp_path) == made
    assert [f.camera_id for f in made] == ["cam-a", "cam-b", "cam-a"]
    assert [len(f.payloads) for f in made] == [0, 0, 2]  # the mix: frames 0-1 empty, frame 2 two tickets


def test_files_made_elsewhere_become_a_frame_set_through_the_manifest(tmp_path):
    jpeg = render_frame([ticket_payload(7)], seed=7, size=(320, 240))
    (tmp_path / "x.jpg").write_bytes(jpeg)
    write_manifest(tmp_path, [("x.jpg", "cam-1", [ticket_payload(7)])])
    assert load_frameset(tmp_path) == [Frame("cam-1", jpeg, (ticket_payload(7),))]


def test_percentile_is_nearest_rank():
    values = sorted(float(i) for i in range(1, 101))
    assert percentile(values, 0.5) == 50.0 and percentile(values, 0.99) == 99.0 and percentile([], 0.5) == 0.0


def test_a_run_must_be_bounded():
    gen = LoadGenerator("http://127.0.0.1:9", {"c": "k"}, [object()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="bounded"):
        gen.run()


def test_unique_jpeg_parts_share_the_frame_buffer_and_join_to_unique_jpeg():
    jpeg = b"\xff\xd8" + bytes(range(256)) * 4
    head, rest = unique_jpeg_parts(jpeg, "run#7")
    assert head + bytes(rest) == unique_jpeg(jpeg, "run#7")
    assert rest.obj is jpeg  # a view of the frame, not a copy


def test_a_request_split_across_partial_sends_arrives_whole():
    """``sendmsg`` may take part of the buffers (a full socket buffer): the rest must follow in order."""
    server, client = socket.socketpair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.settimeout(10)  # as in Connection: a send then writes what fits and returns
    calls = []

    class Spy:
        def sendmsg(self, buffers):
            calls.append(sum(len(b) for b in buffers))
            return client.sendmsg(buffers)

    conn = Connection.__new__(Connection)
    conn.sock, conn._buf = Spy(), b""
    parts = [b"head|", memoryview(bytes(range(256)) * 2000), b"|tail"]
    expected = b"".join(bytes(p) for p in parts)
    got = bytearray()

    def read() -> None:
        while len(got) < len(expected):
            got.extend(server.recv(65536))

    reader = threading.Thread(target=read)
    reader.start()
    conn._send_all(parts)
    reader.join(10)
    assert bytes(got) == expected
    assert len(calls) > 1  # it did take several sends
    server.close()
    client.close()


# ---------------------------------------------------------------------------- runs against scripted servers


def test_parse_response_head_reads_status_length_and_close_and_says_what_is_wrong():
    assert parse_response_head(b"HTTP/1.1 503 Busy\r\ncontent-length: 7\r\nConnection:  Close") == (503, 7, True)
    assert parse_response_head(b"HTTP/1.0 200 OK\r\nContent-Length: 0") == (200, 0, False)
    with pytest.raises(ValueError, match=r"not an HTTP/1\.x response"):
        parse_response_head(b"SSH-2.0-OpenSSH\r\nContent-Length: 0")
    with pytest.raises(ValueError, match="status is not a number"):
        parse_response_head(b"HTTP/1.1 OK\r\nContent-Length: 0")
    with pytest.raises(ValueError, match="without Content-Length"):
        parse_response_head(b"HTTP/1.1 200 OK\r\nConnection: close")


def tag_of(body: bytes) -> str:
    """The per-request tag the load generator put in the JPEG comment (``run#i``)."""
    assert body[:4] == b"\xff\xd8\xff\xfe"
    return body[6 : 4 + int.from_bytes(body[4:6], "big")].decode()


def response(status: int = 200, body: bytes | None = None, close: bool = False, tag: str = "") -> bytes:
    """A complete HTTP/1.1 response; the default 200 body acknowledges frame ``tag`` with one read."""
    if body is None:
        body = orjson.dumps({"frames": [{"frame_id": tag, "codes": [{"read_id": f"r-{tag}"}]}]})
    extra = b"Connection: close\r\n" if close else b""
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n%s" % (status, len(body), extra, body)


class Server:
    """A local HTTP/1.1 keep-alive server, one thread per connection, scripted by ``respond``.

    ``respond(body, n)`` gets each request's body and how many requests arrived so far, and returns
    the full response bytes, or None to hang up without answering.  Bodies are kept in ``bodies``;
    ``rcvbuf`` shrinks the accepted sockets' receive buffers (so a large request needs several sends).
    """

    def __init__(
        self, respond: Callable[[bytes, int], bytes | None], rcvbuf: int | None = None, hang_up: bool = False
    ) -> None:
        self.respond = respond
        self.hang_up = hang_up
        """Close each connection after its first answer, without saying so (an idle keep-alive time-out)."""
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # inherited by accepted sockets
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.bodies: list[bytes] = []
        self.connections = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    if not (chunk := conn.recv(65536)):
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                match = re.search(rb"(?i)content-length: *(\d+)", head)
                assert match and head.startswith(b"POST /upload HTTP/1.1\r\n"), head
                while len(buf) < int(match[1]):
                    if not (chunk := conn.recv(65536)):
                        return
                    buf += chunk
                body, buf = buf[: int(match[1])], buf[int(match[1]) :]
                with self.lock:
                    self.bodies.append(body)
                    n = len(self.bodies)
                answer = self.respond(body, n)
                if answer is None:
                    return
                conn.sendall(answer)
                if self.hang_up or b"connection: close" in answer.lower():
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve():
    servers: list[Server] = []

    def start(respond: Callable[[bytes, int], bytes | None], **kw) -> Server:
        servers.append(Server(respond, **kw))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


FRAMES = [Frame("cam-1", b"\xff\xd8" + bytes(range(256)) * 8, ()), Frame("cam-2", b"\xff\xd8" + b"\x07" * 999, ())]
KEYS = {"cam-1": "k1", "cam-2": "k2"}


def loadgen(url: str, frames: list[Frame] = FRAMES, **kw) -> LoadGenerator:
    """A generator for the test servers: a broken generator fails in seconds, not after the default 60 s time-out."""
    return LoadGenerator(url, KEYS, frames, **{"timeout_s": 5.0, **kw})


def ack(body: bytes, _n: int) -> bytes:
    return response(tag=tag_of(body))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_max_requests_sends_each_request_exactly_once_and_reports_its_answer(serve):
    srv = serve(ack)
    seen = []
    gen = loadgen(srv.url, concurrency=8, tag="t", on_request=seen.append)
    result = gen.run(seconds=10, max_requests=50)
    assert len(result.requests) == 50 and [s.status for s in result.requests] == [200] * 50
    assert sorted(tag_of(b) for b in srv.bodies) == sorted(f"t#{i}" for i in range(50))
    assert sorted(srv.bodies) == sorted(b"".join(gen.request_body(i)[1]) for i in range(50))  # bytes as promised
    assert sorted(f for s in result.requests for f in s.frame_ids) == sorted(f"t#{i}" for i in range(50))
    assert all(s.read_ids == [f"r-{s.frame_ids[0]}"] and s.reads == 1 and s.attempts == 1 for s in result.requests)
    assert sorted(id(s) for s in seen) == sorted(id(s) for s in result.requests)  # on_request once per request
    assert [s.start for s in result.requests] == sorted(s.start for s in result.requests)
    assert srv.connections == 8  # keep-alive: one connection per slot
    assert result.cpu_s > 0 and result.summary()["frames_ok"] == 50


def test_the_connections_overlap(serve):
    """A server that answers only once 4 requests wait: one connection at a time would never be answered."""
    barrier = threading.Barrier(4, timeout=10)

    def together(body: bytes, n: int) -> bytes:
        barrier.wait()
        return ack(body, n)

    srv = serve(together)
    result = loadgen(srv.url, concurrency=4, tag="o", timeout_s=20.0).run(seconds=10, max_requests=12)
    assert [(s.status, s.attempts) for s in result.requests] == [(200, 1)] * 12
    assert len(srv.bodies) == 12


def test_503_is_retried_with_the_same_bytes_until_answered(serve):
    tries: Counter = Counter()

    def busy_twice(body: bytes, _n: int) -> bytes:
        tries[body] += 1
        return response(503, b"busy") if tries[body] <= 2 else response(tag=tag_of(body))

    srv = serve(busy_twice)
    result = loadgen(srv.url, concurrency=2, tag="r").run(seconds=10, max_requests=3)
    assert [(s.status, s.attempts) for s in result.requests] == [(200, 3)] * 3
    assert sorted(tries.values()) == [3, 3, 3] and len(srv.bodies) == 9  # three distinct bodies, each sent 3 times
    assert all(s.latency >= 0.05 + 0.10 for s in result.requests)  # backed off 0.05 s, then 0.10 s
    assert result.summary()["retries"] == 6


def test_connection_close_is_honoured_and_the_next_request_reconnects(serve):
    srv = serve(lambda body, n: response(tag=tag_of(body), close=True))
    result = loadgen(srv.url, concurrency=2, tag="c").run(seconds=10, max_requests=6)
    assert [(s.status, s.attempts) for s in result.requests] == [(200, 1)] * 6
    assert srv.connections == 6


def test_a_keep_alive_connection_closed_while_idle_is_replaced(serve):
    """Open loop, slow rate: the server hangs up each connection after its answer (no ``Connection: close``).

    The request that finds its connection closed is sent again on a new one (a second attempt)."""
    srv = serve(ack, hang_up=True)
    result = loadgen(srv.url, concurrency=1, tag="i", rate=10).run(seconds=10, max_requests=4)
    assert [s.status for s in result.requests] == [200] * 4
    assert all(s.attempts <= 2 for s in result.requests)
    assert srv.connections == 4


def test_an_open_loop_run_does_not_start_request_i_before_i_over_rate(serve):
    srv = serve(ack)
    result = loadgen(srv.url, concurrency=4, tag="rate", rate=20).run(seconds=10, max_requests=6)
    starts = [s.start for s in result.requests]
    assert len(starts) == 6
    for i, start in enumerate(starts):
        assert i / 20 <= start < i / 20 + 0.1, starts
    assert result.seconds >= 5 / 20


def test_an_open_loop_run_starts_nothing_due_after_its_deadline(serve):
    srv = serve(ack)
    result = loadgen(srv.url, concurrency=8, tag="d", rate=20).run(seconds=0.5)
    assert len(result.requests) == 10 and result.seconds < 0.5 + 0.2


def stop_later(gen: LoadGenerator, delay: float) -> list[float]:
    """Set ``gen.stop`` from another thread after ``delay`` s; the list gets the time it was set."""
    stopped_at: list[float] = []

    def stop() -> None:
        stopped_at.append(time.monotonic())
        gen.stop.set()

    threading.Timer(delay, stop).start()
    return stopped_at


def test_stop_ends_back_offs_too():
    gen = loadgen(f"http://127.0.0.1:{free_port()}", concurrency=2, retry_until_s=60)
    stopped_at = stop_later(gen, 0.4)
    result = gen.run(seconds=30)
    assert time.monotonic() - stopped_at[0] < 0.1
    assert len(result.requests) == 2 and all(s.status == 0 and s.attempts > 1 for s in result.requests)


def test_a_refused_connection_is_retried_until_the_retry_deadline_then_reported_as_status_0():
    gen = loadgen(f"http://127.0.0.1:{free_port()}", concurrency=2, retry_until_s=0.3)
    result = gen.run(seconds=0.2)
    assert len(result.requests) == 2
    assert all(s.status == 0 and s.attempts >= 3 for s in result.requests)  # 0, 0.05, 0.15, 0.3 s ...
    assert 0.5 <= result.seconds < 0.5 + 0.5  # until the retry deadline, plus at most one back-off
    assert result.summary()["statuses"] == {"0": 2}


@pytest.mark.parametrize(
    "bad",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n",  # no Content-Length
        b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nnot json",  # a 200 that is not JSON
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]",  # JSON, but not the upload answer
        None,  # hang up without an answer
    ],
)
def test_a_malformed_answer_is_retried_then_counted_as_status_0(serve, bad):
    srv = serve(lambda body, n: bad if n == 1 else response(tag=tag_of(body)))
    result = loadgen(srv.url, concurrency=1, tag="m").run(seconds=10, max_requests=2)
    assert [(s.status, s.attempts) for s in result.requests] == [(200, 2), (200, 1)]
    assert srv.bodies[0] == srv.bodies[1]  # the retry re-sent the same bytes
    srv_bad = serve(lambda body, n: bad)
    result = loadgen(srv_bad.url, concurrency=1, tag="m", retry_until_s=0.1).run(seconds=0.05)
    assert len(result.requests) == 1 and result.requests[0].status == 0 and result.requests[0].attempts >= 2


def test_an_attempt_that_makes_no_progress_for_timeout_s_fails(serve):
    release = threading.Event()
    srv = serve(lambda body, n: release.wait(30) and None)
    gen = loadgen(srv.url, concurrency=1, tag="to", timeout_s=0.2)
    try:
        result = gen.run(seconds=0.05)
    finally:
        release.set()
    assert [(s.status, s.attempts) for s in result.requests] == [(0, 1)]
    assert 0.2 <= result.requests[0].latency < 0.2 + 0.1


def test_a_camera_without_a_key_is_named():
    gen = LoadGenerator("http://127.0.0.1:9", {}, FRAMES)
    with pytest.raises(ValueError, match=r"no API key for camera\(s\) \['cam-1', 'cam-2'\]"):
        gen.run(max_requests=1)
