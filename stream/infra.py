"""TicketStream: the Kinesis analytics stream and the box-office SQS FIFO queue (+ DLQ), with their alarms.

* Kinesis: every read, frame summary and box-office outcome; KMS-encrypted with the stack key; retention
  from config (how long the Glue job may be down without losing data); ON_DEMAND or PROVISIONED.
* SQS FIFO ``*.fifo``: one message per read to forward; de-duplicated by the producer's
  ``MessageDeduplicationId`` (see ``stream/sqs.py``); after 5 failed receives a message moves to the DLQ
  (kept 14 days).  Visibility timeout = 6 x the forwarder timeout (AWS guidance for Lambda consumers).
* :meth:`TicketStream.subscribe` attaches the forwarder with ``ReportBatchItemFailures`` so one bad
  message does not re-deliver the whole batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from deploy.iam import deny_insecure_transport
from monitoring.infra import metric_alarm

MAX_RECEIVE_COUNT = 5
"""Deliveries before a box-office message moves to the DLQ."""
DLQ_RETENTION_SECONDS = 14 * 24 * 3600
"""Longest SQS retention: time to inspect and redrive failed deliveries."""


@dataclass
class TicketStreamArgs:
    kms_key_arn: pulumi.Input[str]
    alarm_topic_arn: pulumi.Input[str]
    stream_mode: str
    shard_count: int
    retention_hours: int
    forwarder_timeout_seconds: int
    queue_age_alarm_seconds: int
    iterator_age_alarm_seconds: int


def queue_tls_policy(queue_arn: str) -> str:
    """SQS queue policy JSON denying every request made without TLS."""
    return deny_insecure_transport("sqs:*", [queue_arn])


class TicketStream(pulumi.ComponentResource):
    """Encrypted Kinesis stream + SQS FIFO queue with DLQ, and the alarms on them."""

    stream: aws.kinesis.Stream
    queue: aws.sqs.Queue
    dlq: aws.sqs.Queue
    alarms: list[aws.cloudwatch.MetricAlarm]
    stream_name: pulumi.Output[str]
    stream_arn: pulumi.Output[str]
    queue_url: pulumi.Output[str]
    queue_arn: pulumi.Output[str]

    def __init__(self, name: str, args: TicketStreamArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("monuv:stream:TicketStream", name, None, opts)
        self._name = name
        self._args = args
        child = pulumi.ResourceOptions(parent=self)
        provisioned = args.stream_mode == "PROVISIONED"
        self.stream = aws.kinesis.Stream(
            f"{name}-reads",
            encryption_type="KMS",
            kms_key_id=args.kms_key_arn,
            retention_period=args.retention_hours,
            stream_mode_details={"stream_mode": args.stream_mode},
            shard_count=args.shard_count if provisioned else None,
            shard_level_metrics=["IncomingRecords", "WriteProvisionedThroughputExceeded"],
            opts=child,
        )
        self.dlq = aws.sqs.Queue(
            f"{name}-box-office-dlq",
            fifo_queue=True,
            name=f"{name}-box-office-dlq.fifo",
            message_retention_seconds=DLQ_RETENTION_SECONDS,
            kms_master_key_id=args.kms_key_arn,
            kms_data_key_reuse_period_seconds=3600,
            opts=child,
        )
        self.queue = aws.sqs.Queue(
            f"{name}-box-office",
            fifo_queue=True,
            name=f"{name}-box-office.fifo",
            content_based_deduplication=False,  # producers set MessageDeduplicationId (read id + time bucket)
            deduplication_scope="messageGroup",
            fifo_throughput_limit="perMessageGroupId",  # high-throughput FIFO: limits apply per camera group
            visibility_timeout_seconds=6 * args.forwarder_timeout_seconds,
            message_retention_seconds=4 * 24 * 3600,
            kms_master_key_id=args.kms_key_arn,
            kms_data_key_reuse_period_seconds=3600,
            redrive_policy=self.dlq.arn.apply(
                lambda arn: json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": MAX_RECEIVE_COUNT})
            ),
            opts=child,
        )
        aws.sqs.RedriveAllowPolicy(
            f"{name}-box-office-dlq-allow",
            queue_url=self.dlq.url,
            redrive_allow_policy=self.queue.arn.apply(
                lambda arn: json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [arn]})
            ),
            opts=child,
        )
        for label, queue in (("box-office", self.queue), ("box-office-dlq", self.dlq)):
            aws.sqs.QueuePolicy(
                f"{name}-{label}-tls-only", queue_url=queue.url, policy=queue.arn.apply(queue_tls_policy), opts=child
            )
        self.stream_name = self.stream.name
        self.stream_arn = self.stream.arn
        self.queue_url = self.queue.url
        self.queue_arn = self.queue.arn
        self.alarms = self._alarms()
        self.register_outputs(
            {"stream_name": self.stream_name, "stream_arn": self.stream_arn, "queue_url": self.queue_url}
        )

    def _alarms(self) -> list[aws.cloudwatch.MetricAlarm]:
        name, args = self._name, self._args
        common = {"parent": self, "topic_arn": args.alarm_topic_arn}
        stream_dim = {"StreamName": self.stream.name}
        return [
            metric_alarm(
                f"{name}-iterator-age",
                description="Kinesis: the Glue job lags the stream (iterator age)",
                namespace="AWS/Kinesis",
                metric_name="GetRecords.IteratorAgeMilliseconds",
                dimensions=stream_dim,
                statistic="Maximum",
                threshold=args.iterator_age_alarm_seconds * 1000,
                evaluation_periods=3,
                **common,
            ),
            metric_alarm(
                f"{name}-write-throttled",
                description="Kinesis: writes throttled (add shards or switch to ON_DEMAND)",
                namespace="AWS/Kinesis",
                metric_name="WriteProvisionedThroughputExceeded",
                dimensions=stream_dim,
                threshold=0,
                **common,
            ),
            metric_alarm(
                f"{name}-queue-age",
                description="SQS: oldest box-office message waits too long (forwarder stuck or box office down)",
                namespace="AWS/SQS",
                metric_name="ApproximateAgeOfOldestMessage",
                dimensions={"QueueName": self.queue.name},
                statistic="Maximum",
                threshold=args.queue_age_alarm_seconds,
                **common,
            ),
            metric_alarm(
                f"{name}-dlq-not-empty",
                description="SQS: box-office deliveries failed 5 times and sit in the DLQ",
                namespace="AWS/SQS",
                metric_name="ApproximateNumberOfMessagesVisible",
                dimensions={"QueueName": self.dlq.name},
                statistic="Maximum",
                threshold=0,
                period=60,
                **common,
            ),
        ]

    def subscribe(self, name: str, function_arn: pulumi.Input[str], batch_size: int) -> aws.lambda_.EventSourceMapping:
        """Attach a Lambda to the box-office queue with partial batch responses (``ReportBatchItemFailures``)."""
        return aws.lambda_.EventSourceMapping(
            name,
            event_source_arn=self.queue.arn,
            function_name=function_arn,
            batch_size=batch_size,
            function_response_types=["ReportBatchItemFailures"],
            opts=pulumi.ResourceOptions(parent=self),
        )
