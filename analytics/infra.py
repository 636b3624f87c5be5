"""Analytics: the data lake and Athena -- lake bucket, results bucket, Glue tables, workgroup, views.

* The lake bucket belongs here (the ETL is one producer of the lake; the tables, views and their readers
  live here).  It is retained when the stack is destroyed: the data outlives the deployment.
* Tables: one Glue catalog table per record kind (reads, frames, box_office), Parquet, partition
  projection on ``dt``/``hour`` -- parameters, columns and partitions from ``analytics.ddl`` (itself from
  ``stream.schema``), so no crawler and no ``MSCK REPAIR`` are needed.
* Workgroup: enforced result location (results bucket, SSE-KMS), bytes-scanned cutoff, engine v3.
* Views: a named query would only *save* the SQL.  The deployment creates the views by invoking a small
  Lambda (``deploy/view_runner.py``) that runs each ``CREATE OR REPLACE VIEW`` from
  ``analytics/sql/views/*.sql`` through Athena, in dependency order (``analytics.sql.load_views``), via
  ``aws.lambda_.Invocation`` (CRUD scope: re-run when the SQL changes, views dropped on destroy).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from analytics import ddl
from analytics.sql import load_views
from deploy.buckets import LifecycleRule, SecureBucket, SecureBucketArgs
from deploy.iam import allow, kms_statement, log_statements, service_role
from stream.schema import KINDS, TABLE

VIEW_RUNNER = Path(__file__).resolve().parents[1] / "deploy" / "view_runner.py"
VIEW_RUNNER_HANDLER = "view_runner.handler"
LAKE_PREFIX = "lake"
"""Key prefix of the lake root in the lake bucket: ``s3://<bucket>/lake/<table>/dt=.../hour=.../``."""
RESULTS_PREFIX = "athena/"


def views_payload(database: str, workgroup: str) -> dict:
    """Invocation input of the view runner: every view's DDL, read from the SQL files now, in dependency order."""
    return {
        "database": database,
        "workgroup": workgroup,
        "views": [{"name": v.name, "ddl": v.athena_ddl()} for v in load_views()],
    }


@dataclass
class AnalyticsArgs:
    kms_key_arn: pulumi.Input[str]
    region: str
    account_id: pulumi.Input[str]
    runtime: str
    projection_start: str
    lake_ia_days: int
    quarantine_expiration_days: int
    results_expiration_days: int
    bytes_scanned_cutoff: int
    log_retention_days: int


