"""The ingest service: authenticated camera + validated frames -> decode -> records -> publish -> result.

Pure orchestration over ports (``stream.ports``): the Lambda handler wires Kinesis and SQS, local
mode wires SQLite, tests wire in-memory fakes.

What is published for an authenticated camera's request:

* every frame gets a ``FrameSummary`` on the stream -- ``ok``, ``no_code``, or ``rejected`` with the
  error code when its image cannot be decoded (camera health needs to see bad frames too);
* every distinct code gets a ``Read`` (invalid ticket payloads included, flagged ``ticket_valid=false``);
* every *valid ticket* read gets one box-office message, de-duplicated per camera, ticket and time
  bucket (:func:`ingest.records.box_office_dedup_id`).

Stream entries go out first, then queue messages; a :class:`~stream.ports.PublishError` from either
propagates (the handler answers 503 and the camera retries; ids are deterministic, so a retry
produces the same records and the same de-duplication ids).

Thread-safety: the service holds no per-request state; it is as thread-safe as its ports.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ingest.cameras import Camera, Registry
from ingest.decode import DecodeResult, decode_image
from ingest.errors import BadImage, Forbidden, IngestError, TruncatedImage
from ingest.records import box_office_dedup_id, build_read, build_rejected, build_summary
from ingest.request import UploadRequest
from stream.aggregate import pack
from stream.ports import MessageQueue, QueueMessage, StreamWriter
from stream.schema import FrameSummary, Read, frame_id, to_bytes

log = logging.getLogger(__name__)

INPUT_ERRORS: tuple[type[BaseException], ...] = (OSError, SyntaxError, ValueError, EOFError, struct.error)
"""Exceptions image libraries raise on corrupt input that the decoder may not translate; they make the
frame ``rejected`` (truncated_image).  Anything else escaping the decoder is a bug (500)."""


@dataclass(frozen=True)
class CodeResult:
    """One code of a frame as the camera sees it in the response."""

    read_id: str
    text: str
    ticket_valid: bool
    ticket_id: str | None = None
    ticket_error: str | None = None

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {"read_id": self.read_id, "text": self.text, "ticket_valid": self.ticket_valid}
        if self.ticket_id is not None:
            d["ticket_id"] = self.ticket_id
        if self.ticket_error is not None:
            d["ticket_error"] = self.ticket_error
        return d


@dataclass(frozen=True)
class FrameResult:
    """The outcome of one frame: ``ok`` | ``no_code`` | ``rejected`` (then ``error`` says why)."""

    frame_id: str
    outcome: str
    decode_ms: float
    codes: tuple[CodeResult, ...] = ()
    error: IngestError | None = None

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {
            "frame_id": self.frame_id,
            "outcome": self.outcome,
            "codes": [c.to_json() for c in self.codes],
        }
        if self.error is not None:
            d["error"] = {"code": self.error.code, "reason": self.error.reason}
        return d


@dataclass(frozen=True)
class IngestResult:
    """What one request produced: per-frame results plus publish counts."""

    camera_id: str
    form: str
    frames: tuple[FrameResult, ...]
    stream_records: int = 0
    stream_entries: int = 0
    queue_messages: int = 0

    @property
    def error(self) -> IngestError | None:
        """For a single-frame request whose frame was rejected, the error the camera gets (4xx)."""
        if self.form != "batch" and len(self.frames) == 1:
            return self.frames[0].error
        return None

    def to_json(self) -> dict[str, object]:
        return {"frames": [f.to_json() for f in self.frames]}


def authorize(registry: Registry, key_id: str | None) -> Camera:
    """The camera owning the API key id API Gateway validated.

    Raises:
        Forbidden: no key id, or no active camera has it (unknown or revoked key) (403).
    """
    camera = registry.by_key_id(key_id)
    if camera is None:
        raise Forbidden("the API key is missing, unknown or revoked; send the camera's key in x-api-key")
    return camera


@dataclass
class _Outputs:
    blobs: list[bytes] = field(default_factory=list)  # wire bytes of every record, in order
    messages: dict[str, QueueMessage] = field(default_factory=dict)

    def add(self, record: Read | FrameSummary) -> bytes:
        data = to_bytes(record)
        self.blobs.append(data)
        return data


class IngestService:
    """Decode frames of one camera and publish their records.

    ``aggregate``: KPL-aggregate stream entries per camera; ``dedup_window_seconds``: width of the
    box-office de-duplication bucket; ``decoder``: injectable for tests (defaults to
    :func:`ingest.decode.decode_image`).
    """

    def __init__(
        self,
        stream: StreamWriter,
        queue: MessageQueue,
        *,
        aggregate: bool = True,
        dedup_window_seconds: int = 300,
        decoder: Callable[[bytes], DecodeResult] = decode_image,
    ) -> None:
        if dedup_window_seconds <= 0:
            raise ValueError(f"dedup_window_seconds must be positive, got {dedup_window_seconds}")
        self.stream = stream
        self.queue = queue
        self.aggregate = aggregate
        self.dedup_window_seconds = dedup_window_seconds
        self._decode = decoder

    def ingest(self, camera: Camera, upload: UploadRequest, received_at: datetime) -> IngestResult:
        """Decode every frame of ``upload``, publish the records, and report per-frame results.

        Raises:
            Forbidden: a frame declares another camera's id (nothing is published).
            PublishError: the stream or queue did not accept the records (the camera should retry).
        """
        for i, frame in enumerate(upload.frames):
            if frame.declared_camera_id is not None and frame.declared_camera_id != camera.camera_id:
                where = "camera_id" if upload.form != "batch" else f"frames[{i}].camera_id"
                raise Forbidden(f"{where} does not match the camera of the API key")
        out = _Outputs()
        results: list[FrameResult] = []
        seen: dict[str, FrameResult] = {}
        for frame in upload.frames:
            fid = frame_id(camera.camera_id, frame.image)
            if fid in seen:  # the same image twice in one batch: one set of records
                results.append(seen[fid])
                continue
            res = self._frame(camera, fid, frame.image, frame.captured_at, received_at, out)
            seen[fid] = res
            results.append(res)
        entries = pack(((camera.camera_id, b) for b in out.blobs), self.aggregate)
        self.stream.put(entries)
        if out.messages:
            self.queue.send(list(out.messages.values()))
        return IngestResult(
            camera.camera_id, upload.form, tuple(results), len(out.blobs), len(entries), len(out.messages)
        )

    def _frame(
        self, camera: Camera, fid: str, image: bytes, captured_at: datetime, received_at: datetime, out: _Outputs
    ) -> FrameResult:
        t0 = time.perf_counter()
        try:
            result = self._decode(image)
        except BadImage as e:
            return self._rejected(camera, fid, image, captured_at, received_at, e, t0, out)
        except INPUT_ERRORS as e:
            log.warning("decoder raised %s on a frame; treated as a corrupt image", type(e).__name__)
            err = TruncatedImage(f"the image data is corrupt ({type(e).__name__})")
            return self._rejected(camera, fid, image, captured_at, received_at, err, t0, out)
        out.add(build_summary(fid, camera, captured_at, received_at, len(image), result))
        codes = []
        for code in result.codes:
            read = build_read(code, fid, camera, captured_at, received_at)
            data = out.add(read)
            codes.append(CodeResult(read.read_id, read.text, read.ticket_valid, read.ticket_id, read.ticket_error))
            if read.ticket_valid and read.ticket_id:
                dedup = box_office_dedup_id(camera.camera_id, read.ticket_id, captured_at, self.dedup_window_seconds)
                out.messages.setdefault(dedup, QueueMessage(data, camera.camera_id, dedup))
        return FrameResult(fid, "ok" if codes else "no_code", result.decode_ms, tuple(codes))

    @staticmethod
    def _rejected(
        camera: Camera,
        fid: str,
        image: bytes,
        captured_at: datetime,
        received_at: datetime,
        err: IngestError,
        t0: float,
        out: _Outputs,
    ) -> FrameResult:
        ms = (time.perf_counter() - t0) * 1000.0
        out.add(build_rejected(fid, camera, captured_at, received_at, len(image), err.code, ms))
        return FrameResult(fid, "rejected", ms, (), err)
