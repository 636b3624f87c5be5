"""Hostile input to the camera API over real loopback HTTP (local server in front of the real handler).

Every case: a 4xx with a JSON ``{"error": {"code", "reason"}}``, never a 5xx, nothing published but the
documented ``rejected`` frame summary of an authenticated camera's undecodable image, and the process
stays healthy (a good frame still gets its read; ``GET /health`` is 200).
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.request import MAX_BATCH_FRAMES, MAX_BODY_CHARS, MAX_FRAME_BYTES
from local.server import MAX_REQUEST_BYTES
from stream.schema import format_ts, now_utc
from tests.hardening import hostile
from tests.hardening.conftest import (
    EXAMPLES,
    assert_published_only_the_rejection,
    assert_refusal,
    json_body,
)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


def headers(api, camera: str = "door-1", content_type: str | None = "image/jpeg", **extra: str) -> dict[str, str]:
    h = {"x-api-key": api.cameras.keys[camera], **extra}
    if content_type is not None:
        h["Content-Type"] = content_type
    return h


def post_json(api, doc, camera: str = "door-1") -> tuple[int, bytes]:
    body = doc.encode() if isinstance(doc, str) else json.dumps(doc).encode()
    status, raw, _ = api.request("POST", "/upload", body, headers(api, camera, "application/json"))
    return status, raw


_healthy_count = 0


def assert_healthy(api) -> None:
    """A fresh good frame still gets a 200 with its ticket read, and /health answers 200."""
    global _healthy_count
    _healthy_count += 1
    api.clear()
    status, raw, _ = api.request("POST", "/upload", hostile.fresh_jpeg(f"ok-{_healthy_count}"), headers(api))
    assert status == 200, raw[:300]
    (frame,) = json_body(raw)["frames"]
    assert frame["outcome"] == "ok" and [c["text"] for c in frame["codes"]] == [hostile.TICKET]
    assert {r.kind for r in api.stream.records()} == {"frame", "read"} and len(api.queue.messages) == 1
    status, raw, _ = api.request("GET", "/health")
    assert status == 200 and json_body(raw)["status"] == "ok"
    api.clear()


# ------------------------------------------------------------------------------------------- images


REFUSED = hostile.refused_images()


@pytest.mark.parametrize("name", sorted(REFUSED))
@pytest.mark.parametrize("form", ["raw", "json"])
def test_hostile_image_is_refused_with_a_reason_and_records_only_the_rejection(api, name, form):
    image, statuses = REFUSED[name]
    api.clear()
    t0 = time.monotonic()
    if form == "raw":
        ctype = "image/png" if image.startswith(b"\x89PNG") else "image/jpeg"
        status, raw, _ = api.request("POST", "/upload", image, headers(api, content_type=ctype))
    else:
        status, raw = post_json(api, {"image_base64": hostile.b64(image)})
    elapsed = time.monotonic() - t0
    err = assert_refusal(status, raw)
    assert status in statuses, (status, err)
    assert_published_only_the_rejection(api.stream, api.queue, err)
    assert elapsed < 10, f"{name} took {elapsed:.1f} s: a bomb must be refused from its header"
    assert_healthy(api)


ODD = hostile.odd_but_valid_images()


@pytest.mark.parametrize("name", sorted(ODD))
def test_unusual_but_legal_images_are_decoded_not_refused(api, name):
    image = ODD[name]
    ctype = "image/png" if image.startswith(b"\x89PNG") else "image/jpeg"
    api.clear()
    status, raw, _ = api.request("POST", "/upload", image, headers(api, content_type=ctype))
    assert status == 200, raw[:300]
    assert [f["outcome"] for f in json_body(raw)["frames"]] == ["no_code"]
    assert [(r.kind, r.outcome) for r in api.stream.records()] == [("frame", "no_code")]


@FUZZ
@given(data=st.data(), fmt=st.sampled_from(["jpeg", "png"]))
def test_corrupted_frames_never_5xx_and_never_yield_a_forged_ticket(api, data, fmt):
    base = hostile.good_jpeg() if fmt == "jpeg" else hostile.good_png()
    image = data.draw(hostile.corrupted(base), label="image")
    api.clear()
    status, raw, _ = api.request("POST", "/upload", image, headers(api, content_type=f"image/{fmt}"))
    assert status < 500, raw[:300]
    if status == 200:
        (frame,) = json_body(raw)["frames"]
        assert frame["outcome"] in ("ok", "no_code")
        # QR error correction either recovers the true payload or reads nothing: corruption forges no ticket
        assert all(c["text"] == hostile.TICKET for c in frame["codes"]), frame
        reads = [r for r in api.stream.records() if r.kind == "read"]
        assert [r.text for r in reads] == [c["text"] for c in frame["codes"]]
    else:
        assert_published_only_the_rejection(api.stream, api.queue, assert_refusal(status, raw))


def test_corrupted_frames_leave_the_process_healthy(api):
    """Run after the fuzzers in this module (same process, same handler module state)."""
    assert_healthy(api)


# ------------------------------------------------------------------------------------------- envelopes


def _frame_doc(draw) -> dict:
    doc: dict = {}
    if draw(st.booleans()):
        doc["image_base64"] = draw(
            st.one_of(
                st.just(hostile.b64(hostile.good_jpeg())),
                st.binary(max_size=64).map(hostile.b64),
                st.text(max_size=40),  # mostly invalid base64
                st.sampled_from(["====", "a", "QUJD\x00", "QUJD" * 3 + "=", "/9j/" + "\u00e9" * 4, ""]),
                st.integers(),
                st.none(),
            )
        )
    if draw(st.booleans()):
        doc["captured_at"] = draw(hostile.timestamps)
    if draw(st.booleans()):
        doc["camera_id"] = draw(st.one_of(hostile.hostile_text, st.integers(), st.none()))
    return doc


@st.composite
def envelopes(draw) -> str:
    """JSON request bodies: single frames, batches (0-25 frames), junk values, deep nesting, huge strings."""
    kind = draw(st.sampled_from(["single", "batch", "junk", "deep", "huge", "text"]))
    if kind == "single":
        return json.dumps(_frame_doc(draw))
    if kind == "batch":
        frames = draw(st.lists(st.builds(dict), max_size=25).map(len))
        doc: dict = {"frames": [_frame_doc(draw) for _ in range(frames)]}
        if draw(st.booleans()):
            doc["camera_id"] = draw(st.one_of(hostile.hostile_text, st.integers()))
        if draw(st.booleans()):
            doc["frames"] = draw(st.one_of(st.integers(), st.text(max_size=5), st.none(), st.just({})))
        return json.dumps(doc)
    if kind == "junk":
        return json.dumps(draw(st.one_of(st.integers(), st.text(max_size=20), st.lists(st.none()), st.none())))
    if kind == "deep":
        return hostile.deep_json(draw(st.integers(500, 200_000)), draw(st.sampled_from(["list", "object"])))
    if kind == "huge":
        return json.dumps({"image_base64": "A" * draw(st.integers(1, 3)), "x": "y" * draw(st.integers(0, 2_000_000))})
    return draw(st.text(max_size=200))


@FUZZ
@given(body=envelopes())
def test_random_json_envelopes_never_5xx_and_refusals_publish_nothing_but_a_rejection(api, body):
    api.clear()
    status, raw = post_json(api, body)
    assert status < 500, raw[:300]
    if status == 200:
        frames = json_body(raw)["frames"]
        assert frames and all(f["outcome"] in ("ok", "no_code", "rejected") for f in frames)
    else:
        assert_published_only_the_rejection(api.stream, api.queue, assert_refusal(status, raw))


def test_random_envelopes_leave_the_process_healthy(api):
    assert_healthy(api)


@pytest.mark.parametrize(
    ("doc", "status"),
    [
        (hostile.deep_json(100_000), 400),
        (hostile.deep_json(100_000, "object"), 400),
        ('{"frames": ' + hostile.deep_json(50_000) + "}", 400),
        (json.dumps({"frames": [{"image_base64": "QUJD"}] * (MAX_BATCH_FRAMES + 1)}), 413),
        (json.dumps({"frames": [{"image_base64": hostile.b64(b"\xff" * 300_000)}] * 15}), 413),
        (json.dumps({"image_base64": hostile.b64(b"\xff" * (MAX_FRAME_BYTES + 1))}), 413),
        (json.dumps({"image_base64": "A" * (MAX_BODY_CHARS + 4)}), 413),
        ("\ufeff" + json.dumps({"image_base64": hostile.b64(hostile.good_jpeg())}), 400),
        (json.dumps({"image_base64": hostile.b64(hostile.good_jpeg())})[:-1], 400),
        ('{"image_base64": "' + hostile.b64(hostile.good_jpeg()) + '", "image_base64": 1}', 400),
        (json.dumps({"image_base64": hostile.b64(hostile.good_jpeg()), "captured_at": "9999-12-31T23:59:59Z"}), 422),
        (json.dumps({"image_base64": hostile.b64(hostile.good_jpeg()), "captured_at": "0001-01-01T00:00:00Z"}), 422),
        (json.dumps({"image_base64": hostile.b64(hostile.good_jpeg()), "captured_at": 1764533703}), 422),
    ],
    ids=[
        "deep-list",
        "deep-object",
        "deep-frames",
        "21-frames",
        "batch-over-4.4MB",
        "frame-over-4.4MB",
        "body-over-6MB",
        "utf8-bom",
        "truncated-json",
        "duplicate-key",
        "year-9999",
        "year-1",
        "epoch-number",
    ],
)
def test_malformed_or_oversized_json_is_refused_whole_and_publishes_nothing(api, doc, status):
    api.clear()
    got, raw = post_json(api, doc)
    err = assert_refusal(got, raw)
    assert got == status, err
    assert api.stream.entries == [] and api.queue.messages == []
    assert_healthy(api)


@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/plain", "image/gif", "multipart/form-data; boundary=x", "application/octet-stream",
     "image/jpeg2000", "application/json-patch+json", "x" * 5000, "image/*", "\u00e9/\u00e9"],
)  # fmt: skip
def test_wrong_or_missing_content_type_is_415_and_publishes_nothing(api, content_type):
    api.clear()
    h = headers(api, content_type=None)
    body = hostile.good_jpeg()
    if content_type is None:
        status, raw, _ = api.request("POST", "/upload", body, h)
    else:
        status, raw = _raw_http(api, "POST", "/upload", body, {**h, "Content-Type": content_type})
    err = assert_refusal(status, raw)
    assert (status, err["code"]) == (415, "unsupported_media_type")
    assert api.stream.entries == [] and api.queue.messages == []


def test_invalid_base64_raw_body_and_text_image_bodies_are_refused(api):
    api.clear()
    # a JSON body declared as JSON but holding non-base64 image text
    status, raw = post_json(api, {"image_base64": "not base64 at all!"})
    assert (status, assert_refusal(status, raw)["code"]) == (400, "bad_request")
    # an empty raw image
    status, raw, _ = api.request("POST", "/upload", b"", headers(api))
    assert (status, assert_refusal(status, raw)["code"]) == (400, "bad_request")
    assert api.stream.entries == [] and api.queue.messages == []


# ------------------------------------------------------------------------------------------- ids, clocks


@FUZZ
@given(
    declared=hostile.hostile_text.filter(lambda s: s not in ("door-1", "")), where=st.sampled_from(["json", "batch"])
)
def test_declared_camera_ids_other_than_the_keys_camera_are_refused(api, declared, where):
    api.clear()
    image = hostile.b64(hostile.good_jpeg())
    doc = {"camera_id": declared, "image_base64": image}
    if where == "batch":
        doc = {"camera_id": declared, "frames": [{"image_base64": image}]}
    status, raw = post_json(api, doc)
    err = assert_refusal(status, raw)
    assert (status, err["code"]) == (403, "forbidden")
    assert api.stream.entries == [] and api.queue.messages == []


@pytest.mark.parametrize(
    "value",
    ["door-2", "door-1\x01", "door-1\u00e9", "door-1\t", "d\u00f6\u00f6r", "door-1" * 2000],
    ids=["other-camera", "control-char", "latin1", "tab", "umlaut", "12k-chars"],
)
def test_x_camera_id_header_with_odd_bytes_is_refused_as_forbidden(api, value):
    api.clear()
    status, raw = _raw_http(api, "POST", "/upload", hostile.good_jpeg(), {**headers(api), "X-Camera-Id": value})
    err = assert_refusal(status, raw)
    assert (status, err["code"]) == (403, "forbidden")
    assert api.stream.entries == []


@FUZZ
@given(ts=hostile.timestamps.filter(lambda v: v is not None))
def test_far_past_future_or_malformed_capture_times_are_422(api, ts):
    api.clear()
    status, raw = post_json(api, {"image_base64": hostile.b64(hostile.good_jpeg()), "captured_at": ts})
    if status == 200:  # only a well-formed, zoned time within the 1 h skew limit may pass
        from stream.schema import parse_ts

        assert abs((parse_ts(ts, "t") - now_utc()).total_seconds()) <= 3600 + 5
        return
    err = assert_refusal(status, raw)
    assert (status, err["code"]) == (422, "invalid_field") and "captured_at" in err["reason"]
    assert api.stream.entries == [] and api.queue.messages == []


# ------------------------------------------------------------------------------------------- batches


def test_one_undecodable_image_in_a_batch_is_a_rejected_frame_in_a_200(api):
    """docs/ingest.md: the envelope is all-or-nothing; a bad *image* inside a valid batch is ``rejected``."""
    api.clear()
    now = format_ts(now_utc())
    frames = [
        {"captured_at": now, "image_base64": hostile.b64(hostile.fresh_jpeg("batch-a"))},
        {"captured_at": now, "image_base64": hostile.b64(hostile.png_claiming(50_000, 50_000))},
        {"captured_at": now, "image_base64": hostile.b64(hostile.fresh_jpeg("batch-b"))},
    ]
    status, raw = post_json(api, {"camera_id": "door-1", "frames": frames})
    assert status == 200, raw[:300]
    got = json_body(raw)["frames"]
    assert [f["outcome"] for f in got] == ["ok", "rejected", "ok"]
    assert got[1]["error"]["code"] == "too_many_pixels" and got[1]["error"]["reason"]
    records = api.stream.records()
    assert sorted((r.kind, getattr(r, "outcome", None)) for r in records) == [
        ("frame", "ok"), ("frame", "ok"), ("frame", "rejected"), ("read", None), ("read", None),
    ]  # fmt: skip
    assert len(api.queue.messages) == 1  # the same ticket in both good frames: one box-office message


@pytest.mark.parametrize(
    "bad",
    [
        {"image_base64": "!!not base64!!"},
        {"image_base64": hostile.b64(hostile.good_jpeg()), "captured_at": "2026-11-30T20:15:03"},
        {"image_base64": hostile.b64(hostile.good_jpeg()), "captured_at": "9999-01-01T00:00:00Z"},
        {"image_base64": hostile.b64(hostile.good_jpeg()), "camera_id": "door-2"},
        {"captured_at": "2026-11-30T20:15:03Z"},
        "not an object",
    ],
    ids=["bad-base64", "naive-time", "far-future", "other-camera", "no-image", "not-object"],
)
def test_one_bad_envelope_field_in_a_batch_refuses_the_whole_batch(api, bad):
    api.clear()
    good = {"captured_at": format_ts(now_utc()), "image_base64": hostile.b64(hostile.fresh_jpeg("env"))}
    status, raw = post_json(api, {"frames": [good, bad, good]})
    err = assert_refusal(status, raw)
    assert status in (400, 403, 422), err
    assert api.stream.entries == [] and api.queue.messages == []


# ------------------------------------------------------------------------------------------- HTTP layer


def _raw_http(api, method: str, path: str, body: bytes, hdrs: dict[str, str]) -> tuple[int, bytes]:
    """Send a request byte for byte (headers latin-1/UTF-8 as given), which http.client would refuse."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in hdrs.items()]
    head = "\r\n".join(lines).encode("utf-8") + b"\r\n\r\n"
    return _exchange(api, head + body)