class Analytics(pulumi.ComponentResource):
    """Lake + results buckets, Glue database/tables with partition projection, Athena workgroup and views."""

    lake: SecureBucket
    results: SecureBucket
    database: aws.glue.CatalogDatabase
    tables: dict[str, aws.glue.CatalogTable]
    workgroup: aws.athena.Workgroup
    views: aws.lambda_.Invocation
    database_name: pulumi.Output[str]
    workgroup_name: pulumi.Output[str]

    def __init__(self, name: str, args: AnalyticsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("monuv:analytics:Analytics", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.lake = SecureBucket(
            f"{name}-lake",
            SecureBucketArgs(
                kms_key_arn=args.kms_key_arn,
                lifecycle=[
                    LifecycleRule(
                        "lake-infrequent-access", prefix=f"{LAKE_PREFIX}/", infrequent_access_days=args.lake_ia_days
                    ),
                    LifecycleRule(
                        "expire-quarantine",
                        prefix=f"{LAKE_PREFIX}/quarantine/",
                        expiration_days=args.quarantine_expiration_days,
                    ),
                ],
                versioning=True,  # protects the lake against a buggy job overwriting partitions
                retain_on_delete=True,  # `pulumi destroy` leaves the data (delete the bucket by hand if wanted)
            ),
            opts=child,
        )
        self.results = SecureBucket(
            f"{name}-results",
            SecureBucketArgs(
                kms_key_arn=args.kms_key_arn,
                lifecycle=[
                    LifecycleRule("expire-results", prefix=RESULTS_PREFIX, expiration_days=args.results_expiration_days)
                ],
                force_destroy=True,  # query results are disposable
            ),
            opts=child,
        )
        stack = pulumi.get_stack().replace("-", "_").lower()
        db_name = f"monuv_qr_{stack}"
        self.database = aws.glue.CatalogDatabase(
            f"{name}-db", name=db_name, description="Monuv QR ticket lake", opts=child
        )
        lake_root = pulumi.Output.concat("s3://", self.lake.name, "/", LAKE_PREFIX)
        self.tables = {kind: self._table(name, kind, lake_root, args.projection_start) for kind in KINDS}
        self.workgroup = aws.athena.Workgroup(
            f"{name}-workgroup",
            name=f"monuv-qr-{pulumi.get_stack()}",
            force_destroy=True,  # holds query history only
            configuration={
                "enforce_workgroup_configuration": True,
                "publish_cloudwatch_metrics_enabled": True,
                "bytes_scanned_cutoff_per_query": args.bytes_scanned_cutoff,
                "engine_version": {"selected_engine_version": "Athena engine version 3"},
                "result_configuration": {
                    "output_location": pulumi.Output.concat("s3://", self.results.name, "/", RESULTS_PREFIX),
                    "encryption_configuration": {"encryption_option": "SSE_KMS", "kms_key_arn": args.kms_key_arn},
                },
            },
            opts=child,
        )
        self.database_name = self.database.name
        self.workgroup_name = self.workgroup.name
        self.views = self._views(name, args, db_name)
        self.register_outputs(
            {
                "database": self.database_name,
                "workgroup": self.workgroup_name,
                "lake_bucket": self.lake.name,
                "results_bucket": self.results.name,
            }
        )

    def _table(self, name: str, kind: str, lake_root: pulumi.Output[str], start: str) -> aws.glue.CatalogTable:
        table = TABLE[kind]
        return aws.glue.CatalogTable(
            f"{name}-table-{table}",
            name=table,
            database_name=self.database.name,
            table_type="EXTERNAL_TABLE",
            parameters=lake_root.apply(lambda root: ddl.table_parameters(root, kind, start)),
            partition_keys=[{"name": n, "type": t} for n, t in ddl.partition_keys()],
            storage_descriptor={
                "location": lake_root.apply(lambda root: ddl.table_location(root, kind)),
                "input_format": ddl.PARQUET_INPUT_FORMAT,
                "output_format": ddl.PARQUET_OUTPUT_FORMAT,
                "ser_de_info": {"serialization_library": ddl.PARQUET_SERDE},
                "columns": [{"name": n, "type": t} for n, t in ddl.columns(kind)],
            },
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _views(self, name: str, args: AnalyticsArgs, db_name: str) -> aws.lambda_.Invocation:
        logs = aws.cloudwatch.LogGroup(
            f"{name}-view-runner-logs",
            name=f"/monuv-qr/{pulumi.get_stack()}/view-runner",
            retention_in_days=args.log_retention_days,
            opts=pulumi.ResourceOptions(parent=self),
        )
        glue = pulumi.Output.concat("arn:aws:glue:", args.region, ":", args.account_id)
        role, policy = service_role(
            f"{name}-view-runner",
            "lambda.amazonaws.com",
            [
                allow("RunDdl", ["athena:StartQueryExecution", "athena:GetQueryExecution"], [self.workgroup.arn]),
                allow(
                    "ManageViews",
                    [
                        "glue:GetDatabase",
                        "glue:GetTable",
                        "glue:GetTables",
                        "glue:CreateTable",
                        "glue:UpdateTable",
                        "glue:DeleteTable",
                    ],
                    [
                        pulumi.Output.concat(glue, ":catalog"),
                        pulumi.Output.concat(glue, ":database/", db_name),
                        pulumi.Output.concat(glue, ":table/", db_name, "/*"),
                    ],
                ),
                allow(
                    "WriteResults",
                    ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                    [pulumi.Output.concat(self.results.arn, "/", RESULTS_PREFIX, "*")],
                ),
                allow("LocateBuckets", ["s3:GetBucketLocation", "s3:ListBucket"], [self.results.arn, self.lake.arn]),
                kms_statement(args.kms_key_arn),
                *log_statements(logs.arn),
            ],
            parent=self,
        )
        runner = aws.lambda_.Function(
            f"{name}-view-runner",
            runtime=args.runtime,
            handler=VIEW_RUNNER_HANDLER,
            code=pulumi.AssetArchive({"view_runner.py": pulumi.FileAsset(str(VIEW_RUNNER))}),
            role=role.arn,
            timeout=300,
            memory_size=128,
            logging_config={"log_format": "Text", "log_group": logs.name},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        payload = pulumi.Output.all(self.database.name, self.workgroup.name).apply(
            lambda v: json.dumps(views_payload(v[0], v[1]), sort_keys=True)
        )
        return aws.lambda_.Invocation(
            f"{name}-views",
            function_name=runner.name,
            input=payload,
            lifecycle_scope="CRUD",
            triggers={"sql": payload.apply(lambda p: hashlib.sha256(p.encode()).hexdigest())},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*self.tables.values(), self.workgroup, policy]),
        )
