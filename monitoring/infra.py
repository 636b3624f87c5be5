"""Monitoring: the SNS alarm topic (+ e-mail subscription), the alarm helper, and the CloudWatch dashboard.

Components own their alarms (``ingest/infra.py`` the decoder's, ``stream/infra.py`` the queue's, ...) but
create them through :func:`metric_alarm`, so every alarm notifies the same topic on ALARM *and* OK and
treats missing data the same way.  The dashboard is built last from the list of all alarms: one graph per
alarm (its metric with the threshold drawn) plus an alarm-status overview, so dashboard and alarms show
the same signals by construction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws


@dataclass
class MonitoringArgs:
    kms_key_arn: pulumi.Input[str]
    account_id: pulumi.Input[str]
    alarm_email: str


def topic_policy(topic_arn: str, account_id: str) -> str:
    """SNS topic policy JSON: CloudWatch alarms and EventBridge rules of this account may publish."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AllowAlarmAndEventPublishers",
                    "Effect": "Allow",
                    "Principal": {"Service": ["cloudwatch.amazonaws.com", "events.amazonaws.com"]},
                    "Action": "sns:Publish",
                    "Resource": topic_arn,
                    "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                },
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "sns:Publish",
                    "Resource": topic_arn,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
            ],
        }
    )


class Monitoring(pulumi.ComponentResource):
    """The alarm topic (KMS-encrypted) with its publish policy and the operators' e-mail subscription."""

    topic: aws.sns.Topic
    topic_arn: pulumi.Output[str]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("monuv:monitoring:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.topic = aws.sns.Topic(f"{name}-alarms", kms_master_key_id=args.kms_key_arn, opts=child)
        self.topic_arn = self.topic.arn
        aws.sns.TopicPolicy(
            f"{name}-alarms-policy",
            arn=self.topic.arn,
            policy=pulumi.Output.all(self.topic.arn, args.account_id).apply(lambda a: topic_policy(*a)),
            opts=child,
        )
        aws.sns.TopicSubscription(
            f"{name}-alarms-email", topic=self.topic.arn, protocol="email", endpoint=args.alarm_email, opts=child
        )
        self.register_outputs({"topic_arn": self.topic_arn})


def metric_alarm(
    name: str,
    *,
    parent: pulumi.Resource,
    topic_arn: pulumi.Input[str],
    description: str,
    threshold: float,
    namespace: str | None = None,
    metric_name: str | None = None,
    dimensions: dict[str, pulumi.Input[str]] | None = None,
    statistic: str | None = "Sum",
    extended_statistic: str | None = None,
    metric_queries: Sequence[dict[str, Any]] | None = None,
    comparison: str = "GreaterThanThreshold",
    period: int = 300,
    evaluation_periods: int = 1,
    datapoints_to_alarm: int | None = None,
    treat_missing_data: str = "notBreaching",
) -> aws.cloudwatch.MetricAlarm:
    """A CloudWatch alarm that notifies ``topic_arn`` when it fires and when it recovers.

    Give either a single metric (``namespace``/``metric_name``/``dimensions`` with ``statistic`` or
    ``extended_statistic`` such as ``p99``) or ``metric_queries`` (metric math; one query returns data).
    """
    if extended_statistic:
        statistic = None
    single = (
        {}
        if metric_queries
        else {
            "namespace": namespace,
            "metric_name": metric_name,
            "dimensions": dimensions,
            "statistic": statistic,
            "extended_statistic": extended_statistic,
            "period": period,
        }
    )
    return aws.cloudwatch.MetricAlarm(
        name,
        alarm_description=description,
        comparison_operator=comparison,
        threshold=threshold,
        evaluation_periods=evaluation_periods,
        datapoints_to_alarm=datapoints_to_alarm,
        treat_missing_data=treat_missing_data,
        metric_queries=list(metric_queries) if metric_queries else None,
        alarm_actions=[topic_arn],
        ok_actions=[topic_arn],
        opts=pulumi.ResourceOptions(parent=parent),
        **single,
    )


@dataclass
class DashboardArgs:
    region: str
    alarms: list[aws.cloudwatch.MetricAlarm]
    extra_widgets: list[dict[str, Any]] = field(default_factory=list)
    """Graphs without an alarm (e.g. Glue records per batch); values may hold Outputs."""


def dashboard_body(region: str, alarm_arns: list[str], titles: list[str], extra: list[dict[str, Any]]) -> str:
    """Dashboard JSON: an alarm-status row, one graph per alarm (threshold drawn), then the extra graphs."""
    widgets: list[dict[str, Any]] = [
        {
            "type": "alarm",
            "x": 0,
            "y": 0,
            "width": 24,
            "height": 4,
            "properties": {"title": "Alarms", "alarms": sorted(alarm_arns)},
        }
    ]
    graphs = [
        {"title": title, "annotations": {"alarms": [arn]}, "view": "timeSeries", "region": region}
        for title, arn in sorted(zip(titles, alarm_arns, strict=True))
    ]
    graphs += [{**w, "region": region} for w in extra]
    for i, props in enumerate(graphs):
        widgets.append(
            {"type": "metric", "x": (i % 3) * 8, "y": 4 + (i // 3) * 6, "width": 8, "height": 6, "properties": props}
        )
    return json.dumps({"widgets": widgets}, sort_keys=True)


class Dashboard(pulumi.ComponentResource):
    """CloudWatch dashboard showing every alarm's signal."""

    dashboard: aws.cloudwatch.Dashboard
    url: pulumi.Output[str]

    def __init__(self, name: str, args: DashboardArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("monuv:monitoring:Dashboard", name, None, opts)
        arns = pulumi.Output.all(*[a.arn for a in args.alarms])
        titles = pulumi.Output.all(*[a.alarm_description for a in args.alarms])
        extra = pulumi.Output.from_input(args.extra_widgets)
        body = pulumi.Output.all(arns, titles, extra).apply(
            lambda v: dashboard_body(args.region, list(v[0]), [t or "" for t in v[1]], list(v[2]))
        )
        self.dashboard = aws.cloudwatch.Dashboard(
            name, dashboard_name=name, dashboard_body=body, opts=pulumi.ResourceOptions(parent=self)
        )
        self.url = self.dashboard.dashboard_name.apply(
            lambda n: (
                f"https://{args.region}.console.aws.amazon.com/cloudwatch/home?region={args.region}#dashboards:name={n}"
            )
        )
        self.register_outputs({"url": self.url})
