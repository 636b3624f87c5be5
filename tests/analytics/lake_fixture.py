"""Test helper: build contract records and write them as a lake (Parquet, ETL layout) without the ETL code.

Layout: ``<root>/<table>/dt=YYYY-MM-DD/hour=HH/<batch>.parquet`` with the columns of
``stream.schema.arrow_schema(kind)`` (record fields + ``lake_at``), partitions from ``captured_at`` (UTC).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from stream.schema import (
    TABLE,
    BoxOfficeOutcome,
    FrameSummary,
    Read,
    Record,
    arrow_schema,
    frame_id,
    outcome_id,
    partition_values,
    read_id,
)


def lake_row(record: Record, lake_at: datetime) -> dict:
    """One Parquet row of ``record``: its fields, corners as x/y structs, plus ``lake_at``."""
    row = record.to_dict()
    if row.get("corners") is not None:
        row["corners"] = [{"x": x, "y": y} for x, y in row["corners"]]
    row["lake_at"] = lake_at
    return row


def write_lake(root: Path, rows: Iterable[tuple[Record, datetime]], batch: str = "batch-0") -> list[Path]:
    """Write (record, lake_at) pairs into ``root`` in the lake layout, one file per partition and batch."""
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    kinds: dict[str, str] = {}
    for record, lake_at in rows:
        table = TABLE[record.kind]
        kinds[table] = record.kind
        dt, hour = partition_values(record.captured_at)
        groups[(table, dt, hour)].append(lake_row(record, lake_at))
    written = []
    for (table, dt, hour), batch_rows in sorted(groups.items()):
        path = root / table / f"dt={dt}" / f"hour={hour}" / f"{batch}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(batch_rows, schema=arrow_schema(kinds[table])), path)
        written.append(path)
    return written


@dataclass
class Camera:
    """A camera of the fixture registry."""

    camera_id: str
    cinema_id: str
    room_id: str
    tz: str


@dataclass
class LakeBuilder:
    """Accumulates frames, reads and box-office outcomes with realistic ids and pipeline times.

    Every record is received ``receive_delay`` after capture and reaches the lake ``lake_delay`` later,
    unless the call says otherwise.
    """

    receive_delay: timedelta = timedelta(seconds=2)
    lake_delay: timedelta = timedelta(seconds=60)
    rows: list[tuple[Record, datetime]] = field(default_factory=list)
    _n: int = 0

    def frame(
        self,
        cam: Camera,
        captured_at: datetime,
        payloads: list[str | tuple[str, dict]] = (),  # type: ignore[assignment]
        *,
        decode_ms: float = 20.0,
        outcome: str | None = None,
        reject_reason: str | None = None,
        receive_delay: timedelta | None = None,
        lake_delay: timedelta | None = None,
    ) -> tuple[FrameSummary, list[Read]]:
        """One frame of ``cam`` with a read per payload; a payload may carry ticket fields as ``(text, {...})``.

        A payload with ticket fields is a valid ticket; a bare string is a code that is not a ticket.
        """
        self._n += 1
        received = captured_at + (self.receive_delay if receive_delay is None else receive_delay)
        lake_at = received + (self.lake_delay if lake_delay is None else lake_delay)
        fid = frame_id(cam.camera_id, f"image-{self._n}".encode())
        where = {"camera_id": cam.camera_id, "cinema_id": cam.cinema_id, "room_id": cam.room_id, "tz": cam.tz}
        reads = []
        for p in payloads:
            text, ticket = (p, None) if isinstance(p, str) else p
            fields = {"ticket_valid": False, "ticket_error": "not a ticket"}
            if ticket is not None:
                fields = {"ticket_valid": True, "ticket_format": "tkt", **ticket}
            reads.append(
                Read(
                    read_id=read_id(fid, text.encode()),
                    frame_id=fid,
                    captured_at=captured_at,
                    received_at=received,
                    text=text,
                    symbology="QRCode",
                    decoder="zxing",
                    **where,
                    **fields,
                )
            )
        if outcome is None:
            outcome = "ok" if reads else "no_code"
        frame = FrameSummary(
            frame_id=fid,
            captured_at=captured_at,
            received_at=received,
            image_bytes=50_000,
            codes=len(reads),
            decode_ms=decode_ms,
            outcome=outcome,
            reject_reason=reject_reason,
            image_format=None if outcome == "rejected" else "jpeg",
            **where,
        )
        self.rows.append((frame, lake_at))
        self.rows.extend((r, lake_at) for r in reads)
        return frame, reads

    def box_office(
        self, read: Read, outcome: str, detail: str | None = None, *, lake_delay: timedelta | None = None
    ) -> BoxOfficeOutcome:
        """The box office's answer to ``read``, decided one second after it was received."""
        decided = read.received_at + timedelta(seconds=1)
        record = BoxOfficeOutcome(
            outcome_id=outcome_id(read.read_id),
            read_id=read.read_id,
            frame_id=read.frame_id,
            camera_id=read.camera_id,
            cinema_id=read.cinema_id,
            room_id=read.room_id,
            tz=read.tz,
            ticket_id=read.ticket_id,
            captured_at=read.captured_at,
            decided_at=decided,
            outcome=outcome,
            http_status=200 if outcome == "accepted" else 409,
            detail=detail,
        )
        self.rows.append((record, decided + (self.lake_delay if lake_delay is None else lake_delay)))
        return record

    def write(self, root: Path, batch: str = "batch-0") -> list[Path]:
        """Write everything accumulated so far as one micro-batch, then start afresh."""
        paths = write_lake(root, self.rows, batch)
        self.rows = []
        return paths
