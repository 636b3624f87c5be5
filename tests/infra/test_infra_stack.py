"""The real program under Pulumi mocks with the prod config: components, wiring, encryption, API, Glue, Athena."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from pulumi.runtime import rpc

from analytics import ddl
from analytics.sql import VIEWS_DIR, load_views
from deploy import outputs
from deploy.lambda_package import PackageSpec
from deploy.mocks import REPO_ROOT, ProgramRun, Recorded
from etl import settings as job_args
from ingest import settings as env
from ingest.request import RAW_MEDIA_TYPES
from stream.schema import KINDS, TABLE

from .conftest import CAMERAS, TOKEN, assert_pins_within_declared_ranges

PROD = "monuv-qr:"
SECRET_SIG, SECRET_MARK = rpc._special_sig_key, rpc._special_secret_sig
"""How Pulumi's wire format marks a secret value."""


def one(run: ProgramRun, typ: str, suffix: str) -> Recorded:
    matches = [r for r in run.of_type(typ) if r.name.endswith(suffix)]
    assert len(matches) == 1, f"expected one {typ} named *{suffix}, found {[r.name for r in matches]}"
    return matches[0]


def test_every_component_is_declared_and_owns_its_resources(stack):
    components = {r.type for r in stack.resources if not r.custom}
    for token in (
        "monuv:stream:TicketStream",
        "monuv:ingest:IngestApi",
        "monuv:etl:EtlJob",
        "monuv:analytics:Analytics",
        "monuv:monitoring:Monitoring",
        "monuv:monitoring:Dashboard",
        "monuv:deploy:StackKey",
        "monuv:deploy:SecureBucket",
    ):
        assert token in components, f"component {token} missing"

    def parent_type(r: Recorded) -> str:
        return r.parent.split("::")[2].split("$")[-1] if r.parent else ""

    orphans = [r.name for r in stack.resources if r.custom and not parent_type(r).startswith("monuv:")]
    assert not orphans, f"resources outside any component: {orphans}"


def test_stack_exports_every_documented_output(stack):
    assert set(stack.outputs) == set(outputs.ALL)
    assert stack.outputs[outputs.API_URL].endswith("/v1/upload")
    assert set(stack.outputs[outputs.CAMERA_KEY_IDS]) == {c["camera_id"] for c in CAMERAS}


# -- ingest ----------------------------------------------------------------------------------------


def test_decoder_gets_stream_queue_and_registry_from_the_stack(stack):
    decoder = one(stack, "aws:lambda/function:Function", "-decoder")
    stream = stack.of_type("aws:kinesis/stream:Stream")[0]
    queue = one(stack, "aws:sqs/queue:Queue", "-box-office")
    variables = decoder.inputs["environment"]["variables"]
    assert variables[env.READS_STREAM_NAME] == stream.state["name"]
    assert variables[env.BOX_OFFICE_QUEUE_URL] == queue.state["url"]
    assert variables[env.CAMERA_REGISTRY] == "file:///var/task/camera_registry.json"
    assert variables[env.KINESIS_AGGREGATION] == "false"
    assert float(variables[env.LOGGER_SAMPLE_RATE]) == 0.01  # clean uploads: 1 summary line in 100 requests
    assert decoder.inputs["handler"] == "ingest.handler.handler"
    assert decoder.inputs["runtime"] == "python3.12"
    assert decoder.inputs["reservedConcurrentExecutions"] == 100
    assert decoder.inputs["tracingConfig"] == {"mode": "Active"}


def test_decoder_package_carries_the_registry_with_api_gateway_key_ids(stack):
    decoder = one(stack, "aws:lambda/function:Function", "-decoder")
    assets = decoder.inputs["code"].assets
    assert Path(assets["."].path) == PackageSpec.for_runtime("python3.12").archive_path
    assert Path(assets["."].path).is_file(), "the program builds the package before declaring the function"
    deployed = json.loads(assets["camera_registry.json"].text)["cameras"]
    key_ids = stack.outputs[outputs.CAMERA_KEY_IDS]
    assert {c["camera_id"]: c["key_id"] for c in deployed} == key_ids
    assert {c["camera_id"] for c in deployed if c["revoked"]} == {"odeon-7-door"}
    assert all("key_sha256" not in c for c in deployed)


