"""``python -m deploy.plan``: print the resource graph ``pulumi up`` would create, without AWS or the Pulumi CLI.

Runs the real program (``__main__.py``) under Pulumi's mocks with a stack's config file
(``Pulumi.<stack>.yaml``) and prints every component and resource as a tree, with the settings a reviewer
checks (encryption, IAM actions, alarm targets, Lambda env names, Glue arguments).  Encrypted
(``secure:``) values cannot be read here; they are replaced by a placeholder.  Override any key with
``--set key=value`` (e.g. ``--set cameras=my-cameras.json``).  Exit status 2 on invalid config.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from deploy.config import KEYS, PROJECT, ConfigError
from deploy.mocks import REPO_ROOT, ProgramRun, Recorded, run_program

SECRET_PLACEHOLDER = "secret-placeholder"
_SHOWN = {
    "aws:lambda/function:Function": ("runtime", "handler", "memorySize", "timeout", "reservedConcurrentExecutions"),
    "aws:kinesis/stream:Stream": ("encryptionType", "retentionPeriod", "streamModeDetails", "shardCount"),
    "aws:sqs/queue:Queue": ("name", "kmsMasterKeyId", "visibilityTimeoutSeconds", "redrivePolicy"),
    "aws:glue/job:Job": ("glueVersion", "workerType", "numberOfWorkers", "command"),
    "aws:glue/trigger:Trigger": ("type", "schedule", "startOnCreation"),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("alarmDescription", "threshold", "alarmActions"),
    "aws:apigateway/apiKey:ApiKey": ("description", "enabled"),
    "aws:apigateway/usagePlan:UsagePlan": ("throttleSettings", "quotaSettings"),
    "aws:athena/workgroup:Workgroup": ("name",),
    "aws:lambda/eventSourceMapping:EventSourceMapping": ("eventSourceArn", "functionResponseTypes"),
}


def stack_config(stack: str, overrides: Sequence[str] = (), root: Path = REPO_ROOT) -> tuple[dict[str, str], list[str]]:
    """Config of ``Pulumi.<stack>.yaml`` as fully-qualified string values, plus the secret keys.

    Raises:
        FileNotFoundError: no such stack file.
        ValueError: an override is not ``key=value``.
    """
    path = root / f"Pulumi.{stack}.yaml"
    doc = yaml.safe_load(path.read_text("utf-8")) or {}
    config: dict[str, str] = {}
    secrets: list[str] = []
    for key, value in (doc.get("config") or {}).items():
        if isinstance(value, dict) and "secure" in value:
            config[key] = SECRET_PLACEHOLDER
            secrets.append(key)
        else:
            config[key] = value if isinstance(value, str) else json.dumps(value)
    for key in KEYS:  # a plan needs no secret's value: stand in for unset ones
        qualified = f"{PROJECT}:{key.name}"
        if key.secret and qualified not in config:
            config[qualified] = SECRET_PLACEHOLDER
            secrets.append(qualified)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {item!r}")
        config[key if ":" in key else f"{PROJECT}:{key}"] = value
    return config, secrets


def _summary(r: Recorded) -> str:
    fields = _SHOWN.get(r.type, ())
    parts = []
    for f in fields:
        if f in r.inputs and r.inputs[f] is not None:
            parts.append(f"{f}={json.dumps(r.inputs[f], default=str, sort_keys=True)}")
    if r.type == "aws:lambda/function:Function":
        env = ((r.inputs.get("environment") or {}).get("variables") or {}).keys()
        parts.append("env=" + ",".join(sorted(env)))
    if r.type == "aws:iam/rolePolicy:RolePolicy":
        doc = json.loads(r.inputs.get("policy") or "{}")
        actions = sorted({a for s in doc.get("Statement", []) for a in _list(s.get("Action"))})
        parts.append("actions=" + ",".join(actions))
    return "  ".join(parts)


def _list(value: Any) -> list:
    return value if isinstance(value, list) else [value] if value else []


def render(run: ProgramRun) -> str:
    """The resource tree (children indented under their component) and a count per type."""
    children: dict[str, list[Recorded]] = defaultdict(list)
    urns = {r.urn for r in run.resources}
    for r in run.resources:
        children[r.parent if r.parent in urns else ""].append(r)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for r in sorted(children.get(parent, []), key=lambda x: (x.custom, x.type, x.name)):
            detail = _summary(r)
            lines.append(f"{'  ' * depth}{r.type}  {r.name}" + (f"  [{detail}]" if detail else ""))
            walk(r.urn, depth + 1)

    walk("", 0)
    counts = Counter(r.type for r in run.resources if r.custom)
    lines.append("")
    lines.append(f"{sum(counts.values())} resources in {len(run.resources) - sum(counts.values())} components:")
    lines += [f"  {n:3d}  {t}" for t, n in sorted(counts.items())]
    lines.append("")
    lines.append("outputs:")
    lines += [f"  {k} = {json.dumps(v, sort_keys=True)}" for k, v in sorted(run.outputs.items())]
    return "\n".join(lines)


def _example_files(directory: Path) -> list[str]:
    """Write an example camera registry and a placeholder jar under ``directory``; the matching --set items."""
    from ingest.cameras import Registry

    registry = Registry()
    registry.add("rex-1-door", "REX", "1", "America/Sao_Paulo")
    registry.add("rex-2-door", "REX", "2", "America/Sao_Paulo")
    registry.save(directory / "cameras.json")
    jar = directory / "spark-streaming-sql-kinesis-connector_2.12-1.4.0.jar"
    jar.write_bytes(b"")
    return [f"cameras={directory / 'cameras.json'}", f"kinesisConnectorJar={jar}"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="prod", help="stack whose Pulumi.<stack>.yaml to use (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument(
        "--example",
        action="store_true",
        help="stand in for the files a real deployment brings: a two-camera registry and an empty connector jar "
        "(so a fresh checkout can be reviewed)",
    )
    args = parser.parse_args(argv)
    if args.example:
        args.set = [*_example_files(Path(tempfile.mkdtemp(prefix="monuv-plan-"))), *args.set]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config, secrets = stack_config(args.stack, args.set)
    except (OSError, ValueError) as e:
        print(f"deploy.plan: {e}", file=sys.stderr)
        return 2
    print(f"planning stack {args.stack!r} under Pulumi mocks (no AWS calls)...", file=sys.stderr)
    try:
        run = run_program(config, stack=args.stack, secret_keys=tuple(secrets))
    except ConfigError as e:
        print(f"deploy.plan: {e}", file=sys.stderr)
        return 2
    print(render(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
