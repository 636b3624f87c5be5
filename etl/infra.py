"""EtlJob: the Glue *streaming* job (Kinesis -> partitioned Parquet lake), what keeps it running, its alerts.

* Assets bucket (private, KMS, TLS-only): ``scripts/`` (``etl/job.py``, content-addressed), ``libs/`` (a
  deterministic zip of the ``stream`` and ``etl`` packages for ``--extra-py-files``), ``jars/`` (the Kinesis
  connector jar, see ``etl/job.py``), ``checkpoints/`` (Spark streaming state) and ``tmp/`` (expires).
* Job: ``gluestreaming``, Glue version from ``etl.settings.GLUE_VERSION``, arguments named by ``etl.settings``,
  one concurrent run.  Creating a job does not start it: a SCHEDULED trigger with ``start_on_creation``
  starts it at deploy and re-tries every period -- while a run is active the start is refused
  (``max_concurrent_runs`` = 1), once the run has stopped or failed the next tick restarts it from its
  checkpoint.  An EventBridge rule sends FAILED/STOPPED/TIMEOUT state changes to the alarm topic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from deploy.archive import iter_tree, sha256_files, write_zip
from deploy.buckets import LifecycleRule, SecureBucket, SecureBucketArgs
from deploy.iam import WILDCARD_SID_PREFIX, allow, kms_statement, service_role
from etl import settings as job_args
from etl.settings import GLUE_VERSION, KINESIS_CONNECTOR_JAR

REPO_ROOT = Path(__file__).resolve().parents[1]
JOB_SCRIPT = REPO_ROOT / "etl" / "job.py"
LIB_PACKAGES = ("stream", "etl")
GLUE_PYTHON_PINS = (
    "aws-kinesis-agg==1.2.3",  # stream.aggregate (KPL de-aggregation)
    "six==1.17.0",  # aws-kinesis-agg imports it without declaring it
    "orjson==3.13.0",  # stream.schema's wire codec
    "pyarrow==26.0.1",  # etl.columnar's JSON reader and compute kernels (the version the tests ran)
    "pandas==2.2.3",  # pyspark insists on it for mapInArrow, although the Arrow path never calls it
)
"""Installed with pip when a run starts (``--additional-python-modules``), pinned to the versions tested
here rather than whatever Glue 5.0 ships (``tests/infra/test_infra_stack.py`` checks every third-party
module the job's code imports is pinned, and that each pin is inside pyproject's range)."""
GLUE_PYTHON_MODULES = ",".join(GLUE_PYTHON_PINS)
FAILURE_STATES = ("FAILED", "STOPPED", "TIMEOUT")


def build_libs_zip(root: Path = REPO_ROOT) -> Path:
    """Deterministic zip of the job's Python packages (``infra.py`` excluded), cached by content hash."""
    entries = []
    for pkg in LIB_PACKAGES:
        entries.extend(iter_tree(root / pkg, prefix=pkg, skip_names=("infra.py",)))
    dest = root / "build" / "glue" / f"monuv-etl-{sha256_files(entries)[:16]}.zip"
    if not dest.is_file():
        write_zip(entries, dest)
    return dest


def failure_event_pattern(job_name: str) -> str:
    """EventBridge pattern matching the job's terminal failure states."""
    return json.dumps(
        {
            "source": ["aws.glue"],
            "detail-type": ["Glue Job State Change"],
            "detail": {"jobName": [job_name], "state": list(FAILURE_STATES)},
        }
    )


@dataclass
class EtlJobArgs:
    stream_arn: pulumi.Input[str]
    lake_bucket_name: pulumi.Input[str]
    lake_bucket_arn: pulumi.Input[str]
    lake_prefix: str
    kms_key_arn: pulumi.Input[str]
    alarm_topic_arn: pulumi.Input[str]
    region: str
    account_id: pulumi.Input[str]
    connector_jar: Path
    worker_type: str
    workers: int
    window_seconds: int
    watchdog_schedule: str


