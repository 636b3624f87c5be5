"""Request parsing: forms, headers, base64, size limits and captured_at validation (no decoding)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest

from ingest.errors import BadRequest, InvalidField, PayloadTooLarge, UnsupportedMediaType
from ingest.request import (
    MAX_BATCH_BYTES,
    MAX_BATCH_FRAMES,
    MAX_BODY_CHARS,
    MAX_FRAME_BYTES,
    api_key_id,
    header,
    parse_upload,
)
from stream.schema import MAX_CAPTURE_AHEAD, parse_ts
from tests.events.make_events import CAPTURED_AT, NOW, build_event, load

JPEG = b"\xff\xd8\xff\xe0 pretend jpeg"  # parsing never decodes: any bytes do


def parse(event, skew: float = 3600):
    return parse_upload(event, NOW, skew)


def test_raw_jpeg_event_gives_one_frame_with_header_time():
    req = parse(load("upload_binary_jpeg"))
    assert req.form == "raw" and len(req.frames) == 1
    f = req.frames[0]
    assert f.image[:2] == b"\xff\xd8"
    assert f.captured_at == parse_ts(CAPTURED_AT, "t") and f.captured_at_given


def test_raw_body_without_time_uses_received_at_and_header_names_are_case_insensitive():
    ev = build_event(JPEG, "image/png", headers={"x-camera-id": "rex-1-door"})
    ev["headers"]["content-type"] = ev["headers"].pop("Content-Type")
    f = parse(ev).frames[0]
    assert f.captured_at == NOW and not f.captured_at_given
    assert f.declared_camera_id == "rex-1-door"
    assert header(ev, "CONTENT-TYPE") == "image/png"


def test_json_single_form_and_media_type_parameters():
    body = json.dumps({"camera_id": "c1", "captured_at": CAPTURED_AT, "image_base64": base64.b64encode(JPEG).decode()})
    req = parse(build_event(body, "application/json; charset=utf-8"))
    assert req.form == "json"
    assert req.frames[0].image == JPEG and req.frames[0].declared_camera_id == "c1"


def test_json_body_delivered_base64_is_accepted():
    body = json.dumps({"image_base64": base64.b64encode(JPEG).decode()}).encode()
    assert parse(build_event(body, "application/json")).frames[0].image == JPEG


def test_base64_with_line_breaks_is_accepted():
    text = base64.encodebytes(JPEG * 20).decode()  # MIME style, newline every 76 chars
    assert "\n" in text
    assert parse(build_event(json.dumps({"image_base64": text}), "application/json")).frames[0].image == JPEG * 20


def test_batch_form_keeps_order_and_inherits_the_camera_id():
    frames = [
        {"captured_at": CAPTURED_AT, "image_base64": base64.b64encode(bytes([i]) + JPEG).decode()} for i in range(3)
    ]
    req = parse(build_event(json.dumps({"camera_id": "c1", "frames": frames}), "application/json"))
    assert req.form == "batch"
    assert [f.image[0] for f in req.frames] == [0, 1, 2]
    assert {f.declared_camera_id for f in req.frames} == {"c1"}


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("wrong_content_type", UnsupportedMediaType),
        ("malformed_json", BadRequest),
        ("bad_base64_body", BadRequest),
        ("bad_base64_json", BadRequest),
        ("empty_batch", BadRequest),
        ("bad_timestamp", InvalidField),
        ("far_timestamp", InvalidField),
        ("naive_timestamp_header", InvalidField),
    ],
)
def test_fixture_events_with_bad_envelopes_are_refused(name, error):
    with pytest.raises(error):
        parse(load(name))


@pytest.mark.parametrize(
    ("body", "ctype", "b64", "error", "match"),
    [
        (None, "image/jpeg", False, BadRequest, "no body"),
        ("text that was binary", "image/jpeg", False, BadRequest, "binary media types"),
        (None, None, False, UnsupportedMediaType, "none"),
        ("[1, 2]", "application/json", False, BadRequest, "object"),
        ('{"frames": "x"}', "application/json", False, BadRequest, "non-empty list"),
        ('{"frames": [1]}', "application/json", False, BadRequest, r"frames\[0\] must be"),
        ('{"frames": [{}]}', "application/json", False, BadRequest, "lacks image_base64"),
        ('{"image_base64": 5}', "application/json", False, BadRequest, "base64 string"),
        ('{"image_base64": "AA==", "camera_id": 7}', "application/json", False, InvalidField, "camera_id"),
        ('{"image_base64": "AA==", "captured_at": 1700000000}', "application/json", False, InvalidField, "ISO"),
        ("[" * 100_000, "application/json", False, BadRequest, "JSON"),
        (b"\xff\xfe{}", "application/json", True, BadRequest, "UTF-8"),
    ],
)
def test_malformed_requests_name_what_is_wrong(body, ctype, b64, error, match):
    ev = build_event(body, ctype, base64_encoded=b64)
    with pytest.raises(error, match=match):
        parse(ev)


def test_batch_frames_must_agree_with_the_batch_camera_id():
    frames = [{"image_base64": "AA==", "camera_id": "other"}]
    with pytest.raises(BadRequest, match="differs"):
        parse(build_event(json.dumps({"camera_id": "c1", "frames": frames}), "application/json"))


def test_size_limits_give_413_before_anything_is_decoded():
    with pytest.raises(PayloadTooLarge, match="per frame"):
        parse(build_event(b"\xff" * (MAX_FRAME_BYTES + 1), "image/jpeg"))
    with pytest.raises(PayloadTooLarge, match="characters"):
        parse(build_event("A" * (MAX_BODY_CHARS + 4), "image/jpeg", base64_encoded=True))
    one = base64.b64encode(b"x").decode()
    too_many = {"frames": [{"image_base64": one}] * (MAX_BATCH_FRAMES + 1)}
    with pytest.raises(PayloadTooLarge, match="frames"):
        parse(build_event(json.dumps(too_many), "application/json"))
    part = base64.b64encode(b"x" * (MAX_BATCH_BYTES // 3 + 1)).decode()
    heavy = {"frames": [{"image_base64": part}] * 3}
    with pytest.raises(PayloadTooLarge, match="image bytes"):
        parse(build_event(json.dumps(heavy), "application/json"))


def test_captured_at_skew_limit_is_inclusive_of_the_setting():
    def at(delta: timedelta):
        ts = (NOW + delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return build_event(json.dumps({"image_base64": "AA==", "captured_at": ts}), "application/json")

    assert parse(at(timedelta(seconds=-60)), skew=60).frames[0].captured_at == NOW - timedelta(seconds=60)
    assert parse(at(timedelta(hours=-2, minutes=0)), skew=3 * 3600).frames[0].captured_at_given
    with pytest.raises(InvalidField, match="behind the server clock"):
        parse(at(timedelta(seconds=-61)), skew=60)
    # ahead of the server clock, the contract's fixed limit applies whatever the setting
    assert parse(at(MAX_CAPTURE_AHEAD), skew=60).frames[0].captured_at == NOW + MAX_CAPTURE_AHEAD
    with pytest.raises(InvalidField, match="ahead of the server clock"):
        parse(at(MAX_CAPTURE_AHEAD + timedelta(seconds=1)), skew=10 * 86400)
    doc = {"image_base64": "AA==", "captured_at": "2026-11-30T17:15:03-03:00"}
    offset = build_event(json.dumps(doc), "application/json")
    assert parse(offset).frames[0].captured_at == parse_ts("2026-11-30T20:15:03Z", "t")


def test_api_key_id_comes_from_the_request_context_only():
    assert api_key_id(load("upload_binary_jpeg")) == "ck_rex1door00001"
    assert api_key_id(load("missing_key")) is None
    assert api_key_id({"requestContext": None}) is None
    assert api_key_id({"headers": {"x-api-key": "mq_x"}}) is None
