"""Errors of the ingest package, each carrying the HTTP status and machine code the camera API returns.

Hierarchy::

    IngestError (ValueError)            400 bad_request
    ├── BadImage                        400/415/413 -- raised by ingest.decode (see its subclasses)
    │   ├── EmptyImage                  400 empty_image
    │   ├── NotAnImage                  415 not_an_image
    │   ├── UnsupportedFormat           415 unsupported_format
    │   ├── TruncatedImage              400 truncated_image
    │   ├── TooManyPixels               413 too_many_pixels
    │   └── TooManyBytes                413 too_many_bytes
    ├── BadRequest                      400 bad_request      (malformed body, bad base64, bad JSON)
    ├── UnsupportedMediaType            415 unsupported_media_type
    ├── PayloadTooLarge                 413 payload_too_large
    ├── Forbidden                       403 forbidden        (unknown camera, camera mismatch)
    └── InvalidField                    422 invalid_field    (e.g. captured_at unparsable / far from now)

Dependency failures (Kinesis/SQS down) are *not* IngestErrors: they surface as
``stream.ports.PublishError`` and become a 503 the camera may retry safely.
"""

from __future__ import annotations


class IngestError(ValueError):
    """A request the camera API refuses.  ``status`` is the HTTP status, ``code`` a stable machine code."""

    status = 400
    code = "bad_request"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BadImage(IngestError):
    """The frame bytes are not a decodable image within limits."""

    code = "bad_image"


class EmptyImage(BadImage):
    code = "empty_image"


class NotAnImage(BadImage):
    status = 415
    code = "not_an_image"


class UnsupportedFormat(BadImage):
    status = 415
    code = "unsupported_format"


class TruncatedImage(BadImage):
    code = "truncated_image"


class TooManyPixels(BadImage):
    status = 413
    code = "too_many_pixels"


class TooManyBytes(BadImage):
    status = 413
    code = "too_many_bytes"


class BadRequest(IngestError):
    code = "bad_request"


class UnsupportedMediaType(IngestError):
    status = 415
    code = "unsupported_media_type"


class PayloadTooLarge(IngestError):
    status = 413
    code = "payload_too_large"


class Forbidden(IngestError):
    status = 403
    code = "forbidden"


class InvalidField(IngestError):
    status = 422
    code = "invalid_field"