def _exchange(api, data: bytes, timeout: float = 20) -> tuple[int, bytes]:
    with socket.create_connection(api.server.server_address[:2], timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    resp = b"".join(chunks)
    if not resp.startswith(b"HTTP/"):  # an HTTP/0.9-style answer: no status line, no headers
        return 0, resp
    head, _, body = resp.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_a_body_over_the_10_mb_gateway_limit_is_413_before_it_is_read(api):
    api.clear()
    head = (
        f"POST /upload HTTP/1.1\r\nHost: x\r\nx-api-key: {api.cameras.keys['door-1']}\r\n"
        f"Content-Type: image/jpeg\r\nContent-Length: {MAX_REQUEST_BYTES + 1}\r\n\r\n"
    ).encode()
    status, raw = _exchange(api, head)  # no body sent at all: the answer cannot have waited for it
    assert (status, assert_refusal(status, raw)["code"]) == (413, "payload_too_large")


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "99999999999999999999999"])
def test_bad_content_length_is_a_4xx(api, length):
    head = f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {length}\r\n\r\n"
    status, raw = _exchange(api, head.encode())
    assert 400 <= status < 500 and json_body(raw)["error"]["code"]


def test_a_stalled_client_does_not_hold_up_other_cameras(api):
    """A camera that declares a body and stops sending ties up one thread only."""
    stalled = socket.create_connection(api.server.server_address[:2], timeout=30)
    try:
        stalled.sendall(
            (
                f"POST /upload HTTP/1.1\r\nHost: x\r\nx-api-key: {api.cameras.keys['door-1']}\r\n"
                "Content-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n"
            ).encode()
            + b"\xff\xd8" * 10
        )
        t0 = time.monotonic()
        assert_healthy(api)
        assert time.monotonic() - t0 < 5
    finally:
        stalled.close()


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "TRACE", "BREW"])
def test_unsupported_methods_get_a_4xx_not_501(api, method):
    status, _raw = _exchange(api, f"{method} /upload HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert 400 <= status < 500, status


@pytest.mark.parametrize(
    "request_bytes",
    [b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", b"POST /upload HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
     b"POST /upload HTTP/9.9\r\nHost: x\r\n\r\n"],
    ids=["70k-uri", "70k-header", "http-9.9"],
)  # fmt: skip
def test_requests_refused_by_the_http_layer_still_get_the_json_error_document(api, request_bytes):
    status, raw = _exchange(api, request_bytes)
    assert 400 <= status < 500, status
    assert_refusal(status, raw)


@pytest.mark.parametrize(
    "request_bytes",
    [b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", b"POST /upload HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
     b"POST /upload HTTP/9.9\r\nHost: x\r\n\r\n", b"HEAD /upload HTTP/1.1\r\nHost: x\r\n\r\n", b"GARBAGE\r\n\r\n",
     b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256))],
    ids=["70k-uri", "70k-header", "http-9.9", "HEAD", "garbage-line", "tls-hello"],
)  # fmt: skip
def test_malformed_http_never_reaches_the_handler_and_the_server_survives(api, request_bytes):
    api.clear()
    status, _raw = _exchange(api, request_bytes)
    assert status != 200
    assert api.stream.entries == [] and api.queue.messages == []
    assert_healthy(api)


def test_decoder_refuses_extreme_aspect_ratios_from_the_header_with_bad_image():
    from ingest.decode import decode_image
    from ingest.errors import BadImage

    with pytest.raises(BadImage):
        decode_image(REFUSED["png-1x12000000"][0])