def test_handler_strings_match_the_lambda_modules():
    from ingest import forwarder, handler
    from ingest.infra import DECODER_HANDLER, FORWARDER_HANDLER
    from ingest.infra_alarms import DECODER_SERVICE

    assert DECODER_HANDLER == handler.HANDLER
    assert FORWARDER_HANDLER == forwarder.HANDLER
    assert DECODER_SERVICE == handler.SERVICE_NAME


def test_forwarder_reads_the_token_from_an_encrypted_secret(stack):
    forwarder = one(stack, "aws:lambda/function:Function", "-forwarder")
    secret = stack.of_type("aws:secretsmanager/secret:Secret")[0]
    version = stack.of_type("aws:secretsmanager/secretVersion:SecretVersion")[0]
    key = stack.of_type("aws:kms/key:Key")[0]
    variables = forwarder.inputs["environment"]["variables"]
    assert variables[env.BOX_OFFICE_SECRET_ARN] == secret.state["arn"]
    assert variables[env.BOX_OFFICE_URL].startswith("https://")
    assert env.BOX_OFFICE_TOKEN not in variables, "the token must not sit in the environment"
    value = version.inputs["secretString"]
    assert value.get(SECRET_SIG) == SECRET_MARK and value["value"] == TOKEN, "token must stay a Pulumi secret"
    assert secret.inputs["kmsKeyId"] == key.state["arn"]


def test_box_office_queue_triggers_the_forwarder_with_partial_batch_responses(stack):
    mapping = stack.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")[0]
    queue = one(stack, "aws:sqs/queue:Queue", "-box-office")
    forwarder = one(stack, "aws:lambda/function:Function", "-forwarder")
    assert mapping.inputs["eventSourceArn"] == queue.state["arn"]
    assert mapping.inputs["functionName"] == forwarder.state["arn"]
    assert mapping.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping.inputs["batchSize"] <= 10


def test_api_requires_a_key_and_proxies_binary_frames_to_the_decoder(stack):
    api = stack.of_type("aws:apigateway/restApi:RestApi")[0]
    method = stack.of_type("aws:apigateway/method:Method")[0]
    integration = stack.of_type("aws:apigateway/integration:Integration")[0]
    resource = stack.of_type("aws:apigateway/resource:Resource")[0]
    decoder = one(stack, "aws:lambda/function:Function", "-decoder")
    permission = stack.of_type("aws:lambda/permission:Permission")[0]
    assert set(RAW_MEDIA_TYPES) <= set(api.inputs["binaryMediaTypes"])
    assert resource.inputs["pathPart"] == "upload"
    assert (method.inputs["httpMethod"], method.inputs["apiKeyRequired"]) == ("POST", True)
    assert integration.inputs["type"] == "AWS_PROXY"
    assert integration.inputs["uri"] == decoder.state["invokeArn"]
    assert permission.inputs["principal"] == "apigateway.amazonaws.com"
    assert permission.inputs["sourceArn"] == api.state["executionArn"] + "/*/POST/upload"


def test_one_api_key_per_camera_in_a_throttled_usage_plan(stack, prod_config):
    keys = stack.of_type("aws:apigateway/apiKey:ApiKey")
    plan = stack.of_type("aws:apigateway/usagePlan:UsagePlan")[0]
    plan_keys = stack.of_type("aws:apigateway/usagePlanKey:UsagePlanKey")
    stage = stack.of_type("aws:apigateway/stage:Stage")[0]
    enabled = {k.name.rsplit("-key-", 1)[1]: k.inputs["enabled"] for k in keys}
    assert enabled == {c["camera_id"]: not c.get("revoked", False) for c in CAMERAS}
    assert {pk.inputs["keyId"] for pk in plan_keys} == {f"{k.name}-id" for k in keys}
    assert {pk.inputs["usagePlanId"] for pk in plan_keys} == {f"{plan.name}-id"}
    assert plan.inputs["throttleSettings"] == {
        "rateLimit": float(prod_config[PROD + "apiRateLimit"]),
        "burstLimit": float(prod_config[PROD + "apiBurstLimit"]),
    }
    assert plan.inputs["quotaSettings"] == {"limit": float(prod_config[PROD + "apiDailyQuota"]), "period": "DAY"}
    assert plan.inputs["apiStages"] == [{"apiId": stage.inputs["restApi"], "stage": stage.inputs["stageName"]}]


