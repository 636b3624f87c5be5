"""Generate the API Gateway REST proxy events under tests/events/ (regenerate: ``python -m tests.events.make_events``).

Each ``*.json`` file is a complete Lambda proxy event as API Gateway (REST API, ``AWS_PROXY``
integration, binary media types image/jpeg and image/png) delivers it to ``ingest.handler.handler``.
Frames are small (400x240) JPEGs with real QR codes from ``local.frames.render_frame``, so the
files stay small; the oversized case is built at test time with :func:`build_event`.

Timestamps in the events are fixed at :data:`CAPTURED_AT`; tests run the handler with a clock set
to :data:`NOW` so the skew check does not depend on when the tests run.
"""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.frames import Placement, render_frame

HERE = Path(__file__).resolve().parent
NOW = datetime(2026, 11, 30, 20, 15, 5, tzinfo=UTC)
"""The server clock the tests use with these events."""
CAPTURED_AT = "2026-11-30T20:15:03.120Z"
SIZE = (400, 240)

REGISTRY: dict[str, Any] = {
    "cameras": [
        {"camera_id": "rex-1-door", "cinema_id": "REX", "room_id": "1", "tz": "America/Sao_Paulo",
         "key_id": "ck_rex1door00001", "key_sha256": "", "revoked": False},
        {"camera_id": "rex-2-door", "cinema_id": "REX", "room_id": "2", "tz": "America/Sao_Paulo",
         "key_id": "ck_rex2door00002", "key_sha256": "", "revoked": False},
        {"camera_id": "old-cam", "cinema_id": "REX", "room_id": "3", "tz": "America/Sao_Paulo",
         "key_id": "ck_revoked000003", "key_sha256": "", "revoked": True},
    ]
}  # fmt: skip
"""Camera registry the events are signed for (key ids as API Gateway reports them)."""
KEY_ID = {c["camera_id"]: c["key_id"] for c in REGISTRY["cameras"]}

TICKET_1 = "TKT:REX:R1:S20261130-2030:T000123:F12"
TICKET_2 = "TKT:REX:R1:S20261130-2030:T000124:F13"
NOT_A_TICKET = "https://example.com/menu"


def frame(payloads: list[str], seed: int = 1, fmt: str = "JPEG") -> bytes:
    """A small frame holding ``payloads`` (QR codes), deterministic in ``seed``."""
    return render_frame(payloads, seed=seed, size=SIZE, placements=[Placement(module_px=3.0)] * len(payloads), fmt=fmt)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def build_event(
    body: bytes | str | None,
    content_type: str | None,
    key_id: str | None = KEY_ID["rex-1-door"],
    headers: dict[str, str] | None = None,
    base64_encoded: bool | None = None,
    request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
    path: str = "/upload",
    method: str = "POST",
) -> dict[str, Any]:
    """An API Gateway REST proxy event for ``POST /upload``.

    ``body`` bytes are base64-encoded (binary media type); a str is passed as text.
    """
    hdrs = {
        "Accept": "application/json",
        "Host": "abc123.execute-api.sa-east-1.amazonaws.com",
        "User-Agent": "monuv-camera/2.1",
        "X-Amzn-Trace-Id": "Root=1-5e66d96f-7491f09xmpl79d18acf3d050",
        "X-Forwarded-For": "203.0.113.10",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
        "x-api-key": "mq_redacted-in-fixture",
    }
    if content_type is not None:
        hdrs["Content-Type"] = content_type
    hdrs.update(headers or {})
    is_b64 = isinstance(body, bytes) if base64_encoded is None else base64_encoded
    text = b64(body) if isinstance(body, bytes) else body
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "2gxmpl",
            "resourcePath": path,
            "httpMethod": method,
            "extendedRequestId": "JJbxmplHYosFVYQ=",
            "requestTime": "30/Nov/2026:20:15:05 +0000",
            "path": f"/prod{path}",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "prod",
            "domainPrefix": "abc123",
            "requestTimeEpoch": int(NOW.timestamp() * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": "203.0.113.10",
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": "monuv-camera/2.1",
                "user": None,
                "apiKey": "mq_redacted-in-fixture" if key_id else None,
                "apiKeyId": key_id,
            },
            "domainName": "abc123.execute-api.sa-east-1.amazonaws.com",
            "apiId": "abc123",
        },
        "body": text,
        "isBase64Encoded": is_b64,
    }


