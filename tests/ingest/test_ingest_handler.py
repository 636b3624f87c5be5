"""The Lambda handler end to end on API Gateway events, with in-memory ports."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import handler as ingest_handler
from ingest.request import MAX_FRAME_BYTES
from stream.schema import FrameSummary, Read
from tests.events.make_events import TICKET_1, TICKET_2, build_event, events, frame, load


def call(event, ctx=None) -> tuple[int, dict, dict]:
    resp = ingest_handler.handler(event, ctx)
    headers = {k: v[-1] for k, v in (resp.get("multiValueHeaders") or {}).items()}  # REST API v1 response shape
    assert headers["Content-Type"] == "application/json"
    assert resp["headers"] == headers  # flat copy for callers that read ``headers`` (local server)
    return resp["statusCode"], json.loads(resp["body"]), headers


# status, error code, what is published (kinds/outcomes) -- one row per fixture event
EXPECTED = {
    "upload_binary_jpeg": (200, None, [("frame", "ok"), ("read", None)]),
    "upload_binary_no_code": (200, None, [("frame", "no_code")]),
    "upload_json": (200, None, [("frame", "ok"), ("read", None), ("read", None)]),
    "upload_batch": (200, None, [("frame", "ok"), ("read", None), ("frame", "no_code"), ("frame", "rejected")]),
    "missing_key": (403, "forbidden", []),
    "revoked_key": (403, "forbidden", []),
    "wrong_camera": (403, "forbidden", []),
    "not_an_image": (415, "not_an_image", [("frame", "rejected")]),
    "truncated_jpeg": (400, "truncated_image", [("frame", "rejected")]),
    "bad_base64_body": (400, "bad_request", []),
    "bad_base64_json": (400, "bad_request", []),
    "bad_timestamp": (422, "invalid_field", []),
    "naive_timestamp_header": (422, "invalid_field", []),
    "far_timestamp": (422, "invalid_field", []),
    "wrong_content_type": (415, "unsupported_media_type", []),
    "malformed_json": (400, "bad_request", []),
    "empty_batch": (400, "bad_request", []),
    "unknown_path": (404, "not_found", []),
}


def test_every_fixture_event_has_an_expectation():
    assert set(EXPECTED) == set(events())


def _published(stream) -> list[tuple[str, str | None]]:
    return [(r.kind, getattr(r, "outcome", None)) for r in stream.records()]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_events_get_their_status_code_and_publish_only_what_they_should(name, wired, lambda_context):
    stream, _queue = wired
    status, body, _headers = call(load(name), lambda_context)
    want_status, want_code, want_published = EXPECTED[name]
    assert status == want_status, body
    if want_code:
        assert body["error"]["code"] == want_code
        assert len(body["error"]["reason"]) > 10
    else:
        assert [f["outcome"] for f in body["frames"]]
    assert _published(stream) == want_published


def test_success_body_lists_frames_codes_and_read_ids_matching_the_stream(wired):
    stream, queue = wired
    status, body, _ = call(load("upload_json"))
    assert status == 200
    reads = {r.read_id: r for r in stream.records() if isinstance(r, Read)}
    codes = body["frames"][0]["codes"]
    assert {c["read_id"] for c in codes} == set(reads)
    for c in codes:
        assert c["text"] == reads[c["read_id"]].text and c["ticket_valid"] == reads[c["read_id"]].ticket_valid
    assert [json.loads(m.body)["ticket_id"] for m in queue.messages] == ["T000124"]


def test_rejected_single_frame_error_names_the_frame_id(wired):
    stream, _ = wired
    status, body, _ = call(load("truncated_jpeg"))
    (summary,) = stream.records()
    assert isinstance(summary, FrameSummary) and body["error"]["frame_id"] == summary.frame_id
    assert status == 400


def test_oversized_frame_is_413_and_publishes_nothing(wired):
    stream, _ = wired
    status, body, _ = call(build_event(b"\xff\xd8" + b"\x00" * MAX_FRAME_BYTES, "image/jpeg"))
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    assert stream.calls == 0


def test_png_raw_body_is_accepted(wired):
    status, body, _ = call(build_event(frame([TICKET_1], seed=1, fmt="PNG"), "image/png"))
    assert status == 200 and body["frames"][0]["codes"][0]["text"] == TICKET_1


def test_same_frame_posted_twice_answers_the_same_ids(wired):
    a = call(load("upload_binary_jpeg"))[1]
    b = call(load("upload_binary_jpeg"))[1]
    assert a == b and a["frames"][0]["codes"][0]["read_id"]


@pytest.mark.parametrize("failing", ["stream", "queue"])
def test_publish_failure_is_503_with_retry_after(wired, failing):
    stream, queue = wired
    (stream if failing == "stream" else queue).fail = True
    status, body, headers = call(load("upload_binary_jpeg"))
    assert status == 503 and body["error"]["code"] == "unavailable"
    assert headers["Retry-After"] == str(ingest_handler.RETRY_AFTER_SECONDS)


def test_unexpected_errors_are_500_with_a_json_body(wired, monkeypatch):
    def boom(*_a, **_k):
        raise RuntimeError("bug")

    monkeypatch.setattr(ingest_handler._wired().service, "ingest", boom)
    status, body, _ = call(load("upload_binary_jpeg"))
    assert status == 500 and body["error"]["code"] == "internal_error"


@pytest.fixture
def log_lines():
    """The Powertools logger's JSON lines, captured with its own formatter (level INFO unless a test sets it)."""
    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    h.setFormatter(ingest_handler.logger.registered_formatter)
    inner = ingest_handler.logger._logger
    old = inner.level
    inner.addHandler(h)
    inner.setLevel(logging.INFO)
    yield buf
    inner.removeHandler(h)
    inner.setLevel(old)


