"""Ports: the small interfaces between the core and its transports.

The cloud adapters (``stream.kinesis``, ``stream.sqs``) and the local ones (``stream.sqlite``)
implement the same protocols, and tests plug in in-memory fakes, the way httpx swaps transports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StreamEntry:
    """One entry put on the analytics stream: a Kinesis record or a SQLite stream row.

    ``data`` is either one compact-JSON record or a KPL aggregate of several records that share
    ``partition_key`` (see ``stream.aggregate``).
    """

    partition_key: str
    data: bytes


@dataclass(frozen=True)
class QueueMessage:
    """One box-office delivery message.

    ``group_id`` keeps one camera's messages in order (FIFO message group); ``dedup_id`` makes a
    re-send within the de-duplication window a no-op.
    """

    body: bytes
    group_id: str
    dedup_id: str


class PublishError(RuntimeError):
    """A transport could not durably accept entries after its retries; the caller must fail the
    request (5xx) so the camera retries.  ``failed`` counts the entries not accepted."""

    def __init__(self, message: str, failed: int = 0) -> None:
        super().__init__(message)
        self.failed = failed


class StreamWriter(Protocol):
    """Durably appends entries to the analytics stream, or raises :class:`PublishError`."""

    def put(self, entries: Sequence[StreamEntry]) -> None: ...


class MessageQueue(Protocol):
    """Durably enqueues box-office messages, or raises :class:`PublishError`."""

    def send(self, messages: Sequence[QueueMessage]) -> None: ...