class EtlJob(pulumi.ComponentResource):
    """Streaming Glue job with its assets bucket, role, watchdog trigger and failure notification."""

    assets: SecureBucket
    job: aws.glue.Job
    trigger: aws.glue.Trigger
    job_name: pulumi.Output[str]
    assets_bucket: pulumi.Output[str]

    def __init__(self, name: str, args: EtlJobArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("monuv:etl:EtlJob", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.assets = SecureBucket(
            f"{name}-assets",
            SecureBucketArgs(
                kms_key_arn=args.kms_key_arn,
                lifecycle=[LifecycleRule("expire-tmp", prefix="tmp/", expiration_days=7)],
                force_destroy=True,  # code, jars and checkpoints only: rebuilt by the next deployment
            ),
            opts=child,
        )
        bucket = self.assets.name
        script_key = f"scripts/job-{sha256_files([('job.py', JOB_SCRIPT)])[:12]}.py"
        libs = build_libs_zip()
        script = aws.s3.BucketObjectv2(
            f"{name}-script", bucket=bucket, key=script_key, source=pulumi.FileAsset(str(JOB_SCRIPT)), opts=child
        )
        libs_obj = aws.s3.BucketObjectv2(
            f"{name}-libs", bucket=bucket, key=f"libs/{libs.name}", source=pulumi.FileAsset(str(libs)), opts=child
        )
        jar = aws.s3.BucketObjectv2(
            f"{name}-connector-jar",
            bucket=bucket,
            key=f"jars/{KINESIS_CONNECTOR_JAR}",
            source=pulumi.FileAsset(str(args.connector_jar)),
            opts=child,
        )
        s3 = lambda key: pulumi.Output.concat("s3://", bucket, "/", key)  # noqa: E731
        lake_root = pulumi.Output.concat("s3://", args.lake_bucket_name, "/", args.lake_prefix)
        role, policy = service_role(f"{name}-job", "glue.amazonaws.com", self._statements(args), parent=self)
        self.job = aws.glue.Job(
            f"{name}-job",
            role_arn=role.arn,
            glue_version=GLUE_VERSION,
            worker_type=args.worker_type,
            number_of_workers=args.workers,
            command={"name": "gluestreaming", "script_location": s3(script.key), "python_version": "3"},
            execution_property={"max_concurrent_runs": 1},
            max_retries=0,  # the watchdog trigger restarts it; Glue retries would double-start
            default_arguments={
                "--job-language": "python",
                "--TempDir": s3("tmp/"),
                "--enable-metrics": "true",
                "--enable-continuous-cloudwatch-log": "true",
                "--extra-py-files": s3(libs_obj.key),
                "--extra-jars": s3(jar.key),
                "--additional-python-modules": GLUE_PYTHON_MODULES,
                f"--{job_args.STREAM_ARN}": args.stream_arn,
                f"--{job_args.LAKE_PATH}": lake_root,
                f"--{job_args.QUARANTINE_PATH}": pulumi.Output.concat(lake_root, "/quarantine"),
                f"--{job_args.CHECKPOINT_PATH}": s3("checkpoints/job/"),
                f"--{job_args.WINDOW_SECONDS}": str(args.window_seconds),
                f"--{job_args.STARTING_POSITION}": "TRIM_HORIZON",
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy, script, libs_obj, jar]),
        )
        self.job_name = self.job.name
        self.assets_bucket = bucket
        self.trigger = aws.glue.Trigger(
            f"{name}-watchdog",
            type="SCHEDULED",
            schedule=args.watchdog_schedule,
            start_on_creation=True,
            actions=[{"job_name": self.job.name}],
            description="Starts the streaming job and restarts it whenever it is not running",
            opts=child,
        )
        rule = aws.cloudwatch.EventRule(
            f"{name}-job-failed",
            description="Glue streaming job stopped, failed or timed out",
            event_pattern=self.job.name.apply(failure_event_pattern),
            opts=child,
        )
        aws.cloudwatch.EventTarget(f"{name}-job-failed-notify", rule=rule.name, arn=args.alarm_topic_arn, opts=child)
        self.failure_rule = rule
        self.register_outputs({"job_name": self.job_name, "assets_bucket": self.assets_bucket})

    def _statements(self, args: EtlJobArgs) -> list[dict]:
        assets_arn = self.assets.arn
        obj = lambda arn, prefix: pulumi.Output.concat(arn, "/", prefix, "*")  # noqa: E731
        glue_logs = pulumi.Output.concat("arn:aws:logs:", args.region, ":", args.account_id, ":log-group:/aws-glue/*")
        return [
            allow(
                "ReadStream",
                [
                    "kinesis:DescribeStream",
                    "kinesis:DescribeStreamSummary",
                    "kinesis:GetRecords",
                    "kinesis:GetShardIterator",
                    "kinesis:ListShards",
                ],
                [args.stream_arn],
            ),
            kms_statement(args.kms_key_arn),
            allow(
                "ReadCode",
                ["s3:GetObject"],
                [obj(assets_arn, "scripts/"), obj(assets_arn, "libs/"), obj(assets_arn, "jars/")],
            ),
            allow(
                "WriteState",
                ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                [obj(assets_arn, "checkpoints/"), obj(assets_arn, "tmp/")],
            ),
            allow(
                "WriteLake",
                ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                [obj(args.lake_bucket_arn, args.lake_prefix + "/")],
            ),
            allow("ListBuckets", ["s3:ListBucket", "s3:GetBucketLocation"], [assets_arn, args.lake_bucket_arn]),
            allow(
                "WriteJobLogs",
                ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                [glue_logs, pulumi.Output.concat(glue_logs, ":*")],
            ),
            # PutMetricData supports no resource-level permission; the condition pins the namespace instead.
            allow(
                f"{WILDCARD_SID_PREFIX}Metrics",
                ["cloudwatch:PutMetricData"],
                ["*"],
                Condition={"StringEquals": {"cloudwatch:namespace": "Glue"}},
            ),
        ]

    def dashboard_widgets(self) -> list[dict]:
        """Records read per micro-batch (Glue streaming metric; needs ``--enable-metrics``)."""
        series = [
            ["Glue", "glue.driver.streaming.numRecords", "JobName", self.job.name, "JobRunId", "ALL", "Type", "count"]
        ]
        return [
            {
                "title": "Glue job: records per batch",
                "metrics": series,
                "stat": "Sum",
                "period": 300,
                "view": "timeSeries",
            }
        ]
