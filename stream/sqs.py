"""MessageQueue on an Amazon SQS FIFO queue (boto3 ``SendMessageBatch``).

Each message carries ``MessageGroupId`` (the camera: its deliveries stay in order) and
``MessageDeduplicationId`` (a re-send within SQS's 5-minute de-duplication interval is accepted but
not delivered again: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/using-messagededuplicationid-property.html).

``SendMessageBatch`` is not atomic: ``Failed`` lists entries that were not queued.  Server-side
failures are re-sent with capped exponential backoff and jitter within a time budget; sender faults
(an invalid message) and what still fails raise :class:`~stream.ports.PublishError`.

Thread-safety: no mutable state beyond the (thread-safe) boto3 client.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stream.kinesis import CLIENT_CONFIG, RETRYABLE_CODES, Backoff, error_code
from stream.ports import PublishError, QueueMessage

log = logging.getLogger(__name__)

MAX_BATCH_ENTRIES = 10
"""Most messages in one ``SendMessageBatch`` call.
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html"""

MAX_BATCH_BYTES = 256 * 1024
"""Largest batch payload we send (sum of bodies).  SQS accepts up to 1 MiB since 2025; 256 KiB keeps
each batch within older limits and far above a read's ~1 KB.
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html"""

MAX_ID_CHARS = 128
"""Longest ``MessageGroupId`` / ``MessageDeduplicationId``."""

_SQS_TEXT = re.compile("^[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*$")
"""Characters an SQS message body may contain (XML 1.0 set)."""

_SQS_RETRYABLE = RETRYABLE_CODES | {"AWS.SimpleQueueService.ServiceUnavailable", "KmsThrottled", "InternalError"}


def message_text(body: bytes) -> str:
    """The SQS body text for message bytes.

    SQS bodies are text restricted to the XML character set.  A JSON body holding characters outside
    it (e.g. U+FFFF inside a QR payload) is re-written with ASCII escapes -- the same JSON value.

    Raises:
        ValueError: the body is not UTF-8, or not JSON and holds characters SQS refuses.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("SQS message body is not UTF-8 text") from None
    if _SQS_TEXT.match(text):
        return text
    try:
        return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=True)
    except (json.JSONDecodeError, RecursionError):
        raise ValueError("SQS message body holds characters SQS refuses and is not JSON") from None


def _chunks(messages: Sequence[QueueMessage]) -> Iterator[list[tuple[QueueMessage, str]]]:
    batch: list[tuple[QueueMessage, str]] = []
    size = 0
    for m in messages:
        if not m.group_id or not m.dedup_id or len(m.group_id) > MAX_ID_CHARS or len(m.dedup_id) > MAX_ID_CHARS:
            raise ValueError(f"group_id and dedup_id must be 1-{MAX_ID_CHARS} characters")
        text = message_text(m.body)
        n = len(text.encode("utf-8"))
        if batch and (len(batch) == MAX_BATCH_ENTRIES or size + n > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((m, text))
        size += n
    if batch:
        yield batch


class SqsMessageQueue:
    """Durably enqueue box-office messages on one SQS FIFO queue, or raise :class:`PublishError`."""

    def __init__(self, client: Any, queue_url: str, backoff: Backoff | None = None) -> None:
        if not queue_url:
            raise ValueError("queue_url is empty: set BOX_OFFICE_QUEUE_URL to the SQS FIFO queue URL")
        self._client = client
        self.queue_url = queue_url
        self._backoff = backoff or Backoff()

    @classmethod
    def create(cls, queue_url: str, budget_seconds: float = 5.0) -> SqsMessageQueue:
        """A queue with its own boto3 client (region and credentials from the environment)."""
        import boto3

        return cls(boto3.client("sqs", config=CLIENT_CONFIG), queue_url, Backoff(budget_seconds=budget_seconds))

    def send(self, messages: Sequence[QueueMessage]) -> None:
        """Send all messages (batches of <= 10), retrying failed entries within the time budget.

        Raises:
            PublishError: a sender fault, a non-retryable error, or entries still failing at the end.
            ValueError: a message whose ids or body SQS could never accept (a caller bug).
        """
        for batch in _chunks(messages):
            self._send_batch(batch)

    def _send_batch(self, batch: list[tuple[QueueMessage, str]]) -> None:
        pending = {str(i): item for i, item in enumerate(batch)}
        delays = self._backoff.delays()
        attempt = 0
        while True:
            attempt += 1
            last_error = ""
            try:
                resp = self._client.send_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {
                            "Id": i,
                            "MessageBody": text,
                            "MessageGroupId": m.group_id,
                            "MessageDeduplicationId": m.dedup_id,
                        }
                        for i, (m, text) in pending.items()
                    ],
                )
                failed = resp.get("Failed") or []
                for f in failed:
                    if f.get("SenderFault") and f.get("Code") not in _SQS_RETRYABLE:
                        raise PublishError(
                            f"SQS refused a message on {self.queue_url}: {f.get('Code')} {f.get('Message', '')}",
                            len(failed),
                        )
                pending = {f["Id"]: pending[f["Id"]] for f in failed}
                last_error = failed[0].get("Code", "") if failed else ""
            except ClientError as e:
                code = error_code(e)
                if code not in _SQS_RETRYABLE:
                    raise PublishError(f"SQS SendMessageBatch on {self.queue_url} failed: {code}", len(pending)) from e
                last_error = code
            except BotoCoreError as e:
                last_error = type(e).__name__
            if not pending:
                return
            delay = next(delays, None)
            if delay is None:
                raise PublishError(
                    f"{len(pending)} of {len(batch)} messages not accepted by SQS after {attempt} attempts "
                    f"({last_error}); retry the request later",
                    len(pending),
                )
            log.warning(
                "sqs send: %d messages failed (%s), retry %d in %.3fs", len(pending), last_error, attempt, delay
            )
            self._backoff.sleep(delay)
