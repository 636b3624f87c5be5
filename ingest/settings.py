"""Runtime configuration of the ingest Lambdas, read once at cold start from environment variables.

The variable *names* are the constants below: ``ingest/infra.py`` imports them to set the values,
:meth:`Settings.from_env` reads them.  Local mode sets the same variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

READS_STREAM_NAME = "READS_STREAM_NAME"
"""Kinesis stream (cloud) receiving every read and frame summary."""
BOX_OFFICE_QUEUE_URL = "BOX_OFFICE_QUEUE_URL"
"""SQS FIFO queue URL (cloud) of box-office deliveries."""
CAMERA_REGISTRY = "CAMERA_REGISTRY"
"""Camera registry as JSON (see ingest.cameras), or ``file://PATH`` to a registry file."""
KINESIS_AGGREGATION = "KINESIS_AGGREGATION"
"""``true`` (default): KPL-aggregate records per partition key; ``false``: one JSON record per entry."""
MAX_CLOCK_SKEW_SECONDS = "MAX_CLOCK_SKEW_SECONDS"
"""How far ``captured_at`` may be *behind* the server clock before the frame is refused (422).  Ahead of
it, the contract's fixed ``stream.schema.MAX_CAPTURE_AHEAD`` (10 minutes) applies."""
DEDUP_WINDOW_SECONDS = "DEDUP_WINDOW_SECONDS"
"""Width of the time bucket in the box-office de-duplication id."""
PUBLISH_BUDGET_SECONDS = "PUBLISH_BUDGET_SECONDS"
"""Time budget for retrying failed Kinesis/SQS entries before the request fails with 503."""
BOX_OFFICE_URL = "BOX_OFFICE_URL"
"""Forwarder: box-office control server endpoint (empty = not configured: outcomes are recorded)."""
BOX_OFFICE_SECRET_ARN = "BOX_OFFICE_SECRET_ARN"
"""Forwarder: Secrets Manager secret holding the box-office bearer token (cloud)."""
BOX_OFFICE_TOKEN = "BOX_OFFICE_TOKEN"
"""Forwarder: bearer token given directly (local mode only; the cloud uses the secret)."""
BOX_OFFICE_TIMEOUT_SECONDS = "BOX_OFFICE_TIMEOUT_SECONDS"
"""Forwarder: HTTP timeout per box-office call."""

LOGGER_SAMPLE_RATE = "POWERTOOLS_LOGGER_SAMPLE_RATE"
"""Powertools: share of invocations logged at DEBUG -- for the decoder, the per-request summary of clean
uploads (uploads with a rejected frame are always logged at INFO)."""
DECODER_LOG_SAMPLE_RATE = "0.01"
"""Value the infra sets for :data:`LOGGER_SAMPLE_RATE` on the decoder: 1 request in 100 logs its summary."""

METRICS_NAMESPACE = "MonuvQR"
"""CloudWatch namespace of the EMF metrics of both ingest Lambdas (alarms in the infra use it)."""


@dataclass(frozen=True)
class LocalContext:
    """A minimal Lambda context for callers outside Lambda (local server, tests, benchmark)."""

    function_name: str = "monuv-qr-local"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:monuv-qr-local"
    aws_request_id: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    reads_stream_name: str = ""
    box_office_queue_url: str = ""
    camera_registry: str = ""
    kinesis_aggregation: bool = True
    max_clock_skew_seconds: float = 24 * 3600.0
    dedup_window_seconds: int = 300
    publish_budget_seconds: float = 5.0
    box_office_url: str = ""
    box_office_secret_arn: str = ""
    box_office_token: str = field(default="", repr=False)
    box_office_timeout_seconds: float = 3.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``env`` (default ``os.environ``).

        Raises:
            ValueError: a numeric variable does not parse; the message names it.
        """
        env = os.environ if env is None else env
        d = cls()

        def num(name: str, default: float, cast=float):
            raw = env.get(name, "")
            if raw == "":
                return default
            try:
                return cast(raw)
            except ValueError:
                raise ValueError(f"environment variable {name}={raw!r} is not a number") from None

        return cls(
            reads_stream_name=env.get(READS_STREAM_NAME, ""),
            box_office_queue_url=env.get(BOX_OFFICE_QUEUE_URL, ""),
            camera_registry=env.get(CAMERA_REGISTRY, ""),
            kinesis_aggregation=_bool(env.get(KINESIS_AGGREGATION, "true")),
            max_clock_skew_seconds=num(MAX_CLOCK_SKEW_SECONDS, d.max_clock_skew_seconds),
            dedup_window_seconds=num(DEDUP_WINDOW_SECONDS, d.dedup_window_seconds, int),
            publish_budget_seconds=num(PUBLISH_BUDGET_SECONDS, d.publish_budget_seconds),
            box_office_url=env.get(BOX_OFFICE_URL, ""),
            box_office_secret_arn=env.get(BOX_OFFICE_SECRET_ARN, ""),
            box_office_token=env.get(BOX_OFFICE_TOKEN, ""),
            box_office_timeout_seconds=num(BOX_OFFICE_TIMEOUT_SECONDS, d.box_office_timeout_seconds),
        )
