"""Lambda adapter of the camera API: ``POST /upload`` behind API Gateway (REST, Lambda proxy integration).

Thin by design: identify the camera from the API key id, parse the event (``ingest.request``), run
the service (``ingest.service``), serialise.  Kinesis and SQS ports are built from
:class:`~ingest.settings.Settings` on first use, so importing this module needs no AWS credentials;
local mode and tests call :func:`use` to plug in other ports and a registry, then call
:func:`handler` with API Gateway-shaped events.

Responses: 200 ``{"frames": [...]}``; errors ``{"error": {"code", "reason"}}`` with the
IngestError's status (400/403/413/415/422); 503 + ``Retry-After`` when the stream or queue fails
(safe to retry: ids are deterministic); 500 only for a bug.

Observability (Powertools): structured logs with the API Gateway request id as correlation id;
EMF metrics in namespace ``MonuvQR`` (Requests, Frames, EmptyFrames, Reads, DecodeMs, and Rejects
with a low-cardinality ``reason`` dimension = error code); X-Ray tracing (off outside Lambda, or with
``POWERTOOLS_TRACE_DISABLED=true``).  No ticket payloads or API keys are logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from ingest.cameras import Registry
from ingest.errors import IngestError
from ingest.request import api_key_id, parse_upload
from ingest.service import IngestResult, IngestService, authorize
from ingest.settings import METRICS_NAMESPACE, LocalContext, Settings
from stream.ports import MessageQueue, PublishError, StreamWriter
from stream.schema import now_utc

SERVICE_NAME = "monuv-qr-ingest"
UPLOAD_PATH = "/upload"
HEALTH_PATH = "/health"
"""Served by the local server only (see openapi/camera-api.yaml)."""
HANDLER = "ingest.handler.handler"
"""The Lambda handler string (the infra sets it on the function)."""
RETRY_AFTER_SECONDS = 5
"""``Retry-After`` of a 503 (dependency failure)."""

logger = Logger(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)
tracer = Tracer(service=SERVICE_NAME)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Wiring:
    settings: Settings
    registry: Registry
    service: IngestService
    clock: Callable[[], datetime]


_wiring: _Wiring | None = None


def use(
    stream: StreamWriter,
    queue: MessageQueue,
    registry: Registry,
    settings: Settings | None = None,
    clock: Callable[[], datetime] | None = None,
) -> None:
    """Wire the handler to these ports and registry (local mode, tests, benchmark).

    ``settings`` defaults to ``Settings.from_env()`` (aggregation, skew and dedup window are read
    from it); ``clock`` (UTC-aware ``now``) defaults to the system clock.
    """
    global _wiring
    s = settings or Settings.from_env()
    service = IngestService(stream, queue, aggregate=s.kinesis_aggregation, dedup_window_seconds=s.dedup_window_seconds)
    _wiring = _Wiring(s, registry, service, clock or now_utc)


def reset() -> None:
    """Forget the wiring: the next request builds AWS ports from the environment again."""
    global _wiring
    _wiring = None


def _wired() -> _Wiring:
    if _wiring is None:  # cold start in Lambda
        from stream.kinesis import KinesisStreamWriter
        from stream.sqs import SqsMessageQueue

        s = Settings.from_env()
        registry = Registry.from_setting(s.camera_registry)
        if not len(registry):
            logger.warning("camera registry is empty: every request will be refused (set CAMERA_REGISTRY)")
        use(
            KinesisStreamWriter.create(s.reads_stream_name, s.publish_budget_seconds),
            SqsMessageQueue.create(s.box_office_queue_url, s.publish_budget_seconds),
            registry,
            s,
        )
    assert _wiring is not None
    return _wiring


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A proxy-integration response: JSON body, headers both flat and multi-value (API Gateway merges them).

    The local server's own answers (busy, commit failure) use it too, so every answer has one shape.
    """
    flat = {"Content-Type": "application/json", **(headers or {})}
    return {
        "statusCode": status,
        "headers": flat,
        "multiValueHeaders": {k: [v] for k, v in flat.items()},
        "body": orjson.dumps(body).decode(),
        "isBase64Encoded": False,
    }


def error_body(code: str, reason: str, **extra: str) -> dict[str, Any]:
    """The JSON error document of every non-200 answer."""
    return {"error": {"code": code, "reason": reason, **extra}}


def unavailable() -> dict[str, Any]:
    """503 + ``Retry-After``: the stream or queue did not take the records (safe to retry: ids are stable)."""
    reason = "the ticket stream is temporarily unavailable; retry the same request later (it is safe to repeat)"
    return json_response(503, error_body("unavailable", reason), {"Retry-After": str(RETRY_AFTER_SECONDS)})


