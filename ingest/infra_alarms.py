"""CloudWatch alarms and dashboard widgets of the camera API: decoder, forwarder and the API Gateway stage.

Thresholds come from :class:`~ingest.infra.IngestApiArgs` (Pulumi config); the decoder's own EMF
metrics (namespace :data:`ingest.settings.METRICS_NAMESPACE`) feed the reject-rate alarm and the
traffic graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi
import pulumi_aws as aws

from ingest import settings as env
from ingest.errors import BadImage
from monitoring.infra import metric_alarm

if TYPE_CHECKING:
    from ingest.infra import IngestApiArgs

DECODER_SERVICE = "monuv-qr-ingest"
"""Powertools service name of the decoder (the ``service`` dimension of its EMF metrics)."""


def decode_reject_codes() -> list[str]:
    """Error codes of undecodable images (the BadImage family): the numerator of the reject-rate alarm."""
    codes: set[str] = set()
    todo: list[type] = [BadImage]
    while todo:
        cls = todo.pop()
        codes.add(cls.code)
        todo.extend(cls.__subclasses__())
    return sorted(codes)


def ingest_alarms(
    name: str,
    parent: pulumi.Resource,
    a: IngestApiArgs,
    *,
    decoder: aws.lambda_.Function,
    forwarder: aws.lambda_.Function,
    api: aws.apigateway.RestApi,
    stage: aws.apigateway.Stage,
) -> list[aws.cloudwatch.MetricAlarm]:
    """Alarms of the camera API (children of ``parent``, notifying ``a.alarm_topic_arn``)."""
    common = {"parent": parent, "topic_arn": a.alarm_topic_arn}
    forwarder_dims = {"FunctionName": forwarder.name}
    decoder_dims = {"FunctionName": decoder.name}
    api_dims = {"ApiName": api.name, "Stage": stage.stage_name}
    reject_metrics = [
        {
            "id": f"r{i}",
            "return_data": False,
            "metric": {
                "namespace": env.METRICS_NAMESPACE,
                "metric_name": "Rejects",
                "dimensions": {"reason": code},
                "stat": "Sum",
                "period": 300,
            },
        }
        for i, code in enumerate(decode_reject_codes())
    ]
    requests = {
        "id": "requests",
        "return_data": False,
        "metric": {
            "namespace": env.METRICS_NAMESPACE,
            "metric_name": "Requests",
            "dimensions": {"service": DECODER_SERVICE},
            "stat": "Sum",
            "period": 300,
        },
    }
    rejected = "+".join(f"FILL(r{i}, 0)" for i in range(len(reject_metrics)))
    rate = {
        "id": "reject_rate",
        "return_data": True,
        "label": "decode rejects (%)",
        "expression": f"IF(requests > 0, 100 * ({rejected}) / requests, 0)",
    }
    return [
        metric_alarm(
            f"{name}-decoder-errors",
            description="Decoder Lambda: errors (unhandled exceptions)",
            namespace="AWS/Lambda",
            metric_name="Errors",
            dimensions=decoder_dims,
            threshold=0,
            **common,
        ),
        metric_alarm(
            f"{name}-decoder-throttles",
            description="Decoder Lambda: throttled (reserved concurrency)",
            namespace="AWS/Lambda",
            metric_name="Throttles",
            dimensions=decoder_dims,
            threshold=0,
            **common,
        ),
        metric_alarm(
            f"{name}-decoder-p99",
            description="Decoder Lambda: p99 duration (ms)",
            namespace="AWS/Lambda",
            metric_name="Duration",
            dimensions=decoder_dims,
            extended_statistic="p99",
            threshold=a.alarm_decoder_p99_ms,
            evaluation_periods=3,
            **common,
        ),
        metric_alarm(
            f"{name}-forwarder-errors",
            description="Forwarder Lambda: errors (box office unreachable?)",
            namespace="AWS/Lambda",
            metric_name="Errors",
            dimensions=forwarder_dims,
            threshold=0,
            **common,
        ),
        metric_alarm(
            f"{name}-api-5xx",
            description="API: 5XX response rate (fraction of requests)",
            namespace="AWS/ApiGateway",
            metric_name="5XXError",
            dimensions=api_dims,
            statistic="Average",
            threshold=a.alarm_api_5xx_percent / 100,
            evaluation_periods=2,
            **common,
        ),
        metric_alarm(
            f"{name}-api-latency",
            description="API: p99 latency (ms)",
            namespace="AWS/ApiGateway",
            metric_name="Latency",
            dimensions=api_dims,
            extended_statistic="p99",
            threshold=a.alarm_api_latency_p99_ms,
            evaluation_periods=3,
            **common,
        ),
        metric_alarm(
            f"{name}-decode-rejects",
            description="Decoder: rejected images (% of requests, EMF)",
            metric_queries=[*reject_metrics, requests, rate],
            threshold=a.alarm_reject_percent,
            evaluation_periods=3,
            **common,
        ),
    ]


def dashboard_widgets() -> list[dict]:
    """Graphs of the decoder's EMF traffic metrics (no alarm of their own)."""
    series = [
        [env.METRICS_NAMESPACE, m, "service", DECODER_SERVICE] for m in ("Requests", "Frames", "Reads", "EmptyFrames")
    ]
    return [{"title": "Decoder traffic (EMF)", "metrics": series, "stat": "Sum", "period": 300, "view": "timeSeries"}]
