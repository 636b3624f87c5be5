"""Camera requests: an API Gateway REST proxy event -> the frames it carries.  Pure; raises IngestErrors.

Three request forms reach ``POST /upload`` (see ``openapi/camera-api.yaml`` and ``docs/ingest.md``):

* raw body, ``Content-Type: image/jpeg`` or ``image/png`` -- one frame; optional headers
  ``X-Captured-At`` (ISO-8601 with zone) and ``X-Camera-Id``.  API Gateway delivers it base64 with
  ``isBase64Encoded: true`` (the types must be listed in the API's binary media types);
* JSON ``{"camera_id", "captured_at", "image_base64"}`` -- one frame;
* JSON batch ``{"camera_id", "frames": [{"captured_at", "image_base64"}, ...]}`` -- up to
  :data:`MAX_BATCH_FRAMES` frames.

The whole envelope is validated before any frame is decoded: a malformed body, bad base64, a bad
timestamp or a size limit fails the whole request (4xx, nothing published).  Whether each *image*
decodes is the service's business (``ingest.service``).
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

try:  # SIMD base64 (~50x faster on a 4 MB frame; same API and errors as the standard library)
    from pybase64 import b64decode
except ImportError:  # pragma: no cover - optional speed-up
    from base64 import b64decode

from ingest.decode import MAX_IMAGE_BYTES
from ingest.errors import BadRequest, InvalidField, PayloadTooLarge, UnsupportedMediaType
from stream.schema import MAX_CAPTURE_AHEAD, RecordError, parse_ts

RAW_MEDIA_TYPES = ("image/jpeg", "image/png")
"""Raw-body content types; API Gateway must list them as binary media types (the infra imports this)."""
JSON_MEDIA_TYPE = "application/json"
ACCEPTED_MEDIA_TYPES = (*RAW_MEDIA_TYPES, JSON_MEDIA_TYPE)

CAPTURED_AT_HEADER = "X-Captured-At"
CAMERA_ID_HEADER = "X-Camera-Id"
API_KEY_HEADER = "x-api-key"
"""The header carrying the camera's API key (validated by API Gateway, or by the local server)."""

MAX_BODY_CHARS = 6_000_000
"""Largest request body as it arrives in the event (base64 text included): the Lambda synchronous
invocation payload limit is 6 MB (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html)."""
MAX_FRAME_BYTES = MAX_IMAGE_BYTES
"""Largest image of one frame, after base64 decoding (4.4 MB: 6 MB less base64's 4/3 and framing)."""
MAX_BATCH_FRAMES = 20
"""Most frames in one batch request."""
MAX_BATCH_BYTES = MAX_IMAGE_BYTES
"""Largest total of decoded image bytes in one request (the same payload limit applies to the sum)."""

FORMS = ("raw", "json", "batch")


@dataclass(frozen=True)
class FrameInput:
    """One frame to decode: image bytes, event time, and the camera id the request declared (if any).

    ``captured_at`` is the camera's time when given, else the server's ``received_at``
    (``captured_at_given`` tells which).
    """

    image: bytes
    captured_at: datetime
    captured_at_given: bool
    declared_camera_id: str | None = None


@dataclass(frozen=True)
class UploadRequest:
    """A validated upload: its form (raw | json | batch) and frames, in request order."""

    form: str
    frames: tuple[FrameInput, ...]


def header(event: Mapping[str, Any], name: str) -> str | None:
    """A request header's value, matched case-insensitively (``None`` when absent)."""
    headers = event.get("headers") or {}
    if not isinstance(headers, Mapping):
        return None
    wanted = name.lower()
    for k, v in headers.items():
        if isinstance(k, str) and k.lower() == wanted:
            return v if isinstance(v, str) else None
    return None


def api_key_id(event: Mapping[str, Any]) -> str | None:
    """The id of the API key API Gateway validated (``requestContext.identity.apiKeyId``)."""
    identity = (event.get("requestContext") or {}).get("identity") or {}
    value = identity.get("apiKeyId") if isinstance(identity, Mapping) else None
    return value if isinstance(value, str) and value else None


def request_id(event: Mapping[str, Any]) -> str:
    """API Gateway's request id (the correlation id of logs), '' when absent."""
    value = (event.get("requestContext") or {}).get("requestId")
    return value if isinstance(value, str) else ""


def media_type(event: Mapping[str, Any]) -> str:
    """The request's media type, lower-case, without parameters ('' when there is no Content-Type)."""
    value = header(event, "Content-Type") or ""
    return value.split(";", 1)[0].strip().lower()


def parse_captured_at(value: Any, received_at: datetime, max_skew_seconds: float, where: str) -> datetime:
    """Validate a camera timestamp: ISO-8601 with a zone, at most ``max_skew_seconds`` behind the server
    clock and at most ``stream.schema.MAX_CAPTURE_AHEAD`` (10 minutes) ahead of it -- the ETL would
    quarantine a read further ahead, so it is refused here, where the camera can be told.

    Raises:
        InvalidField: unparsable, zone-less, or too far from ``received_at`` (422).
    """
    try:
        ts = parse_ts(value, "captured_at")
    except RecordError as e:
        raise InvalidField(f"{where}: {e.reason}; send ISO-8601 with a zone, e.g. 2026-11-30T20:15:03.120Z") from None
    ahead = (ts - received_at).total_seconds()
    limit_ahead = MAX_CAPTURE_AHEAD.total_seconds()
    if ahead > limit_ahead:
        raise InvalidField(
            f"{where} is {ahead:,.0f} s ahead of the server clock (limit {limit_ahead:,.0f} s); "
            "check the camera's clock (NTP)"
        )
    if -ahead > max_skew_seconds:
        raise InvalidField(
            f"{where} is {-ahead:,.0f} s behind the server clock (limit {max_skew_seconds:,.0f} s); "
            "check the camera's clock (NTP)"
        )
    return ts


