"""Build the stream records of one frame: a FrameSummary always, one Read per distinct code.  Pure.

Also the box-office de-duplication id (see :func:`box_office_dedup_id`) and the outcome record the
forwarder publishes for the box office's answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from ingest.cameras import Camera
from ingest.tickets import parse_ticket
from stream.schema import BoxOfficeOutcome, FrameSummary, Read, outcome_id, read_id, stable_id

if TYPE_CHECKING:  # the forwarder uses this module without loading the decoder
    from ingest.decode import Code, DecodeResult


def where(camera: Camera) -> dict[str, str]:
    """The camera's place, as every record carries it (camera, cinema, room, time zone)."""
    return {"camera_id": camera.camera_id, "cinema_id": camera.cinema_id, "room_id": camera.room_id, "tz": camera.tz}


def build_read(code: Code, frame_id: str, camera: Camera, captured_at: datetime, received_at: datetime) -> Read:
    """The Read of one code: where, when, the payload, and its ticket fields (or why it is no ticket).

    A payload that is not a valid ticket is kept (``ticket_valid=False`` + ``ticket_error``).
    """
    parsed = parse_ticket(code.text)
    f = parsed.fields
    return Read(
        read_id=read_id(frame_id, code.raw),
        frame_id=frame_id,
        **where(camera),
        captured_at=captured_at,
        received_at=received_at,
        text=code.text,
        raw=None if code.text_is_utf8 else code.raw,
        symbology=code.symbology,
        corners=code.corners,
        decoder=code.decoder,
        ticket_valid=parsed.valid,
        ticket_format=f.format if f else None,
        ticket_error=parsed.error,
        ticket_id=f.ticket_id if f else None,
        ticket_cinema=f.cinema if f else None,
        ticket_room=f.room if f else None,
        session_id=f.session_id if f else None,
        session_start=f.session_start if f else None,
        seat=f.seat if f else None,
    )


def build_summary(
    frame_id: str,
    camera: Camera,
    captured_at: datetime,
    received_at: datetime,
    image_bytes: int,
    result: DecodeResult,
) -> FrameSummary:
    """The FrameSummary of a decoded frame: outcome ``ok`` (codes found) or ``no_code``."""
    return FrameSummary(
        frame_id=frame_id,
        **where(camera),
        captured_at=captured_at,
        received_at=received_at,
        image_bytes=image_bytes,
        codes=len(result.codes),
        decode_ms=round(result.decode_ms, 3),
        outcome="ok" if result.codes else "no_code",
        image_format=result.info.format,
        width=result.info.width,
        height=result.info.height,
    )


def build_rejected(
    frame_id: str,
    camera: Camera,
    captured_at: datetime,
    received_at: datetime,
    image_bytes: int,
    reason: str,
    decode_ms: float,
) -> FrameSummary:
    """The FrameSummary of a frame whose image could not be decoded (``reason``: an error code)."""
    return FrameSummary(
        frame_id=frame_id,
        **where(camera),
        captured_at=captured_at,
        received_at=received_at,
        image_bytes=image_bytes,
        codes=0,
        decode_ms=round(decode_ms, 3),
        outcome="rejected",
        reject_reason=reason,
    )


def time_bucket(ts: datetime, width_seconds: int) -> int:
    """Index of the ``width_seconds``-wide bucket (aligned on the Unix epoch) holding ``ts``."""
    if width_seconds <= 0:
        raise ValueError(f"dedup window must be a positive number of seconds, got {width_seconds}")
    return int(ts.timestamp()) // width_seconds


def box_office_dedup_id(camera_id: str, ticket_id: str, captured_at: datetime, window_seconds: int) -> str:
    """SQS FIFO de-duplication id of a ticket read: one delivery per (camera, ticket, time bucket).

    The same ticket in many consecutive frames of one camera maps to one id within a bucket of
    ``window_seconds`` of capture time.  A sighting that straddles a bucket boundary yields two ids
    (two deliveries; the box office answers the second with "already used", which is recorded).
    """
    return stable_id("box_office_dedup", camera_id, ticket_id, str(time_bucket(captured_at, window_seconds)))


def build_outcome(
    read: Read, outcome: str, decided_at: datetime, http_status: int | None = None, detail: str | None = None
) -> BoxOfficeOutcome:
    """The record of the box office's answer to one forwarded read (id: hash of the read id)."""
    return BoxOfficeOutcome(
        outcome_id=outcome_id(read.read_id),
        read_id=read.read_id,
        frame_id=read.frame_id,
        camera_id=read.camera_id,
        cinema_id=read.cinema_id,
        room_id=read.room_id,
        tz=read.tz,
        ticket_id=read.ticket_id,
        captured_at=read.captured_at,
        decided_at=decided_at,
        outcome=outcome,
        http_status=http_status,
        detail=detail,
    )