def test_stage_has_access_logs_metrics_and_tracing(stack):
    stage = stack.of_type("aws:apigateway/stage:Stage")[0]
    settings = stack.of_type("aws:apigateway/methodSettings:MethodSettings")[0]
    access_logs = one(stack, "aws:cloudwatch/logGroup:LogGroup", "-api-access-logs")
    account = stack.of_type("aws:apigateway/account:Account")[0]
    assert stage.inputs["accessLogSettings"]["destinationArn"] == access_logs.state["arn"]
    assert "$context.requestId" in stage.inputs["accessLogSettings"]["format"]
    assert stage.inputs["xrayTracingEnabled"] is True
    assert settings.inputs["settings"]["metricsEnabled"] is True
    assert settings.inputs["settings"]["dataTraceEnabled"] is False
    assert account.inputs["cloudwatchRoleArn"].endswith("apigw-logs-role")
    assert account.urn in stage.dependencies, "the stage must wait for the logging role"


# -- stream ----------------------------------------------------------------------------------------


def test_stream_and_queues_are_kms_encrypted_with_the_stack_key(stack, prod_config):
    key_arn = stack.of_type("aws:kms/key:Key")[0].state["arn"]
    stream = stack.of_type("aws:kinesis/stream:Stream")[0]
    assert (stream.inputs["encryptionType"], stream.inputs["kmsKeyId"]) == ("KMS", key_arn)
    assert stream.inputs["retentionPeriod"] == int(prod_config[PROD + "retentionHours"])
    assert stream.inputs["streamModeDetails"] == {"streamMode": "PROVISIONED"}
    assert stream.inputs["shardCount"] == int(prod_config[PROD + "shardCount"])
    for queue in stack.of_type("aws:sqs/queue:Queue"):
        assert queue.inputs["kmsMasterKeyId"] == key_arn, queue.name
        assert queue.inputs["fifoQueue"] is True and queue.inputs["name"].endswith(".fifo")
    assert stack.of_type("aws:sns/topic:Topic")[0].inputs["kmsMasterKeyId"] == key_arn
    assert stack.of_type("aws:kms/key:Key")[0].inputs["enableKeyRotation"] is True