def decode_base64(text: Any, where: str) -> bytes:
    """Standard base64 (padding required, ASCII whitespace ignored) -> bytes.

    Raises:
        BadRequest: not a string or not valid base64 (400).
    """
    if not isinstance(text, str):
        raise BadRequest(f"{where} must be a base64 string, got {type(text).__name__}")
    try:
        return b64decode(text, validate=True)  # fast path: no line breaks
    except (binascii.Error, ValueError):
        pass
    try:
        return b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where} is not valid base64 (standard alphabet, with padding)") from None


def _body_bytes(event: Mapping[str, Any]) -> bytes | str:
    body = event.get("body")
    if body is None or body == "":
        raise BadRequest("the request has no body; send an image or a JSON document")
    if not isinstance(body, str):
        raise BadRequest("the event body is not a string")
    if len(body) > MAX_BODY_CHARS:
        raise PayloadTooLarge(f"the request body is {len(body):,} characters; the limit is {MAX_BODY_CHARS:,}")
    if event.get("isBase64Encoded"):
        return decode_base64(body, "the request body")
    return body


def _declared_id(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField(f"{where} must be a string, got {type(value).__name__}")
    return value


def _frame_size(image: bytes, where: str) -> bytes:
    if len(image) > MAX_FRAME_BYTES:
        raise PayloadTooLarge(f"{where} is {len(image):,} bytes; the limit is {MAX_FRAME_BYTES:,} bytes per frame")
    return image


def _raw_form(event: Mapping[str, Any], received_at: datetime, max_skew: float) -> UploadRequest:
    body = _body_bytes(event)
    if isinstance(body, str):
        raise BadRequest(
            "an image body arrived as text (isBase64Encoded is false): the API must list image/jpeg and "
            "image/png as binary media types"
        )
    image = _frame_size(body, "the image")
    given = header(event, CAPTURED_AT_HEADER)
    captured = (
        parse_captured_at(given, received_at, max_skew, f"header {CAPTURED_AT_HEADER}")
        if given is not None
        else received_at
    )
    declared = header(event, CAMERA_ID_HEADER)
    return UploadRequest("raw", (FrameInput(image, captured, given is not None, declared or None),))


def _json_frame(obj: Any, where: str, camera_id: str | None, received_at: datetime, max_skew: float) -> FrameInput:
    if not isinstance(obj, dict):
        raise BadRequest(f"{where} must be a JSON object")
    if "image_base64" not in obj:
        raise BadRequest(f"{where} lacks image_base64")
    image = _frame_size(decode_base64(obj["image_base64"], f"{where}.image_base64"), f"{where}.image_base64")
    given = obj.get("captured_at")
    captured = parse_captured_at(given, received_at, max_skew, f"{where}.captured_at") if given is not None else None
    declared = _declared_id(obj.get("camera_id"), f"{where}.camera_id")
    if declared is not None and camera_id is not None and declared != camera_id:
        raise BadRequest(f"{where}.camera_id differs from the batch's camera_id")
    return FrameInput(image, captured or received_at, captured is not None, declared or camera_id)


def _json_form(event: Mapping[str, Any], received_at: datetime, max_skew: float) -> UploadRequest:
    body = _body_bytes(event)
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        doc = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("the body is not valid UTF-8 JSON") from None
    if not isinstance(doc, dict):
        raise BadRequest("the JSON body must be an object")
    if "frames" in doc:
        frames = doc["frames"]
        if not isinstance(frames, list) or not frames:
            raise BadRequest("frames must be a non-empty list of {captured_at, image_base64} objects")
        if len(frames) > MAX_BATCH_FRAMES:
            raise PayloadTooLarge(f"the batch has {len(frames)} frames; the limit is {MAX_BATCH_FRAMES}")
        camera_id = _declared_id(doc.get("camera_id"), "camera_id")
        out = tuple(_json_frame(f, f"frames[{i}]", camera_id, received_at, max_skew) for i, f in enumerate(frames))
        total = sum(len(f.image) for f in out)
        if total > MAX_BATCH_BYTES:
            raise PayloadTooLarge(f"the batch holds {total:,} image bytes; the limit is {MAX_BATCH_BYTES:,}")
        return UploadRequest("batch", out)
    return UploadRequest("json", (_json_frame(doc, "body", None, received_at, max_skew),))


def parse_upload(event: Mapping[str, Any], received_at: datetime, max_skew_seconds: float) -> UploadRequest:
    """Validate an upload event and return its frames (images not yet decoded).

    ``received_at`` is the server clock (UTC-aware) used for the skew check and as the default
    ``captured_at``.

    Raises:
        UnsupportedMediaType (415), BadRequest (400), PayloadTooLarge (413), InvalidField (422).
    """
    mt = media_type(event)
    if mt in RAW_MEDIA_TYPES:
        return _raw_form(event, received_at, max_skew_seconds)
    if mt == JSON_MEDIA_TYPE:
        return _json_form(event, received_at, max_skew_seconds)
    shown = repr(mt[:60]) if mt else "none"
    raise UnsupportedMediaType(f"Content-Type {shown} is not accepted; use one of {', '.join(ACCEPTED_MEDIA_TYPES)}")
