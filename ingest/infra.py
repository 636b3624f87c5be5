"""IngestApi: the camera API (API Gateway REST ``POST /upload``), the decoder and forwarder Lambdas, their alarms.

* Package: one deterministic zip of manylinux wheels + ``ingest``/``stream`` (``deploy/lambda_package.py``).
  The decoder's copy also carries ``camera_registry.json``: the registry with each camera's *API Gateway*
  key id (``CAMERA_REGISTRY=file:///var/task/camera_registry.json``) -- a Lambda environment holds only
  4 KB, a chain's registry does not fit there.
* API: REST v1 (API keys and usage plans exist only there), binary media types for raw JPEG/PNG bodies,
  Lambda proxy integration, API key required, one key per registered camera (revoked cameras keep a
  *disabled* key, so its id stays in the logs' history), one usage plan with per-key throttling and a
  daily quota, JSON access logs, stage metrics and X-Ray.
* IAM: one role per function, scoped to the stream, queue, key, secret and log group it uses.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from deploy.iam import allow, kms_statement, log_statements, service_role, xray_statement
from ingest import settings as env
from ingest.cameras import Registry
from ingest.infra_alarms import dashboard_widgets, ingest_alarms
from ingest.request import RAW_MEDIA_TYPES

DECODER_HANDLER = "ingest.handler.handler"
FORWARDER_HANDLER = "ingest.forwarder.handler"
REGISTRY_FILE = "camera_registry.json"
REGISTRY_SETTING = f"file:///var/task/{REGISTRY_FILE}"
"""Where the zip-deployed function finds the registry (``/var/task`` is the Lambda task root)."""
UPLOAD_PATH_PART = "upload"
STAGE_NAME = "v1"
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "apiKeyId": "$context.identity.apiKeyId",
        "requestTime": "$context.requestTime",
        "httpMethod": "$context.httpMethod",
        "resourcePath": "$context.resourcePath",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "integrationLatency": "$context.integrationLatency",
        "latency": "$context.responseLatency",
        "error": "$context.error.message",
    },
    separators=(",", ":"),
)


def deployed_registry(registry: Registry, aws_key_ids: dict[str, str]) -> str:
    """Registry JSON for the decoder: API Gateway key ids instead of local ones, no key hashes."""
    cams = [
        {
            "camera_id": c.camera_id,
            "cinema_id": c.cinema_id,
            "room_id": c.room_id,
            "tz": c.tz,
            "key_id": aws_key_ids[c.camera_id],
            "revoked": c.revoked,
        }
        for c in registry
    ]
    return json.dumps({"cameras": cams}, indent=1, sort_keys=True) + "\n"


@dataclass
class IngestApiArgs:
    registry: Registry
    package_zip: Path
    runtime: str
    stream_name: pulumi.Input[str]
    stream_arn: pulumi.Input[str]
    queue_url: pulumi.Input[str]
    queue_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    alarm_topic_arn: pulumi.Input[str]
    region: str
    account_id: pulumi.Input[str]
    kinesis_aggregation: bool
    decoder_memory_mb: int
    decoder_timeout_seconds: int
    decoder_reserved_concurrency: int
    forwarder_memory_mb: int
    forwarder_timeout_seconds: int
    forwarder_reserved_concurrency: int
    box_office_url: str
    box_office_token: pulumi.Input[str] | None
    box_office_timeout_seconds: int
    api_rate_limit: int
    api_burst_limit: int
    api_daily_quota: int
    log_retention_days: int
    alarm_decoder_p99_ms: int
    alarm_api_latency_p99_ms: int
    alarm_api_5xx_percent: int
    alarm_reject_percent: int


class IngestApi(pulumi.ComponentResource):
    """Decoder + forwarder Lambdas behind an API-key-protected REST API, with alarms."""

    decoder: aws.lambda_.Function
    forwarder: aws.lambda_.Function
    api: aws.apigateway.RestApi
    stage: aws.apigateway.Stage
    api_keys: dict[str, aws.apigateway.ApiKey]
    alarms: list[aws.cloudwatch.MetricAlarm]
    api_url: pulumi.Output[str]
    camera_key_ids: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: IngestApiArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("monuv:ingest:IngestApi", name, None, opts)
        self._name, self._args = name, args
        self.api = aws.apigateway.RestApi(
            f"{name}-api",
            description="Monuv QR camera API: POST /upload",
            binary_media_types=list(RAW_MEDIA_TYPES),
            api_key_source="HEADER",
            endpoint_configuration={"types": "REGIONAL"},
            opts=self._child(),
        )
        self.api_keys = self._api_keys()
        key_ids = pulumi.Output.all(**{cid: k.id for cid, k in self.api_keys.items()})
        self.camera_key_ids = key_ids
        self.decoder = self._decoder(key_ids)
        self.forwarder = self._forwarder()
        self.stage = self._api()
        self.api_url = pulumi.Output.concat(self.stage.invoke_url, "/", UPLOAD_PATH_PART)
        self.alarms = ingest_alarms(
            name, self, args, decoder=self.decoder, forwarder=self.forwarder, api=self.api, stage=self.stage
        )
        self.register_outputs({"api_url": self.api_url, "camera_key_ids": self.camera_key_ids})

    def _child(self, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    # -- functions -----------------------------------------------------------------------------------
    def _log_group(self, label: str) -> aws.cloudwatch.LogGroup:
        return aws.cloudwatch.LogGroup(
            f"{self._name}-{label}-logs",
            name=f"/monuv-qr/{pulumi.get_stack()}/{label}",
            retention_in_days=self._args.log_retention_days,
            opts=self._child(),
        )

    def _function(
        self,
        label: str,
        handler: str,
        code: pulumi.Input,
        role: aws.iam.Role,
        policy: aws.iam.RolePolicy,
        logs: aws.cloudwatch.LogGroup,
        memory: int,
        timeout: int,
        reserved: int,
        variables: dict[str, pulumi.Input[str]],
        tracing: str,
    ) -> aws.lambda_.Function:
        return aws.lambda_.Function(
            f"{self._name}-{label}",
            runtime=self._args.runtime,
            handler=handler,
            code=code,
            role=role.arn,
            architectures=["x86_64"],  # the package's wheels are x86_64 manylinux
            memory_size=memory,
            timeout=timeout,
            reserved_concurrent_executions=reserved,
            environment={"variables": variables},
            tracing_config={"mode": tracing},
            logging_config={
                "log_format": "JSON",
                "log_group": logs.name,
                "application_log_level": "INFO",
                "system_log_level": "WARN",
            },
            opts=self._child(depends_on=[policy]),  # never invoked before its permissions exist
        )

    def _decoder(self, key_ids: pulumi.Output[dict[str, str]]) -> aws.lambda_.Function:
        a = self._args
        logs = self._log_group("decoder")
        role, policy = service_role(
            f"{self._name}-decoder",
            "lambda.amazonaws.com",
            [
                allow("PutReads", ["kinesis:PutRecord", "kinesis:PutRecords"], [a.stream_arn]),
                allow("SendBoxOfficeMessages", ["sqs:SendMessage"], [a.queue_arn]),
                kms_statement(a.kms_key_arn),
                *log_statements(logs.arn),
                xray_statement(),
            ],
            parent=self,
        )
        package = str(a.package_zip)
        code = key_ids.apply(
            lambda ids: pulumi.AssetArchive(
                {
                    ".": pulumi.FileArchive(package),
                    REGISTRY_FILE: pulumi.StringAsset(deployed_registry(a.registry, ids)),
                }
            )
        )
        variables = {
            env.READS_STREAM_NAME: a.stream_name,
            env.BOX_OFFICE_QUEUE_URL: a.queue_url,
            env.CAMERA_REGISTRY: REGISTRY_SETTING,
            env.KINESIS_AGGREGATION: "true" if a.kinesis_aggregation else "false",
            env.LOGGER_SAMPLE_RATE: env.DECODER_LOG_SAMPLE_RATE,
        }
        return self._function(
            "decoder",
            DECODER_HANDLER,
            code,
            role,
            policy,
            logs,
            a.decoder_memory_mb,
            a.decoder_timeout_seconds,
            a.decoder_reserved_concurrency,
            variables,
            "Active",
        )

    def _forwarder(self) -> aws.lambda_.Function:
        a = self._args
        logs = self._log_group("forwarder")
        statements = [
            allow(
                "ConsumeBoxOfficeQueue",
                ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"],
                [a.queue_arn],
            ),
            allow("PutOutcomes", ["kinesis:PutRecord", "kinesis:PutRecords"], [a.stream_arn]),
            kms_statement(a.kms_key_arn),
            *log_statements(logs.arn),
        ]
        variables: dict[str, pulumi.Input[str]] = {
            env.READS_STREAM_NAME: a.stream_name,
            env.KINESIS_AGGREGATION: "true" if a.kinesis_aggregation else "false",
            env.BOX_OFFICE_URL: a.box_office_url,
            env.BOX_OFFICE_TIMEOUT_SECONDS: str(a.box_office_timeout_seconds),
        }
        if a.box_office_url:
            secret = aws.secretsmanager.Secret(
                f"{self._name}-box-office-token",
                description="Bearer token the forwarder presents to the box office",
                kms_key_id=a.kms_key_arn,
                recovery_window_in_days=7,
                opts=self._child(),
            )
            aws.secretsmanager.SecretVersion(
                f"{self._name}-box-office-token-value",
                secret_id=secret.id,
                secret_string=a.box_office_token,
                opts=self._child(),
            )
            statements.append(allow("ReadBoxOfficeToken", ["secretsmanager:GetSecretValue"], [secret.arn]))
            variables[env.BOX_OFFICE_SECRET_ARN] = secret.arn
        role, policy = service_role(f"{self._name}-forwarder", "lambda.amazonaws.com", statements, parent=self)
        return self._function(
            "forwarder",
            FORWARDER_HANDLER,
            pulumi.FileArchive(str(a.package_zip)),
            role,
            policy,
            logs,
            a.forwarder_memory_mb,
            a.forwarder_timeout_seconds,
            a.forwarder_reserved_concurrency,
            variables,
            "PassThrough",
        )

    # -- API Gateway ---------------------------------------------------------------------------------
    def _api_keys(self) -> dict[str, aws.apigateway.ApiKey]:
        return {
            cam.camera_id: aws.apigateway.ApiKey(
                f"{self._name}-key-{cam.camera_id}",
                description=f"camera {cam.camera_id} (cinema {cam.cinema_id}, room {cam.room_id})",
                enabled=not cam.revoked,  # the value is generated by AWS; read it with get-api-key --include-value
                opts=self._child(),
            )
            for cam in self._args.registry
        }

    def _api(self) -> aws.apigateway.Stage:
        a, name = self._args, self._name
        resource = aws.apigateway.Resource(
            f"{name}-upload",
            rest_api=self.api.id,
            parent_id=self.api.root_resource_id,
            path_part=UPLOAD_PATH_PART,
            opts=self._child(),
        )
        method = aws.apigateway.Method(
            f"{name}-upload-post",
            rest_api=self.api.id,
            resource_id=resource.id,
            http_method="POST",
            authorization="NONE",
            api_key_required=True,
            opts=self._child(),
        )
        integration = aws.apigateway.Integration(
            f"{name}-upload-lambda",
            rest_api=self.api.id,
            resource_id=resource.id,
            http_method=method.http_method,
            type="AWS_PROXY",
            integration_http_method="POST",
            uri=self.decoder.invoke_arn,
            opts=self._child(),
        )
        aws.lambda_.Permission(
            f"{name}-api-invoke",
            action="lambda:InvokeFunction",
            function=self.decoder.name,
            principal="apigateway.amazonaws.com",
            source_arn=pulumi.Output.concat(self.api.execution_arn, "/*/POST/", UPLOAD_PATH_PART),
            opts=self._child(),
        )
        shape = json.dumps([UPLOAD_PATH_PART, "POST", "AWS_PROXY", True, sorted(RAW_MEDIA_TYPES)])
        deployment = aws.apigateway.Deployment(
            f"{name}-deployment",
            rest_api=self.api.id,
            triggers={"shape": hashlib.sha256(shape.encode()).hexdigest()},  # redeploy when the API shape changes
            opts=self._child(depends_on=[method, integration]),
        )
        access_logs = self._log_group("api-access")
        account = self._api_logging_account(access_logs)
        stage = aws.apigateway.Stage(
            f"{name}-stage",
            rest_api=self.api.id,
            deployment=deployment.id,
            stage_name=STAGE_NAME,
            xray_tracing_enabled=True,
            access_log_settings={"destination_arn": access_logs.arn, "format": ACCESS_LOG_FORMAT},
            opts=self._child(depends_on=[account]),
        )
        active = max(1, sum(1 for c in a.registry if not c.revoked))
        aws.apigateway.MethodSettings(
            f"{name}-stage-settings",
            rest_api=self.api.id,
            stage_name=stage.stage_name,
            method_path="*/*",
            settings={
                "metrics_enabled": True,
                "logging_level": "ERROR",
                "data_trace_enabled": False,  # would log frames and keys
                "throttling_rate_limit": min(10000, a.api_rate_limit * active),
                "throttling_burst_limit": min(5000, a.api_burst_limit * active),
            },
            opts=self._child(),
        )
        plan = aws.apigateway.UsagePlan(
            f"{name}-cameras",
            description="Per-camera throttling and daily quota",
            api_stages=[{"api_id": self.api.id, "stage": stage.stage_name}],
            throttle_settings={"rate_limit": a.api_rate_limit, "burst_limit": a.api_burst_limit},
            quota_settings={"limit": a.api_daily_quota, "period": "DAY"},
            opts=self._child(),
        )
        for camera_id, key in self.api_keys.items():
            aws.apigateway.UsagePlanKey(
                f"{name}-plan-key-{camera_id}",
                key_id=key.id,
                key_type="API_KEY",
                usage_plan_id=plan.id,
                opts=self._child(),
            )
        return stage

    def _api_logging_account(self, access_logs: aws.cloudwatch.LogGroup) -> aws.apigateway.Account:
        """The account-level role API Gateway uses to write access and execution logs (one per account+region)."""
        a = self._args
        execution_logs = pulumi.Output.concat(
            "arn:aws:logs:", a.region, ":", a.account_id, ":log-group:API-Gateway-Execution-Logs_*"
        )
        all_groups = pulumi.Output.concat("arn:aws:logs:", a.region, ":", a.account_id, ":log-group:*")
        role, _ = service_role(
            f"{self._name}-apigw-logs",
            "apigateway.amazonaws.com",
            [
                allow(
                    "WriteApiLogs",
                    ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                    [
                        execution_logs,
                        pulumi.Output.concat(execution_logs, ":*"),
                        access_logs.arn,
                        pulumi.Output.concat(access_logs.arn, ":*"),
                    ],
                ),
                # DescribeLogGroups is a list call authorised against the account's log-group ARN space.
                allow("FindLogGroups", ["logs:DescribeLogGroups"], [all_groups]),
            ],
            parent=self,
        )
        return aws.apigateway.Account(f"{self._name}-apigw-account", cloudwatch_role_arn=role.arn, opts=self._child())

    def dashboard_widgets(self) -> list[dict]:
        """Graphs of the decoder's EMF traffic metrics (no alarm of their own)."""
        return dashboard_widgets()