def test_box_office_queue_redrives_to_its_dlq(stack, prod_config):
    queue = one(stack, "aws:sqs/queue:Queue", "-box-office")
    dlq = one(stack, "aws:sqs/queue:Queue", "-box-office-dlq")
    redrive = json.loads(queue.inputs["redrivePolicy"])
    assert redrive == {"deadLetterTargetArn": dlq.state["arn"], "maxReceiveCount": 5}
    assert queue.inputs["visibilityTimeoutSeconds"] >= 6 * 30
    allow = json.loads(stack.of_type("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy")[0].inputs["redriveAllowPolicy"])
    assert allow["sourceQueueArns"] == [queue.state["arn"]]
    policies = stack.of_type("aws:sqs/queuePolicy:QueuePolicy")
    assert {p.inputs["queueUrl"] for p in policies} == {queue.state["url"], dlq.state["url"]}
    for p in policies:
        assert json.loads(p.inputs["policy"])["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# -- buckets ---------------------------------------------------------------------------------------


def _siblings(stack: ProgramRun, bucket: Recorded, typ: str) -> list[Recorded]:
    return [r for r in stack.of_type(typ) if r.inputs.get("bucket") == f"{bucket.name}-id"]


def test_every_bucket_is_private_encrypted_and_tls_only(stack):
    key_arn = stack.of_type("aws:kms/key:Key")[0].state["arn"]
    buckets = stack.of_type("aws:s3/bucket:Bucket")
    assert len(buckets) == 3, [b.name for b in buckets]
    for b in buckets:
        (pab,) = _siblings(stack, b, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
        assert all(
            pab.inputs[k] is True
            for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        ), b.name
        (sse,) = _siblings(
            stack, b, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
        )
        default = sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
        assert (default["sseAlgorithm"], default["kmsMasterKeyId"]) == ("aws:kms", key_arn), b.name
        (own,) = _siblings(stack, b, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
        assert own.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"
        (pol,) = _siblings(stack, b, "aws:s3/bucketPolicy:BucketPolicy")
        (st,) = json.loads(pol.inputs["policy"])["Statement"]
        assert (st["Effect"], st["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})
        assert st["Resource"] == [b.state["arn"], b.state["arn"] + "/*"]
        (lc,) = _siblings(stack, b, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
        assert any("abortIncompleteMultipartUpload" in rule for rule in lc.inputs["rules"])


def test_lake_is_versioned_retained_and_tiered_results_expire(stack):
    lake = one(stack, "aws:s3/bucket:Bucket", "-lake")
    results = one(stack, "aws:s3/bucket:Bucket", "-results")
    assert _siblings(stack, lake, "aws:s3/bucketVersioning:BucketVersioning")
    assert lake.inputs.get("forceDestroy") is False
    (lake_lc,) = _siblings(stack, lake, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    rules = {r["id"]: r for r in lake_lc.inputs["rules"]}
    assert rules["lake-infrequent-access"]["transitions"][0]["storageClass"] == "STANDARD_IA"
    assert rules["expire-quarantine"]["filter"]["prefix"] == "lake/quarantine/"
    (res_lc,) = _siblings(stack, results, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    assert any(r.get("expiration", {}).get("days") == 7 for r in res_lc.inputs["rules"])


# -- glue ------------------------------------------------------------------------------------------


def test_glue_job_runs_the_uploaded_script_on_the_stream(stack, prod_config):
    job = stack.of_type("aws:glue/job:Job")[0]
    assets = one(stack, "aws:s3/bucket:Bucket", "-assets").state["bucket"]
    script = one(stack, "aws:s3/bucketObjectv2:BucketObjectv2", "-script")
    libs = one(stack, "aws:s3/bucketObjectv2:BucketObjectv2", "-libs")
    jar = one(stack, "aws:s3/bucketObjectv2:BucketObjectv2", "-connector-jar")
    stream = stack.of_type("aws:kinesis/stream:Stream")[0]
    lake = one(stack, "aws:s3/bucket:Bucket", "-lake").state["bucket"]
    assert job.inputs["command"]["name"] == "gluestreaming"
    assert job.inputs["command"]["scriptLocation"] == f"s3://{assets}/{script.inputs['key']}"
    assert Path(script.inputs["source"].path) == REPO_ROOT / "etl" / "job.py"
    args = job.inputs["defaultArguments"]
    assert {f"--{a}" for a in job_args.JOB_ARGUMENTS} <= set(args)
    assert args[f"--{job_args.STREAM_ARN}"] == stream.state["arn"]
    assert args[f"--{job_args.LAKE_PATH}"] == f"s3://{lake}/lake"
    assert args[f"--{job_args.CHECKPOINT_PATH}"].startswith(f"s3://{assets}/checkpoints/")
    assert args["--extra-py-files"] == f"s3://{assets}/{libs.inputs['key']}"
    assert args["--extra-jars"] == f"s3://{assets}/{jar.inputs['key']}"
    assert job.inputs["workerType"] == prod_config[PROD + "glueWorkerType"]
    assert job.inputs["executionProperty"] == {"maxConcurrentRuns": 1}


def test_glue_libs_zip_holds_the_job_packages_but_no_pulumi_code(stack):
    libs = one(stack, "aws:s3/bucketObjectv2:BucketObjectv2", "-libs")
    names = set(zipfile.ZipFile(libs.inputs["source"].path).namelist())
    assert {"stream/schema.py", "etl/batch.py", "etl/settings.py"} <= names
    assert not [n for n in names if n.endswith("infra.py") or "__pycache__" in n]


def test_glue_installs_a_pinned_version_of_every_third_party_module_the_job_imports(stack):
    import subprocess
    import sys
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from etl.infra import GLUE_PYTHON_MODULES, GLUE_PYTHON_PINS

    job = stack.of_type("aws:glue/job:Job")[0]
    assert job.inputs["defaultArguments"]["--additional-python-modules"] == GLUE_PYTHON_MODULES
    probe = (
        "import sys; from importlib.metadata import packages_distributions as pd; before = set(sys.modules); "
        "import etl.batch, etl.columnar, etl.transforms, etl.settings; d = pd(); "
        "print(' '.join(sorted({x for m in set(sys.modules) - before for x in d.get(m.split('.')[0], [])})))"
    )
    imported = set(
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    )
    pins = {canonicalize_name(Requirement(p).name) for p in GLUE_PYTHON_PINS}
    ours = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text("utf-8"))["project"]["name"]
    ours_or_transitive = {ours, "numpy", "protobuf", "googleapis-common-protos"}  # the others come with the pins
    assert {canonicalize_name(d) for d in imported} - ours_or_transitive <= pins, f"imported {sorted(imported)}"
    assert_pins_within_declared_ranges(GLUE_PYTHON_PINS)


def test_a_scheduled_trigger_starts_and_restarts_the_job(stack):
    job = stack.of_type("aws:glue/job:Job")[0]
    trigger = stack.of_type("aws:glue/trigger:Trigger")[0]
    assert (trigger.inputs["type"], trigger.inputs["startOnCreation"]) == ("SCHEDULED", True)
    assert trigger.inputs["actions"] == [{"jobName": job.state["name"]}]
    assert job.inputs["maxRetries"] == 0


def test_glue_failures_reach_the_alarm_topic(stack):
    job = stack.of_type("aws:glue/job:Job")[0]
    rule = stack.of_type("aws:cloudwatch/eventRule:EventRule")[0]
    target = stack.of_type("aws:cloudwatch/eventTarget:EventTarget")[0]
    topic = stack.of_type("aws:sns/topic:Topic")[0]
    pattern = json.loads(rule.inputs["eventPattern"])
    assert pattern["source"] == ["aws.glue"]
    assert pattern["detail"] == {"jobName": [job.state["name"]], "state": ["FAILED", "STOPPED", "TIMEOUT"]}
    assert (target.inputs["rule"], target.inputs["arn"]) == (rule.state["name"], topic.state["arn"])
    policy = json.loads(stack.of_type("aws:sns/topicPolicy:TopicPolicy")[0].inputs["policy"])
    assert "events.amazonaws.com" in policy["Statement"][0]["Principal"]["Service"]


# -- athena ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_lake_tables_match_the_record_contract_and_project_partitions(stack, kind):
    table = one(stack, "aws:glue/catalogTable:CatalogTable", f"-table-{TABLE[kind]}")
    lake = one(stack, "aws:s3/bucket:Bucket", "-lake").state["bucket"]
    sd = table.inputs["storageDescriptor"]
    assert [(c["name"], c["type"]) for c in sd["columns"]] == ddl.columns(kind)
    assert [(p["name"], p["type"]) for p in table.inputs["partitionKeys"]] == ddl.partition_keys()
    assert sd["location"] == f"s3://{lake}/lake/{TABLE[kind]}/"
    params = table.inputs["parameters"]
    assert params["projection.enabled"] == "true"
    assert (params["projection.dt.type"], params["projection.dt.format"]) == ("date", "yyyy-MM-dd")
    assert params["projection.dt.range"] == "2026-12-01,NOW"
    assert (params["projection.hour.range"], params["projection.hour.digits"]) == ("0,23", "2")
    assert params["storage.location.template"] == f"s3://{lake}/lake/{TABLE[kind]}/dt=${{dt}}/hour=${{hour}}/"


def test_workgroup_enforces_encrypted_results_and_a_scan_cutoff(stack):
    wg = stack.of_type("aws:athena/workgroup:Workgroup")[0]
    key_arn = stack.of_type("aws:kms/key:Key")[0].state["arn"]
    results = one(stack, "aws:s3/bucket:Bucket", "-results").state["bucket"]
    conf = wg.inputs["configuration"]
    assert conf["enforceWorkgroupConfiguration"] is True
    assert conf["bytesScannedCutoffPerQuery"] >= 10_485_760
    assert conf["resultConfiguration"]["outputLocation"] == f"s3://{results}/athena/"
    assert conf["resultConfiguration"]["encryptionConfiguration"] == {
        "encryptionOption": "SSE_KMS",
        "kmsKeyArn": key_arn,
    }


def test_views_are_created_by_the_deployment_from_every_sql_file(stack):
    invocation = stack.of_type("aws:lambda/invocation:Invocation")[0]
    runner = one(stack, "aws:lambda/function:Function", "-view-runner")
    payload = json.loads(invocation.inputs["input"])
    names = [v["name"] for v in payload["views"]]
    assert names == [v.name for v in load_views()]
    assert set(names) == {p.stem for p in VIEWS_DIR.glob("*.sql")}
    for view in payload["views"]:
        assert view["ddl"].startswith(f"CREATE OR REPLACE VIEW {view['name']} AS")
    assert payload["workgroup"] == stack.outputs[outputs.ATHENA_WORKGROUP]
    assert payload["database"] == stack.outputs[outputs.ATHENA_DATABASE]
    assert invocation.inputs["functionName"] == runner.state["name"]
    assert invocation.inputs["lifecycleScope"] == "CRUD"
    assert runner.inputs["handler"] == "view_runner.handler"
    assert set(runner.inputs["code"].assets) == {"view_runner.py"}
    tables = {t.urn for t in stack.of_type("aws:glue/catalogTable:CatalogTable")}
    assert tables <= set(invocation.dependencies), "views are created only after the tables exist"
