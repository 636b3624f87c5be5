"""IAM scope and alarms of the mocked prod stack: least privilege, every alarm wired to a real signal and the topic."""

from __future__ import annotations

import json

import pytest

from deploy.iam import WILDCARD_SID_PREFIX
from deploy.mocks import ProgramRun, Recorded
from ingest.handler import SERVICE_NAME
from ingest.settings import METRICS_NAMESPACE

WILDCARD_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "cloudwatch:PutMetricData"}
"""Actions AWS authorises only against "*" (no resource-level permissions)."""


def _list(value) -> list:
    return value if isinstance(value, list) else [value]


def policies(stack: ProgramRun) -> dict[str, list[dict]]:
    return {p.name: json.loads(p.inputs["policy"])["Statement"] for p in stack.of_type("aws:iam/rolePolicy:RolePolicy")}


def statement(stack: ProgramRun, policy_suffix: str, sid: str) -> dict:
    (name,) = [n for n in policies(stack) if n.endswith(policy_suffix)]
    (st,) = [s for s in policies(stack)[name] if s["Sid"] == sid]
    return st


def test_no_policy_allows_a_wildcard_action(stack):
    for name, statements in policies(stack).items():
        for st in statements:
            assert st["Effect"] == "Allow", f"{name}: identity policies only allow"
            for action in _list(st["Action"]):
                assert "*" not in action, f"{name} {st['Sid']}: wildcard action {action}"


def test_wildcard_resources_only_where_aws_requires_them(stack):
    for name, statements in policies(stack).items():
        for st in statements:
            resources = _list(st["Resource"])
            assert all(r == "*" or r.startswith("arn:aws:") for r in resources), f"{name}: {resources}"
            if "*" in resources:
                assert st["Sid"].startswith(WILDCARD_SID_PREFIX), f"{name} {st['Sid']}: '*' resource not justified"
                assert set(_list(st["Action"])) <= WILDCARD_ACTIONS, f"{name} {st['Sid']}: {st['Action']} on '*'"


def test_one_role_per_function_and_job_with_no_managed_policies(stack):
    roles = {f.inputs["role"] for f in stack.of_type("aws:lambda/function:Function")}
    roles |= {j.inputs["roleArn"] for j in stack.of_type("aws:glue/job:Job")}
    assert len(roles) == len(stack.of_type("aws:lambda/function:Function")) + len(stack.of_type("aws:glue/job:Job"))
    assert not stack.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    trust = {
        r.name: json.loads(r.inputs["assumeRolePolicy"])["Statement"][0]["Principal"]["Service"]
        for r in stack.of_type("aws:iam/role:Role")
    }
    assert trust[next(n for n in trust if n.endswith("etl-job-role"))] == "glue.amazonaws.com"
    assert trust[next(n for n in trust if n.endswith("decoder-role"))] == "lambda.amazonaws.com"


def test_decoder_may_only_write_to_its_stream_and_queue(stack):
    stream = stack.of_type("aws:kinesis/stream:Stream")[0].state["arn"]
    queue = next(q for q in stack.of_type("aws:sqs/queue:Queue") if q.name.endswith("-box-office")).state["arn"]
    key = stack.of_type("aws:kms/key:Key")[0].state["arn"]
    assert statement(stack, "decoder-policy", "PutReads")["Resource"] == [stream]
    assert statement(stack, "decoder-policy", "SendBoxOfficeMessages") == {
        "Sid": "SendBoxOfficeMessages",
        "Effect": "Allow",
        "Action": ["sqs:SendMessage"],
        "Resource": [queue],
    }
    assert statement(stack, "decoder-policy", "UseStackKey")["Resource"] == [key]
    log_group = next(g for g in stack.of_type("aws:cloudwatch/logGroup:LogGroup") if g.name.endswith("decoder-logs"))
    assert statement(stack, "decoder-policy", "WriteOwnLogs")["Resource"] == [
        log_group.state["arn"],
        log_group.state["arn"] + ":*",
    ]


def test_forwarder_may_read_only_its_queue_and_secret(stack):
    queue = next(q for q in stack.of_type("aws:sqs/queue:Queue") if q.name.endswith("-box-office")).state["arn"]
    secret = stack.of_type("aws:secretsmanager/secret:Secret")[0].state["arn"]
    consume = statement(stack, "forwarder-policy", "ConsumeBoxOfficeQueue")
    assert consume["Resource"] == [queue]
    assert "sqs:DeleteMessage" in consume["Action"]
    assert statement(stack, "forwarder-policy", "ReadBoxOfficeToken")["Resource"] == [secret]


def test_glue_job_reads_the_stream_and_writes_only_under_the_lake_prefix(stack):
    stream = stack.of_type("aws:kinesis/stream:Stream")[0].state["arn"]
    lake = next(b for b in stack.of_type("aws:s3/bucket:Bucket") if b.name.endswith("-lake")).state["arn"]
    assert statement(stack, "etl-job-policy", "ReadStream")["Resource"] == [stream]
    assert statement(stack, "etl-job-policy", "WriteLake")["Resource"] == [f"{lake}/lake/*"]
    metrics = statement(stack, "etl-job-policy", f"{WILDCARD_SID_PREFIX}Metrics")
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Glue"}}


