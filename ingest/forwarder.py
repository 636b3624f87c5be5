"""Lambda adapter of box-office delivery: an SQS FIFO-triggered function (``ingest.forwarder.handler``).

For each message (one valid ticket read, body = the Read's wire JSON) it POSTs the read to the
box office (``ingest.boxoffice``), publishes the answer as a ``box_office`` record on the stream, and
reports the message as done, retried or permanently failed -- per message, with Powertools' partial
batch responses (the event source mapping needs ``ReportBatchItemFailures``).  The FIFO processor
runs with ``skip_group_on_error``: a failing message holds back only the later messages of *its*
camera (message group), keeping each camera's order without blocking the others.

Permanent failures (box office answered 4xx other than 404/408/409/429, or an unreadable message)
are recorded, then raised, so SQS redelivers them until ``maxReceiveCount`` moves them to the DLQ;
the reason is in the log and in the outcome record.

Configuration (``ingest.settings``): ``BOX_OFFICE_URL``, ``BOX_OFFICE_SECRET_ARN`` (cloud) or
``BOX_OFFICE_TOKEN`` (local), ``BOX_OFFICE_TIMEOUT_SECONDS``, ``READS_STREAM_NAME``.  The token is
read from Secrets Manager on first use (cached 5 minutes) and never logged.  Local mode and tests
call :func:`use` to plug in a stream port and a box-office config.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from ingest.boxoffice import DELIVERED, PERMANENT, BoxOfficeConfig, Delivery, PostFn, deliver, post_json
from ingest.settings import METRICS_NAMESPACE, LocalContext, Settings
from stream.aggregate import pack
from stream.ports import StreamWriter
from stream.schema import Read, RecordError, from_bytes, now_utc, to_bytes

SERVICE_NAME = "monuv-qr-forwarder"
HANDLER = "ingest.forwarder.handler"
"""The Lambda handler string (the infra sets it on the function)."""
SECRET_MAX_AGE_SECONDS = 300

logger = Logger(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)
processor = SqsFifoPartialProcessor(skip_group_on_error=True)
processor.raise_on_entire_batch_failure = False  # all-failed is still a per-message answer, not a crash


class DeliveryRetry(RuntimeError):
    """The box office gave no decision (5xx, timeout, network): SQS must deliver the message again."""


class DeliveryRefused(RuntimeError):
    """The box office refused the request itself (permanent): the message ends in the DLQ."""


class PoisonMessage(ValueError):
    """The message body is not a ticket read (permanent): the message ends in the DLQ."""


@dataclass(frozen=True)
class _Wiring:
    settings: Settings
    stream: StreamWriter
    box_office: BoxOfficeConfig
    post: PostFn
    clock: Callable[[], datetime]


_wiring: _Wiring | None = None


def use(
    stream: StreamWriter,
    box_office: BoxOfficeConfig,
    settings: Settings | None = None,
    clock: Callable[[], datetime] | None = None,
    post: PostFn | None = None,
) -> None:
    """Wire the forwarder to a stream port and a box-office config (local mode, tests)."""
    global _wiring
    if box_office.url:
        box_office.url_for("x")  # fail now, not per message, on a non-http(s) URL
    _wiring = _Wiring(settings or Settings.from_env(), stream, box_office, post or post_json, clock or now_utc)


def reset() -> None:
    """Forget the wiring: the next message builds the AWS wiring from the environment again."""
    global _wiring
    _wiring = None


def box_office_token(settings: Settings) -> str:
    """The bearer token: from Secrets Manager when ``BOX_OFFICE_SECRET_ARN`` is set, else ``BOX_OFFICE_TOKEN``.

    A secret may be the token itself or JSON ``{"token": "..."}``.
    """
    if not settings.box_office_secret_arn:
        return settings.box_office_token
    from aws_lambda_powertools.utilities.parameters import get_secret

    value = get_secret(settings.box_office_secret_arn, max_age=SECRET_MAX_AGE_SECONDS)
    value = value.decode("utf-8") if isinstance(value, bytes) else str(value)
    try:
        doc = json.loads(value)
    except ValueError:
        return value.strip()
    return str(doc["token"]) if isinstance(doc, dict) and "token" in doc else value.strip()


def _wired() -> _Wiring:
    if _wiring is None:  # cold start in Lambda
        from stream.kinesis import KinesisStreamWriter

        s = Settings.from_env()
        config = BoxOfficeConfig(s.box_office_url, box_office_token(s), s.box_office_timeout_seconds)
        if not config.url:
            logger.warning("BOX_OFFICE_URL is not set: reads are recorded as not_configured")
        use(KinesisStreamWriter.create(s.reads_stream_name, s.publish_budget_seconds), config, s)
    assert _wiring is not None
    return _wiring


def parse_read(body: str | bytes) -> Read:
    """The Read carried by a message body.

    Raises:
        PoisonMessage: the body is not a valid read record.
    """
    try:
        record = from_bytes(body.encode("utf-8") if isinstance(body, str) else body)
    except RecordError as e:
        raise PoisonMessage(f"message body is not a read record: {e}") from None
    if not isinstance(record, Read):
        raise PoisonMessage(f"message body is a {record.kind} record, expected a read")
    return record


def forward(body: str | bytes) -> Delivery:
    """Deliver one message's read and publish the box office's answer (when there is one).

    Raises:
        PoisonMessage: the body is not a read.
        PublishError: the outcome record could not be published (the message must be retried).
    """
    w = _wired()
    read = parse_read(body)
    delivery = deliver(read, w.box_office, post=w.post, clock=w.clock)
    if delivery.outcome is not None:
        w.stream.put(pack([(read.camera_id, to_bytes(delivery.outcome))], w.settings.kinesis_aggregation))
        if not is_metrics_disabled():  # single_metric prints even when metrics are disabled
            with single_metric(
                name="BoxOfficeOutcomes",
                unit=MetricUnit.Count,
                value=1,
                namespace=METRICS_NAMESPACE,
                default_dimensions={"service": SERVICE_NAME},
            ) as m:
                m.add_dimension(name="outcome", value=delivery.outcome.outcome)
    return delivery


def record_handler(record: SQSRecord) -> None:
    """Process one SQS message; raising marks it failed (retried, or DLQ after maxReceiveCount)."""
    delivery = forward(record.body)
    extra = {"message_id": record.message_id, "status": delivery.http_status, "disposition": delivery.disposition}
    if delivery.disposition == DELIVERED:
        logger.info("box office answered", extra={**extra, "outcome": delivery.outcome and delivery.outcome.outcome})
        return
    if delivery.disposition == PERMANENT:
        logger.warning(
            "box office refused the delivery; message goes to the DLQ", extra={**extra, "detail": delivery.detail}
        )
        raise DeliveryRefused(f"box office refused the read (HTTP {delivery.http_status}): {delivery.detail}")
    metrics.add_metric(name="DeliveryRetries", unit=MetricUnit.Count, value=1)
    logger.warning("box office gave no decision; message will be retried", extra={**extra, "detail": delivery.detail})
    raise DeliveryRetry(f"no decision from the box office: {delivery.detail}")


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def _handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    metrics.add_metric(name="Deliveries", unit=MetricUnit.Count, value=len(event.get("Records") or []))
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point (``ingest.forwarder.handler``): returns ``{"batchItemFailures": [...]}``."""
    return _handle(event, context if context is not None else LocalContext(function_name=SERVICE_NAME))
