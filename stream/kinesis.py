"""StreamWriter on Amazon Kinesis Data Streams (boto3 ``PutRecords``).

``PutRecords`` is not atomic: a call can succeed while some entries fail (``FailedRecordCount`` > 0,
``ErrorCode`` per entry, e.g. ``ProvisionedThroughputExceededException``); response entries match
request entries by position.  :class:`KinesisStreamWriter` re-sends only the failed entries with
capped exponential backoff and full jitter until they are accepted or the time budget is spent, then
raises :class:`~stream.ports.PublishError` -- never silently drops an entry.

Ordering: a retried entry lands after entries sent later, so order within a partition key is "mostly
in order"; consumers order by the records' ``captured_at`` and de-duplicate by id.

Thread-safety: a writer holds no mutable state beyond its boto3 client (which is thread-safe).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from stream.aggregate import MAX_PUT_RECORDS_BYTES, MAX_PUT_RECORDS_ENTRIES
from stream.ports import PublishError, StreamEntry

log = logging.getLogger(__name__)

CLIENT_CONFIG = Config(connect_timeout=1, read_timeout=3, retries={"mode": "standard", "max_attempts": 2})
"""Short timeouts and few SDK-level retries: our own loop retries within the request's time budget,
and API Gateway gives up on the integration after 29 s."""

RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "LimitExceededException",
        "InternalFailure",
        "InternalFailureException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "KMSThrottlingException",
        "RequestTimeout",
    }
)
"""Error codes (whole call or per entry) worth retrying; anything else fails at once."""


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with full jitter, within a time budget (seconds).

    Delay before retry ``n`` (1-based) is uniform in ``[0, min(cap, base * 2**(n-1))]``
    (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/).
    """

    budget_seconds: float = 5.0
    base_seconds: float = 0.05
    cap_seconds: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    rand: Callable[[], float] = random.random

    def delays(self) -> Iterator[float]:
        """Yield how long to wait before each retry; stops when the budget would be exceeded."""
        deadline = self.clock() + self.budget_seconds
        n = 0
        while True:
            delay = self.rand() * min(self.cap_seconds, self.base_seconds * (2**n))
            if self.clock() + delay >= deadline:
                return
            n += 1
            yield delay


def error_code(e: ClientError) -> str:
    """The AWS error code of a botocore ClientError ('' when absent)."""
    return str(e.response.get("Error", {}).get("Code", ""))


def batches(entries: Sequence[StreamEntry]) -> Iterator[list[StreamEntry]]:
    """Split entries into ``PutRecords`` calls of <= 500 entries and <= 5 MiB (data + keys)."""
    batch: list[StreamEntry] = []
    size = 0
    for e in entries:
        n = len(e.data) + len(e.partition_key.encode("utf-8"))
        if batch and (len(batch) == MAX_PUT_RECORDS_ENTRIES or size + n > MAX_PUT_RECORDS_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(e)
        size += n
    if batch:
        yield batch


class KinesisStreamWriter:
    """Durably put entries on one Kinesis stream, or raise :class:`PublishError`.

    ``client`` is a boto3 Kinesis client; ``backoff`` bounds the retries of one :meth:`put` call.
    """

    def __init__(self, client: Any, stream_name: str, backoff: Backoff | None = None) -> None:
        if not stream_name:
            raise ValueError("stream_name is empty: set READS_STREAM_NAME to the Kinesis stream name")
        self._client = client
        self.stream_name = stream_name
        self._backoff = backoff or Backoff()

    @classmethod
    def create(cls, stream_name: str, budget_seconds: float = 5.0) -> KinesisStreamWriter:
        """A writer with its own boto3 client (region and credentials from the environment)."""
        import boto3

        return cls(boto3.client("kinesis", config=CLIENT_CONFIG), stream_name, Backoff(budget_seconds=budget_seconds))

    def put(self, entries: Sequence[StreamEntry]) -> None:
        """Put all entries (in order, batched), retrying failed ones within the time budget.

        Raises:
            PublishError: entries still failing when the budget is spent, or a non-retryable error
                (missing stream, access denied, invalid request).
        """
        for batch in batches(entries):
            self._put_batch(batch)

    def _put_batch(self, batch: list[StreamEntry]) -> None:
        pending = batch
        delays = self._backoff.delays()
        attempt = 0
        while True:
            attempt += 1
            try:
                pending, last_error = self._call(pending)
            except ClientError as e:
                code = error_code(e)
                if code not in RETRYABLE_CODES:
                    raise PublishError(f"Kinesis PutRecords on {self.stream_name} failed: {code}", len(pending)) from e
                last_error = code
            except BotoCoreError as e:  # connection errors, timeouts (after botocore's own retries)
                last_error = type(e).__name__
            if not pending:
                return
            delay = next(delays, None)
            if delay is None:
                raise PublishError(
                    f"{len(pending)} of {len(batch)} entries not accepted by Kinesis stream {self.stream_name} "
                    f"after {attempt} attempts ({last_error}); retry the request later",
                    len(pending),
                )
            log.warning(
                "kinesis put: %d entries failed (%s), retry %d in %.3fs", len(pending), last_error, attempt, delay
            )
            self._backoff.sleep(delay)

    def _call(self, pending: list[StreamEntry]) -> tuple[list[StreamEntry], str]:
        resp = self._client.put_records(
            StreamName=self.stream_name,
            Records=[{"Data": e.data, "PartitionKey": e.partition_key} for e in pending],
        )
        if not resp.get("FailedRecordCount"):
            return [], ""
        failed: list[StreamEntry] = []
        codes: list[str] = []
        for entry, result in zip(pending, resp["Records"], strict=True):
            code = result.get("ErrorCode")
            if code:
                if code not in RETRYABLE_CODES:
                    raise PublishError(
                        f"Kinesis refused an entry on {self.stream_name}: {code} {result.get('ErrorMessage', '')}",
                        len(pending),
                    )
                failed.append(entry)
                codes.append(code)
        return failed, codes[0] if codes else ""