def test_view_runner_may_only_touch_its_workgroup_and_database(stack):
    wg = stack.of_type("aws:athena/workgroup:Workgroup")[0].state["arn"]
    db = stack.of_type("aws:glue/catalogDatabase:CatalogDatabase")[0].inputs["name"]
    assert statement(stack, "view-runner-policy", "RunDdl")["Resource"] == [wg]
    resources = statement(stack, "view-runner-policy", "ManageViews")["Resource"]
    assert all(r.endswith((":catalog", f":database/{db}", f":table/{db}/*")) for r in resources)


# -- alarms ----------------------------------------------------------------------------------------


def _alarm_metrics(alarm: Recorded) -> list[tuple[str, str, dict]]:
    """(namespace, metric, dimensions) of every metric an alarm reads."""
    if alarm.inputs.get("metricName"):
        return [(alarm.inputs["namespace"], alarm.inputs["metricName"], alarm.inputs.get("dimensions") or {})]
    return [
        (q["metric"]["namespace"], q["metric"]["metricName"], q["metric"].get("dimensions") or {})
        for q in alarm.inputs["metricQueries"]
        if "metric" in q
    ]


def test_every_alarm_notifies_the_topic_on_alarm_and_recovery(stack):
    topic = stack.of_type("aws:sns/topic:Topic")[0].state["arn"]
    alarms = stack.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert alarms
    for alarm in alarms:
        assert alarm.inputs["alarmActions"] == [topic], alarm.name
        assert alarm.inputs["okActions"] == [topic], alarm.name
        assert alarm.inputs.get("alarmDescription"), alarm.name


def test_every_alarm_watches_a_resource_of_this_stack(stack):
    names = {
        "FunctionName": {f.state["name"] for f in stack.of_type("aws:lambda/function:Function")},
        "QueueName": {q.state["name"] for q in stack.of_type("aws:sqs/queue:Queue")},
        "StreamName": {s.state["name"] for s in stack.of_type("aws:kinesis/stream:Stream")},
        "ApiName": {a.state["name"] for a in stack.of_type("aws:apigateway/restApi:RestApi")},
        "Stage": {s.inputs["stageName"] for s in stack.of_type("aws:apigateway/stage:Stage")},
        "service": {SERVICE_NAME},
    }
    for alarm in stack.of_type("aws:cloudwatch/metricAlarm:MetricAlarm"):
        for namespace, metric, dims in _alarm_metrics(alarm):
            assert dims, f"{alarm.name}: {metric} without dimensions watches nothing specific"
            for dim, value in dims.items():
                if namespace == METRICS_NAMESPACE and dim == "reason":
                    continue  # EMF reject reason codes, checked below
                assert value in names[dim], f"{alarm.name}: {dim}={value} is not a resource of the stack"


REQUIRED_SIGNALS = [
    ("AWS/Lambda", "Errors", "decoder"),
    ("AWS/Lambda", "Throttles", "decoder"),
    ("AWS/Lambda", "Duration", "decoder"),
    ("AWS/Lambda", "Errors", "forwarder"),
    ("AWS/ApiGateway", "5XXError", "api"),
    ("AWS/ApiGateway", "Latency", "api"),
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "dlq"),
    ("AWS/SQS", "ApproximateAgeOfOldestMessage", "box-office"),
    ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", "reads"),
    ("AWS/Kinesis", "WriteProvisionedThroughputExceeded", "reads"),
    (METRICS_NAMESPACE, "Rejects", ""),
]


@pytest.mark.parametrize(("namespace", "metric", "target"), REQUIRED_SIGNALS)
def test_required_signal_has_an_alarm(stack, namespace, metric, target):
    watched = [
        (ns, m, " ".join(dims.values()))
        for alarm in stack.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        for ns, m, dims in _alarm_metrics(alarm)
    ]
    assert any(ns == namespace and m == metric and target in dims for ns, m, dims in watched), (namespace, metric)


def test_decoder_p99_and_reject_rate_alarms_use_the_configured_thresholds(stack, prod_config):
    alarms = {a.name.rsplit("-ingest-", 1)[-1]: a for a in stack.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert alarms["decoder-p99"].inputs["extendedStatistic"] == "p99"
    assert alarms["decoder-p99"].inputs["threshold"] == float(prod_config.get("monuv-qr:alarmDecoderP99Ms", 3000))
    rejects = alarms["decode-rejects"].inputs["metricQueries"]
    reasons = {
        q["metric"]["dimensions"]["reason"] for q in rejects if q.get("metric", {}).get("metricName") == "Rejects"
    }
    assert {"not_an_image", "truncated_image", "too_many_pixels"} <= reasons
    (expr,) = [q for q in rejects if q.get("returnData")]
    assert "requests" in expr["expression"] and all(f"r{i}" in expr["expression"] for i in range(len(reasons)))
    assert len(rejects) <= 10, "CloudWatch alarms accept at most 10 metrics"


def test_dashboard_shows_every_alarm(stack):
    body = json.loads(stack.of_type("aws:cloudwatch/dashboard:Dashboard")[0].inputs["dashboardBody"])
    shown = {arn for w in body["widgets"] for arn in w["properties"].get("annotations", {}).get("alarms", [])}
    alarms = {a.state["arn"] for a in stack.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert shown == alarms
    (status,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert set(status["properties"]["alarms"]) == alarms
