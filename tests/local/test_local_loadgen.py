"""local.loadgen: unique frames that decode like the original, bounded runs, percentiles."""

from __future__ import annotations

import socket
import threading

import pytest

from ingest.decode import decode_frame
from local.frames import render_frame
from local.loadgen import Connection, LoadGenerator, percentile, ticket_payload, unique_jpeg, unique_jpeg_parts
from stream.schema import frame_id


def test_unique_jpeg_changes_the_frame_id_but_not_the_codes():
    jpeg = render_frame([ticket_payload(1)], seed=1, size=(320, 240))
    a, b = unique_jpeg(jpeg, "run#1"), unique_jpeg(jpeg, "run#2")
    assert len({frame_id("c", jpeg), frame_id("c", a), frame_id("c", b)}) == 3
    assert [c.text for c in decode_frame(a)] == [c.text for c in decode_frame(jpeg)] == [ticket_payload(1)]
    with pytest.raises(ValueError, match="not a JPEG"):
        unique_jpeg(b"\x89PNG....", "x")


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