def json_body(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def events() -> dict[str, dict[str, Any]]:
    """Every fixture event by file stem."""
    ticket = frame([TICKET_1], seed=1)
    two = frame([TICKET_2, NOT_A_TICKET], seed=2)
    empty = frame([], seed=3)
    at = {"X-Captured-At": CAPTURED_AT}
    j = "application/json"
    return {
        "upload_binary_jpeg": build_event(ticket, "image/jpeg", headers=at),
        "upload_binary_no_code": build_event(empty, "image/jpeg", headers=at),
        "upload_json": build_event(
            json_body({"camera_id": "rex-1-door", "captured_at": CAPTURED_AT, "image_base64": b64(two)}), j
        ),
        "upload_batch": build_event(
            json_body(
                {
                    "camera_id": "rex-1-door",
                    "frames": [
                        {"captured_at": "2026-11-30T20:15:01.000Z", "image_base64": b64(ticket)},
                        {"captured_at": "2026-11-30T20:15:02.000Z", "image_base64": b64(empty)},
                        {"captured_at": "2026-11-30T20:15:03.000Z", "image_base64": b64(truncated(two))},
                    ],
                }
            ),
            j,
        ),
        "missing_key": build_event(ticket, "image/jpeg", key_id=None, headers=at),
        "revoked_key": build_event(ticket, "image/jpeg", key_id=KEY_ID["old-cam"], headers=at),
        "wrong_camera": build_event(
            json_body({"camera_id": "rex-2-door", "captured_at": CAPTURED_AT, "image_base64": b64(ticket)}), j
        ),
        "not_an_image": build_event(b"GIF89a? no: just some text pretending to be a frame\n" * 4, "image/jpeg"),
        "truncated_jpeg": build_event(truncated(ticket), "image/jpeg", headers=at),
        "bad_base64_body": build_event("this is *not* base64!!", "image/jpeg", base64_encoded=True),
        "bad_base64_json": build_event(
            json_body({"camera_id": "rex-1-door", "captured_at": CAPTURED_AT, "image_base64": "%%%not-b64%%%"}), j
        ),
        "bad_timestamp": build_event(
            json_body({"camera_id": "rex-1-door", "captured_at": "yesterday evening", "image_base64": b64(empty)}), j
        ),
        "naive_timestamp_header": build_event(empty, "image/jpeg", headers={"X-Captured-At": "2026-11-30T20:15:03"}),
        "far_timestamp": build_event(
            json_body({"camera_id": "rex-1-door", "captured_at": "2001-01-01T00:00:00Z", "image_base64": b64(empty)}), j
        ),
        "wrong_content_type": build_event("hello", "text/plain"),
        "malformed_json": build_event('{"camera_id": "rex-1-door", "image_base64": ', j),
        "empty_batch": build_event(json_body({"camera_id": "rex-1-door", "frames": []}), j),
        "unknown_path": build_event(ticket, "image/jpeg", path="/frames", headers=at),
    }


def load(name: str) -> dict[str, Any]:
    """Read one fixture event."""
    return json.loads((HERE / f"{name}.json").read_text("utf-8"))


def main() -> None:
    for name, event in events().items():
        buf = io.StringIO()
        json.dump(event, buf, indent=1)
        (HERE / f"{name}.json").write_text(buf.getvalue() + "\n", "utf-8")
    (HERE / "cameras.json").write_text(json.dumps(REGISTRY, indent=1) + "\n", "utf-8")


if __name__ == "__main__":
    main()