def _logs(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_logs_carry_the_correlation_id_and_never_the_ticket_or_key(wired, log_lines):
    ingest_handler.logger._logger.setLevel(logging.DEBUG)  # the per-request summary of a clean upload is DEBUG
    call(load("upload_binary_jpeg"))
    call(load("missing_key"))
    out = log_lines.getvalue()
    logs = [json.loads(line) for line in out.splitlines()]
    assert len(logs) == 2
    assert all(entry.get("correlation_id") == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef" for entry in logs)
    assert logs[0]["message"] == "upload processed" and logs[0]["camera_id"] == "rex-1-door"
    assert "camera_id" not in logs[1]  # per-request keys do not leak into the next request
    for secret in ("T000123", TICKET_1, "mq_redacted-in-fixture", "ck_rex1door00001"):
        assert secret not in out


def test_at_info_level_only_uploads_with_a_rejected_frame_log_their_summary(wired, log_lines):
    call(load("upload_binary_jpeg"))
    call(load("upload_binary_no_code"))
    assert _logs(log_lines) == []  # clean uploads: counted by the metrics, no log line each
    call(load("upload_batch"))  # one of its frames is a truncated JPEG
    (entry,) = _logs(log_lines)
    assert (entry["level"], entry["message"]) == ("INFO", "upload processed")
    assert entry["outcomes"] == ["ok", "no_code", "rejected"]


@pytest.mark.parametrize(("lambda_env", "traced"), [({"LAMBDA_TASK_ROOT": "/var/task"}, True), ({}, False)])
def test_the_handler_is_wrapped_by_the_x_ray_tracer_in_lambda_and_only_there(lambda_env, traced):
    env = {k: v for k, v in os.environ.items() if k not in ("POWERTOOLS_TRACE_DISABLED", "LAMBDA_TASK_ROOT")}
    probe = "import ingest.handler as h; f = lambda e, c: 1; print(h.tracer.disabled, h._traced(f) is not f)"
    out = subprocess.run([sys.executable, "-c", probe], env={**env, **lambda_env}, capture_output=True, text=True)
    assert out.stdout.split() == [str(not traced), str(traced)], out.stderr


def test_wrong_method_or_path_is_a_404_naming_the_endpoint(wired):
    event = load("upload_binary_jpeg")
    event["httpMethod"] = "GET"
    status, body, _ = call(event)
    assert status == 404 and body["error"]["code"] == "not_found"
    assert "GET /upload" in body["error"]["reason"] and "POST images to /upload" in body["error"]["reason"]


def test_emf_metrics_count_frames_reads_and_rejects_by_reason(wired, capsys, monkeypatch):
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    call(load("upload_batch"))
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    main = next(m for m in emf if "Frames" in m)
    assert main["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "MonuvQR"
    assert main["Frames"] == [1.0, 1.0, 1.0] and len(main["DecodeMs"]) == 3
    assert (main["Reads"], main["EmptyFrames"], main["Requests"]) == ([1.0], [1.0], [1.0])
    rejects = [m for m in emf if "Rejects" in m]
    assert [(m["reason"], m["service"]) for m in rejects] == [("truncated_image", ingest_handler.SERVICE_NAME)]


def test_with_metrics_disabled_no_metric_is_buffered_or_printed(wired, capsys, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    for _ in range(30):  # Powertools prints a buffer of 100 values even when disabled: none may pile up
        call(load("upload_batch"))
    assert not ingest_handler.metrics.metric_set
    assert '"_aws"' not in capsys.readouterr().out


def test_importing_the_handler_builds_no_aws_client_and_cold_start_uses_the_environment(monkeypatch, aws):
    ingest_handler.reset()
    monkeypatch.setenv("READS_STREAM_NAME", aws.stream_name)
    monkeypatch.setenv("BOX_OFFICE_QUEUE_URL", aws.queue_url)
    from tests.events.make_events import REGISTRY

    monkeypatch.setenv("CAMERA_REGISTRY", json.dumps(REGISTRY))
    monkeypatch.setenv("MAX_CLOCK_SKEW_SECONDS", str(10 * 365 * 86400))
    event = load("upload_binary_jpeg")  # captured at a fixed time: let the (real) server clock stamp it instead
    for headers in (event.get("headers") or {}, event.get("multiValueHeaders") or {}):
        headers.pop("X-Captured-At", None)
    try:
        status, _body, _ = call(event)
    finally:
        ingest_handler.reset()
    assert status == 200
    assert {r.kind for r in aws.stream_records()} == {"frame", "read"}
    assert len(aws.queue_messages()) == 1


# ------------------------------------------------------------------------------------------------
# Random and corrupt inputs never produce a 5xx, and a refused request publishes no read.

_JPEG = frame([TICKET_2], seed=7)

bodies = st.one_of(
    st.binary(max_size=300),
    st.integers(0, len(_JPEG)).map(lambda n: _JPEG[:n]),
    st.tuples(st.integers(0, len(_JPEG) - 1), st.integers(0, 255)).map(
        lambda t: _JPEG[: t[0]] + bytes([t[1]]) + _JPEG[t[0] + 1 :]
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
json_docs = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"image_base64": st.one_of(bodies.map(lambda b: base64.b64encode(b).decode()), st.text(max_size=30))},
        optional={
            "camera_id": st.one_of(st.text(max_size=10), st.just("rex-1-door"), st.integers()),
            "captured_at": st.one_of(st.text(max_size=30), st.just("2026-11-30T20:15:00Z"), st.integers()),
        },
    ),
    st.lists(
        st.fixed_dictionaries({"image_base64": bodies.map(lambda b: base64.b64encode(b).decode())}), max_size=3
    ).map(lambda fs: {"frames": fs}),
)
content_types = st.sampled_from(["image/jpeg", "image/png", "application/json", "text/plain", "", "IMAGE/JPEG; q=1"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ctype=content_types,
    raw=bodies,
    doc=json_docs,
    as_json=st.booleans(),
    b64=st.booleans(),
    captured=st.one_of(st.none(), st.text(max_size=30), st.just("2026-11-30T20:15:00+00:00")),
    key=st.sampled_from(["ck_rex1door00001", None, "ck_revoked000003", "\x00"]),
)
def test_random_requests_never_get_a_5xx_and_refusals_publish_no_reads(
    wired, ctype, raw, doc, as_json, b64, captured, key
):
    stream, queue = wired
    stream.entries.clear()
    queue.messages.clear()
    body: bytes | str = json.dumps(doc) if as_json else raw
    if b64 and isinstance(body, str):
        body = body.encode()
    ev = build_event(body, ctype or None, key_id=key, headers={"X-Captured-At": captured} if captured else None)
    if not b64 and isinstance(body, bytes):
        ev["body"], ev["isBase64Encoded"] = body.decode("latin-1"), False
    status, resp, _ = call(ev)
    assert status < 500, resp
    if status != 200:
        assert "error" in resp and resp["error"]["code"] and resp["error"]["reason"]
        assert all(r.kind == "frame" and r.outcome == "rejected" for r in stream.records())
        assert queue.messages == []