def _count_reject(reason: str) -> None:
    if is_metrics_disabled():  # single_metric prints even when metrics are disabled
        return
    with single_metric(
        name="Rejects",
        unit=MetricUnit.Count,
        value=1,
        namespace=METRICS_NAMESPACE,
        default_dimensions={"service": SERVICE_NAME},
    ) as m:
        m.add_dimension(name="reason", value=reason)


def _record(result: IngestResult) -> None:
    """EMF metrics of one request, and its summary log line.

    The summary is logged at INFO when a frame was rejected (camera health) and at DEBUG otherwise:
    counts live in the metrics, and a log line per frame would cost more than the decoding of it
    (set ``POWERTOOLS_LOG_LEVEL=DEBUG``, or ``POWERTOOLS_LOGGER_SAMPLE_RATE`` for a share of requests).
    """
    if not is_metrics_disabled():
        for frame in result.frames:
            metrics.add_metric(name="Frames", unit=MetricUnit.Count, value=1)
            metrics.add_metric(name="DecodeMs", unit=MetricUnit.Milliseconds, value=round(frame.decode_ms, 3))
            if frame.outcome == "no_code":
                metrics.add_metric(name="EmptyFrames", unit=MetricUnit.Count, value=1)
            elif frame.outcome == "rejected" and frame.error is not None:
                _count_reject(frame.error.code)
            if frame.codes:
                metrics.add_metric(name="Reads", unit=MetricUnit.Count, value=len(frame.codes))
    rejected = any(f.outcome == "rejected" and f.error is not None for f in result.frames)
    level = logging.INFO if rejected else logging.DEBUG
    if logger.isEnabledFor(level):
        logger.log(
            level,
            "upload processed",
            extra={
                "form": result.form,
                "frames": len(result.frames),
                "outcomes": [f.outcome for f in result.frames],
                "reads": sum(len(f.codes) for f in result.frames),
                "stream_entries": result.stream_entries,
                "queue_messages": result.queue_messages,
            },
        )


def _upload(event: dict[str, Any]) -> dict[str, Any]:
    """Authenticate, parse, decode, publish; answer with per-frame results."""
    w = _wired()
    received_at = w.clock()
    camera = authorize(w.registry, api_key_id(event))
    logger.append_keys(camera_id=camera.camera_id)
    tracer.put_annotation(key="camera_id", value=camera.camera_id)
    upload_request = parse_upload(event, received_at, w.settings.max_clock_skew_seconds)
    result = w.service.ingest(camera, upload_request, received_at)
    _record(result)
    if result.error is not None:
        e = result.error
        return json_response(e.status, error_body(e.code, e.reason, frame_id=result.frames[0].frame_id))
    return json_response(200, result.to_json())


def _route(event: dict[str, Any]) -> dict[str, Any]:
    """One route (``POST /upload``); errors become their JSON answers, never an exception."""
    method, path = event.get("httpMethod"), event.get("path")
    if path != UPLOAD_PATH or method != "POST":
        shown = f"{str(method)[:10]} {str(path)[:100]}"  # echoed, so bounded
        return json_response(404, error_body("not_found", f"no such endpoint: {shown}; POST images to {UPLOAD_PATH}"))
    try:
        return _upload(event)
    except IngestError as e:
        logger.info("upload refused", extra={"status": e.status, "code": e.code})
        _count_reject(e.code)
        return json_response(e.status, error_body(e.code, e.reason))
    except PublishError as e:
        logger.error("publish failed; answering 503", extra={"failed": e.failed, "error": str(e)})
        if not is_metrics_disabled():
            metrics.add_metric(name="PublishFailures", unit=MetricUnit.Count, value=1)
        return unavailable()
    except Exception:
        logger.exception("unexpected error")
        return json_response(500, error_body("internal_error", "unexpected server error; it has been logged"))


def _traced(fn: Callable[..., Any]) -> Callable[..., Any]:
    """X-Ray capture of the handler when tracing is on; off, it is skipped (it would cost ~0.1 ms a call)."""
    return fn if tracer.disabled else tracer.capture_lambda_handler(capture_response=False)(fn)


@metrics.log_metrics
def _metered(event: dict[str, Any], context: Any) -> dict[str, Any]:
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    return _route(event)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@_traced
def _handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if is_metrics_disabled():  # local mode, tests: no metric buffer to fill and flush (~0.05-0.1 ms a request)
        return _route(event)
    return _metered(event, context)


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point (``ingest.handler.handler``); ``context`` may be None outside Lambda.

    The response carries both ``multiValueHeaders`` (the REST API's shape) and a flat ``headers``
    copy, so callers reading either (API Gateway merges them) see e.g. ``Retry-After``.
    """
    return _handle(event, context if context is not None else LocalContext(function_name=SERVICE_NAME))
