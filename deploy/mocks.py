"""Run the real Pulumi program against Pulumi's unit-test mocks and record every resource it declares.

No engine, CLI or provider plugin is involved: ``pulumi.runtime.set_mocks`` replaces the engine, the
program (``__main__.py``) runs unchanged, and :class:`RecordingMocks` keeps each registration (type,
name, inputs, parent) so tests can assert on the plan and ``python -m deploy.plan`` can print it.
Provider-computed outputs (ARNs, ids, URLs) are fabricated deterministically from the resource name.
"""

from __future__ import annotations

import runpy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from deploy.config import PROJECT

REPO_ROOT = Path(__file__).resolve().parents[1]
PROGRAM = REPO_ROOT / "__main__.py"
ACCOUNT_ID = "123456789012"


@dataclass
class Recorded:
    """One declared resource: Pulumi type token, logical name, inputs (provider property names), parent URN."""

    type: str
    name: str
    inputs: dict[str, Any]
    urn: str
    parent: str
    custom: bool
    state: dict[str, Any] = field(default_factory=dict)
    dependencies: list[str] = field(default_factory=list)
    """URNs this resource explicitly depends on (``depends_on`` and input dependencies)."""


def _arn_service(typ: str) -> str:
    return typ.split(":")[1].split("/")[0] if typ.count(":") >= 2 else "mock"


class RecordingMocks(pulumi.runtime.Mocks):
    """Mocks that fabricate provider outputs and record every registration."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.resources: list[Recorded] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        name, typ, inputs = args.name, args.typ, dict(args.inputs)
        service = _arn_service(typ)
        arn = f"arn:aws:{service}:{self.region}:{ACCOUNT_ID}:{typ.split(':')[-1].lower()}/{name}"
        state: dict[str, Any] = {"arn": arn, **inputs}
        physical = inputs.get("name") or f"{name}-phys"
        if typ == "aws:kinesis/stream:Stream":
            state["name"] = physical
            state["arn"] = f"arn:aws:kinesis:{self.region}:{ACCOUNT_ID}:stream/{physical}"
        elif typ == "aws:sqs/queue:Queue":
            state["name"] = physical
            state["url"] = f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT_ID}/{physical}"
            state["arn"] = f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:{physical}"
        elif typ == "aws:s3/bucket:Bucket":
            state["bucket"] = physical
            state["arn"] = f"arn:aws:s3:::{physical}"
        elif typ == "aws:lambda/function:Function":
            state["name"] = physical
            state["arn"] = f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{physical}"
            state["invokeArn"] = (
                f"arn:aws:apigateway:{self.region}:lambda:path/2015-03-31/functions/{state['arn']}/invocations"
            )
        elif typ == "aws:apigateway/restApi:RestApi":
            state.update(
                name=physical,
                rootResourceId="root-id",
                executionArn=f"arn:aws:execute-api:{self.region}:{ACCOUNT_ID}:{name}-id",
            )
        elif typ == "aws:apigateway/stage:Stage":
            state["invokeUrl"] = f"https://{name}-id.execute-api.{self.region}.amazonaws.com/{inputs.get('stageName')}"
        elif typ == "aws:kms/key:Key":
            state["keyId"] = f"{name}-key-id"
            state["arn"] = f"arn:aws:kms:{self.region}:{ACCOUNT_ID}:key/{name}-key-id"
        elif typ == "aws:cloudwatch/logGroup:LogGroup":
            state["arn"] = f"arn:aws:logs:{self.region}:{ACCOUNT_ID}:log-group:{physical}"
        elif typ in (
            "aws:glue/job:Job",
            "aws:athena/workgroup:Workgroup",
            "aws:sns/topic:Topic",
            "aws:cloudwatch/eventRule:EventRule",
            "aws:cloudwatch/dashboard:Dashboard",
        ):
            state.setdefault("name", physical)
            if typ == "aws:sns/topic:Topic":
                state["arn"] = f"arn:aws:sns:{self.region}:{ACCOUNT_ID}:{physical}"
            if typ == "aws:cloudwatch/dashboard:Dashboard":
                state["dashboardName"] = inputs.get("dashboardName", physical)
        elif typ == "aws:cloudwatch/metricAlarm:MetricAlarm":
            state["arn"] = f"arn:aws:cloudwatch:{self.region}:{ACCOUNT_ID}:alarm:{name}"
        self.resources.append(Recorded(typ, name, inputs, "", "", args.custom, state))  # urn/parent set after the run
        return f"{name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/mock",
                "userId": "mock",
                "id": ACCOUNT_ID,
            }
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region, "id": self.region}
        raise NotImplementedError(f"the program made an unexpected invoke {args.token}; answer it in deploy/mocks.py")


@dataclass
class ProgramRun:
    """What one mocked run declared: resources and the stack outputs (resolved values)."""

    resources: list[Recorded]
    outputs: dict[str, Any]

    def of_type(self, typ: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == typ]

    def named(self, name: str) -> Recorded:
        matches = [r for r in self.resources if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]


class RecordingMonitor(pulumi.runtime.mocks.MockMonitor):
    """MockMonitor that also remembers each resource's parent URN."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.parents: dict[tuple[str, str], tuple[str, str, list[str]]] = {}

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        self.parents[(request.type, request.name)] = (response.urn, request.parent or "", list(request.dependencies))
        return response


def run_program(
    config: Mapping[str, str],
    *,
    stack: str = "prod",
    secret_keys: tuple[str, ...] = (),
    program: Path = PROGRAM,
    mocks: RecordingMocks | None = None,
) -> ProgramRun:
    """Run ``program`` under mocks with ``config`` (keys ``monuv-qr:name`` / ``aws:region``) and record it.

    Raises:
        Whatever the program raises (e.g. ``deploy.config.ConfigError``); pass ``mocks`` to inspect what was
        declared before the error.
    """
    mocks = mocks or RecordingMocks(config.get("aws:region", "us-east-1"))
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(dict(config), secret_keys=[k for k in secret_keys if k in config])
    exports: dict[str, Any] = {}
    original_export = pulumi.export

    def capture(name: str, value: Any) -> None:
        exports[name] = value
        original_export(name, value)

    async def resolve() -> dict[str, Any]:
        return {k: await pulumi.Output.from_input(v).future() for k, v in exports.items()}

    pulumi.export = capture
    try:
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(program), run_name="__main__")))
        resolved = _sync_await(resolve())
    finally:
        pulumi.export = original_export
    for r in mocks.resources:
        r.urn, r.parent, r.dependencies = monitor.parents.get((r.type, r.name), ("", "", []))
    return ProgramRun(mocks.resources, resolved)
