"""Pulumi program: the Monuv QR cloud pipeline (docs/ops.md).

API Gateway -> decoder Lambda -> Kinesis + SQS FIFO -> forwarder Lambda -> box office;
Kinesis -> Glue streaming job -> partitioned Parquet lake -> Athena tables and views; alarms -> SNS.

All configuration is read and validated first (``deploy.config``); a bad key stops the program before
any resource is declared.  Components are built in dependency order; outputs are named by ``deploy.outputs``.
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_aws as aws

from analytics.infra import LAKE_PREFIX, Analytics, AnalyticsArgs
from deploy import lambda_package, outputs
from deploy.config import KEYS, PROJECT, StackConfig, parse
from deploy.keys import StackKey, StackKeyArgs
from etl.infra import EtlJob, EtlJobArgs
from ingest.infra import IngestApi, IngestApiArgs
from monitoring.infra import Dashboard, DashboardArgs, Monitoring, MonitoringArgs
from stream.infra import TicketStream, TicketStreamArgs

PROJECT_DIR = Path(__file__).resolve().parent


def read_config() -> StackConfig:
    """Every key of ``deploy.config.KEYS`` from the stack, validated (raises ConfigError naming bad keys)."""
    cfg = pulumi.Config(PROJECT)
    raw: dict[str, str | None] = {}
    for key in KEYS:
        if key.secret:
            raw[key.name] = "<secret>" if cfg.get_secret(key.name) is not None else None
        else:
            raw[key.name] = cfg.get(key.name)
    return parse(raw, pulumi.get_stack(), PROJECT_DIR, pulumi.Config("aws").get("region"))


def main() -> None:
    c = read_config()
    secret_token = pulumi.Config(PROJECT).get_secret("boxOfficeToken")
    package = lambda_package.build(lambda_package.PackageSpec.for_runtime(c["lambdaRuntime"]))
    account_id = aws.get_caller_identity_output().account_id
    prefix = f"{PROJECT}-{c.stack}"

    key = StackKey(f"{prefix}-key", StackKeyArgs(account_id=account_id, description=f"{prefix} data at rest"))
    monitoring = Monitoring(
        prefix, MonitoringArgs(kms_key_arn=key.arn, account_id=account_id, alarm_email=c["alarmEmail"])
    )
    stream = TicketStream(
        f"{prefix}-stream",
        TicketStreamArgs(
            kms_key_arn=key.arn,
            alarm_topic_arn=monitoring.topic_arn,
            stream_mode=c["streamMode"],
            shard_count=c["shardCount"],
            retention_hours=c["retentionHours"],
            forwarder_timeout_seconds=c["forwarderTimeoutSeconds"],
            queue_age_alarm_seconds=c["alarmQueueAgeSeconds"],
            iterator_age_alarm_seconds=c["alarmIteratorAgeSeconds"],
        ),
    )
    ingest = IngestApi(
        f"{prefix}-ingest",
        IngestApiArgs(
            registry=c.registry,
            package_zip=package.path,
            runtime=c["lambdaRuntime"],
            stream_name=stream.stream_name,
            stream_arn=stream.stream_arn,
            queue_url=stream.queue_url,
            queue_arn=stream.queue_arn,
            kms_key_arn=key.arn,
            alarm_topic_arn=monitoring.topic_arn,
            region=c.region,
            account_id=account_id,
            kinesis_aggregation=c["kinesisAggregation"],
            decoder_memory_mb=c["decoderMemoryMb"],
            decoder_timeout_seconds=c["decoderTimeoutSeconds"],
            decoder_reserved_concurrency=c["decoderReservedConcurrency"],
            forwarder_memory_mb=c["forwarderMemoryMb"],
            forwarder_timeout_seconds=c["forwarderTimeoutSeconds"],
            forwarder_reserved_concurrency=c["forwarderReservedConcurrency"],
            box_office_url=c["boxOfficeUrl"],
            box_office_token=secret_token,
            box_office_timeout_seconds=c["boxOfficeTimeoutSeconds"],
            api_rate_limit=c["apiRateLimit"],
            api_burst_limit=c["apiBurstLimit"],
            api_daily_quota=c["apiDailyQuota"],
            log_retention_days=c["logRetentionDays"],
            alarm_decoder_p99_ms=c["alarmDecoderP99Ms"],
            alarm_api_latency_p99_ms=c["alarmApiLatencyP99Ms"],
            alarm_api_5xx_percent=c["alarmApi5xxPercent"],
            alarm_reject_percent=c["alarmRejectPercent"],
        ),
    )
    stream.subscribe(f"{prefix}-forwarder-trigger", ingest.forwarder.arn, c["forwarderBatchSize"])
    analytics = Analytics(
        f"{prefix}-analytics",
        AnalyticsArgs(
            kms_key_arn=key.arn,
            region=c.region,
            account_id=account_id,
            runtime=c["lambdaRuntime"],
            projection_start=c["lakeProjectionStart"],
            lake_ia_days=c["lakeInfrequentAccessDays"],
            quarantine_expiration_days=c["quarantineExpirationDays"],
            results_expiration_days=c["athenaResultsExpirationDays"],
            bytes_scanned_cutoff=c["athenaBytesScannedCutoff"],
            log_retention_days=c["logRetentionDays"],
        ),
    )
    etl = EtlJob(
        f"{prefix}-etl",
        EtlJobArgs(
            stream_arn=stream.stream_arn,
            lake_bucket_name=analytics.lake.name,
            lake_bucket_arn=analytics.lake.arn,
            lake_prefix=LAKE_PREFIX,
            kms_key_arn=key.arn,
            alarm_topic_arn=monitoring.topic_arn,
            region=c.region,
            account_id=account_id,
            connector_jar=c.path("kinesisConnectorJar"),
            worker_type=c["glueWorkerType"],
            workers=c["glueWorkers"],
            window_seconds=c["glueWindowSeconds"],
            watchdog_schedule=c["glueWatchdogSchedule"],
        ),
    )
    dashboard = Dashboard(
        prefix,
        DashboardArgs(
            region=c.region,
            alarms=[*ingest.alarms, *stream.alarms],
            extra_widgets=[*ingest.dashboard_widgets(), *etl.dashboard_widgets()],
        ),
    )

    pulumi.export(outputs.API_URL, ingest.api_url)
    pulumi.export(outputs.CAMERA_KEY_IDS, ingest.camera_key_ids)
    pulumi.export(outputs.LAKE_BUCKET, analytics.lake.name)
    pulumi.export(outputs.RESULTS_BUCKET, analytics.results.name)
    pulumi.export(outputs.ASSETS_BUCKET, etl.assets_bucket)
    pulumi.export(outputs.ATHENA_WORKGROUP, analytics.workgroup_name)
    pulumi.export(outputs.ATHENA_DATABASE, analytics.database_name)
    pulumi.export(outputs.DASHBOARD_URL, dashboard.url)
    pulumi.export(outputs.ALARM_TOPIC_ARN, monitoring.topic_arn)
    pulumi.export(outputs.STREAM_NAME, stream.stream_name)
    pulumi.export(outputs.QUEUE_URL, stream.queue_url)
    pulumi.export(outputs.GLUE_JOB_NAME, etl.job_name)


if __name__ == "__main__":
    main()
