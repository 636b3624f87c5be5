"""Box-office delivery core: POST one ticket read to the cinema's control server and classify the answer.

Protocol (documented for box-office implementers in ``docs/ingest.md``)::

    POST <BOX_OFFICE_URL>                       ("{cinema_id}" in the URL is replaced by the read's cinema)
    Authorization: Bearer <token>
    Idempotency-Key: <read_id>                  (a re-delivery must get the first answer again)
    Content-Type: application/json
    {"read_id", "ticket_id", "cinema_id", "room_id", "camera_id", "session_id", "seat", "captured_at"}

Answers and what the forwarder does:

======================  ==================  ===============================================
answer                  outcome recorded    message
======================  ==================  ===============================================
2xx                     accepted            done
409                     already_used        done
404                     unknown_ticket      done (a normal, permanent answer)
408, 429                --                  retried (transient)
other 4xx               refused             permanent: fails, reaches the DLQ by redrive
3xx, 5xx, timeout,      --                  retried (SQS redelivers; DLQ after maxReceiveCount)
connection error
no URL configured       not_configured      done
======================  ==================  ===============================================

Uses only the standard library (urllib).  The token is never logged.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ingest.records import build_outcome
from stream.schema import BoxOfficeOutcome, Read, format_ts, now_utc

log = logging.getLogger(__name__)

DELIVERED = "delivered"
"""The box office decided (or nobody is configured): the message is done."""
PERMANENT = "permanent"
"""The box office refused the request itself: retrying cannot help; the message goes to the DLQ."""
RETRY = "retry"
"""No decision (server error, timeout, network): the message must be delivered again later."""

MAX_DETAIL_CHARS = 200
MAX_RESPONSE_BYTES = 16 * 1024
RETRYABLE_4XX = frozenset({408, 429})


@dataclass(frozen=True)
class BoxOfficeConfig:
    """Where and how to reach the box office.  ``url`` may hold ``{cinema_id}``; empty = not configured."""

    url: str = ""
    token: str = field(default="", repr=False)
    timeout_seconds: float = 3.0

    def url_for(self, cinema_id: str) -> str:
        """The endpoint for one cinema.

        Raises:
            ValueError: the URL is not http(s).
        """
        url = self.url.replace("{cinema_id}", cinema_id)
        if not url.startswith(("https://", "http://")):
            raise ValueError("BOX_OFFICE_URL must be an http(s) URL")
        return url


@dataclass(frozen=True)
class Delivery:
    """The result of one delivery attempt: what to do with the message and, when decided, the outcome record."""

    disposition: str
    outcome: BoxOfficeOutcome | None
    http_status: int | None
    detail: str


class TransportError(RuntimeError):
    """The box office could not be reached or did not answer in time."""


PostFn = Callable[[str, bytes, dict[str, str], float], tuple[int, bytes]]


def request_body(read: Read) -> dict[str, Any]:
    """The JSON document POSTed for one read."""
    return {
        "read_id": read.read_id,
        "ticket_id": read.ticket_id,
        "cinema_id": read.cinema_id,
        "room_id": read.room_id,
        "camera_id": read.camera_id,
        "session_id": read.session_id,
        "seat": read.seat,
        "captured_at": format_ts(read.captured_at),
    }


def classify(status: int) -> tuple[str | None, str]:
    """(outcome, disposition) for an HTTP status; outcome is None when nothing was decided."""
    if 200 <= status < 300:
        return "accepted", DELIVERED
    if status == 409:
        return "already_used", DELIVERED
    if status == 404:
        return "unknown_ticket", DELIVERED
    if status in RETRYABLE_4XX:
        return None, RETRY
    if 400 <= status < 500:
        return "refused", PERMANENT
    return None, RETRY


def detail_of(body: bytes) -> str:
    """A short, printable message from a box-office answer (its JSON detail/message/reason/error, or text)."""
    text = body[:MAX_RESPONSE_BYTES].decode("utf-8", errors="replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        for key in ("detail", "message", "reason", "error", "status"):
            if isinstance(doc.get(key), str):
                text = doc[key]
                break
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text[:MAX_DETAIL_CHARS]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # a redirect surfaces as an HTTPError with the 3xx status


_OPENER = urllib.request.build_opener(_NoRedirect)


def post_json(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    """POST ``body`` and return (status, response bytes); any HTTP status is returned, not raised.

    Raises:
        TransportError: connection refused/reset, DNS failure, TLS error or timeout.
    """
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read(MAX_RESPONSE_BYTES)
    except urllib.error.HTTPError as e:
        try:
            data = e.read(MAX_RESPONSE_BYTES)
        except OSError:
            data = b""
        return e.code, data
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise TransportError(f"box office unreachable: {type(reason).__name__}") from None


def deliver(
    read: Read, config: BoxOfficeConfig, post: PostFn = post_json, clock: Callable[[], datetime] = now_utc
) -> Delivery:
    """Forward one read to the box office and classify the answer (see the module table).

    Never raises for box-office behaviour: network problems become ``RETRY``.
    """
    if not config.url:
        outcome = build_outcome(read, "not_configured", clock(), None, "no box office URL configured")
        return Delivery(DELIVERED, outcome, None, "not configured")
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": read.read_id,
        "User-Agent": "monuv-qr-forwarder/1",
    }
    if config.token:
        headers["Authorization"] = f"Bearer {config.token}"
    body = json.dumps(request_body(read), separators=(",", ":")).encode("utf-8")
    try:
        status, data = post(config.url_for(read.cinema_id), body, headers, config.timeout_seconds)
    except TransportError as e:
        return Delivery(RETRY, None, None, str(e))
    outcome_name, disposition = classify(status)
    detail = detail_of(data) or f"HTTP {status}"
    outcome = build_outcome(read, outcome_name, clock(), status, detail) if outcome_name else None
    return Delivery(disposition, outcome, status, detail)
