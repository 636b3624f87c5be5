"""Stack configuration: every key the program reads, its type, default and rule, validated in one place.

``Pulumi.yaml`` declares the same keys (``tests/infra/test_infra_config.py`` keeps the two in step);
:func:`parse` validates raw string values and reports *every* bad key at once, naming it and saying how
to fix it, before any resource is created.  Pure: no Pulumi import (``__main__.py`` passes the values in).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from ingest.cameras import Registry, RegistryError

PROJECT = "monuv-qr"
"""Pulumi project name (``Pulumi.yaml``) and config namespace."""

LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557)
"""Values CloudWatch Logs accepts for a log group's retention."""

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CRON = re.compile(r"^cron\((\S+\s){5}\S+\)$|^rate\(\d+ (minute|minutes|hour|hours)\)$")


class ConfigError(ValueError):
    """One or more config keys are missing or invalid; ``keys`` names them, the message says how to fix each."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.keys = [k for k, _ in problems]
        lines = [f"  {k if ':' in k else f'{PROJECT}:{k}'}: {why}" for k, why in problems]
        super().__init__(
            "invalid stack configuration:\n"
            + "\n".join(lines)
            + f"\nfix with: pulumi config set {PROJECT}:<key> <value>"
            " (add --secret for secrets)"
        )


@dataclass(frozen=True)
class Key:
    """One config key: Pulumi.yaml type, default (``None`` = required), description and extra rule."""

    name: str
    type: str  # string | integer | boolean (Pulumi.yaml types)
    default: Any
    description: str
    secret: bool = False
    check: Callable[[Any], str | None] | None = None


def _between(lo: int, hi: int) -> Callable[[int], str | None]:
    return lambda v: None if lo <= v <= hi else f"must be between {lo} and {hi}"


def _one_of(*allowed: Any) -> Callable[[Any], str | None]:
    return lambda v: None if v in allowed else f"must be one of {', '.join(map(str, allowed))}"


def _email(v: str) -> str | None:
    return None if _EMAIL.match(v) else "must be an e-mail address"


def _https_or_empty(v: str) -> str | None:
    return None if v == "" or v.startswith("https://") else "must be an https:// URL (or empty: not configured)"


def _iso_date(v: str) -> str | None:
    try:
        date.fromisoformat(v)
    except ValueError:
        return "must be a date YYYY-MM-DD"
    return None


def _schedule(v: str) -> str | None:
    return None if _CRON.match(v) else "must be an EventBridge cron(...) or rate(...) expression"


def _ia_days(v: int) -> str | None:
    return None if v == 0 or v >= 30 else "must be 0 (never) or at least 30 (S3 minimum for STANDARD_IA)"


KEYS: tuple[Key, ...] = (
    Key(
        "cameras",
        "string",
        "cameras.json",
        "Camera registry file (monuv-qr cameras add --cameras PATH), relative to the project directory",
    ),
    Key(
        "alarmEmail",
        "string",
        None,
        "E-mail address subscribed to the alarm topic (confirm the subscription mail)",
        check=_email,
    ),
    Key(
        "boxOfficeUrl",
        "string",
        "",
        "Box-office control endpoint the forwarder calls (empty: outcomes are recorded as not_configured)",
        check=_https_or_empty,
    ),
    Key(
        "boxOfficeToken",
        "string",
        "",
        "Bearer token for the box office; set with `pulumi config set --secret` (required when boxOfficeUrl is set)",
        secret=True,
    ),
    Key("boxOfficeTimeoutSeconds", "integer", 3, "HTTP timeout of one box-office call", check=_between(1, 20)),
    Key("streamMode", "string", "ON_DEMAND", "Kinesis capacity mode", check=_one_of("ON_DEMAND", "PROVISIONED")),
    Key("shardCount", "integer", 1, "Kinesis shards (PROVISIONED mode only)", check=_between(1, 500)),
    Key(
        "retentionHours",
        "integer",
        24,
        "Kinesis retention: how long the Glue job may be down without losing reads",
        check=_between(24, 8760),
    ),
    Key(
        "kinesisAggregation",
        "boolean",
        False,
        "KPL-aggregate Kinesis records (the Glue Kinesis source does not de-aggregate: keep false)",
    ),
    Key(
        "lambdaRuntime",
        "string",
        "python3.12",
        "Lambda runtime of the ingest functions (AL2023; zxing-cpp 3 needs glibc >= 2.28)",
        check=_one_of("python3.12", "python3.13"),
    ),
    Key("decoderMemoryMb", "integer", 1024, "Decoder Lambda memory (also buys CPU)", check=_between(128, 10240)),
    Key(
        "decoderTimeoutSeconds",
        "integer",
        10,
        "Decoder Lambda timeout (API Gateway gives up at 29 s)",
        check=_between(1, 28),
    ),
    Key(
        "decoderReservedConcurrency",
        "integer",
        50,
        "Decoder reserved concurrency (-1: unreserved)",
        check=lambda v: None if v == -1 or 1 <= v <= 1000 else "must be -1 or 1..1000",
    ),
    Key("forwarderMemoryMb", "integer", 256, "Forwarder Lambda memory", check=_between(128, 10240)),
    Key(
        "forwarderTimeoutSeconds",
        "integer",
        30,
        "Forwarder Lambda timeout (the queue's visibility timeout is 6x this)",
        check=_between(5, 300),
    ),
    Key(
        "forwarderReservedConcurrency",
        "integer",
        5,
        "Forwarder reserved concurrency (-1: unreserved)",
        check=lambda v: None if v == -1 or 1 <= v <= 1000 else "must be -1 or 1..1000",
    ),
    Key(
        "forwarderBatchSize",
        "integer",
        10,
        "SQS messages per forwarder invocation (FIFO maximum 10)",
        check=_between(1, 10),
    ),
    Key("apiRateLimit", "integer", 10, "Per-camera steady request rate (requests/second)", check=_between(1, 10000)),
    Key("apiBurstLimit", "integer", 20, "Per-camera burst (requests)", check=_between(1, 5000)),
    Key("apiDailyQuota", "integer", 200000, "Per-camera requests per day", check=_between(1, 100_000_000)),
    Key(
        "kinesisConnectorJar",
        "string",
        "jars/spark-streaming-sql-kinesis-connector_2.12-1.4.0.jar",
        "Kinesis connector jar the Glue job loads (--extra-jars), relative to the project directory; see docs/ops.md",
    ),
    Key(
        "glueWorkerType",
        "string",
        "G.025X",
        "Glue worker type (G.025X: 0.25 DPU, streaming only)",
        check=_one_of("G.025X", "G.1X", "G.2X"),
    ),
    Key("glueWorkers", "integer", 2, "Glue workers (driver + executors; 2 is the minimum)", check=_between(2, 100)),
    Key("glueWindowSeconds", "integer", 60, "Micro-batch window of the streaming job", check=_between(10, 900)),
    Key(
        "glueWatchdogSchedule",
        "string",
        "cron(0/10 * * * ? *)",
        "When the trigger (re)starts the job if it is not running",
        check=_schedule,
    ),
    Key(
        "logRetentionDays",
        "integer",
        30,
        "CloudWatch Logs retention of the functions and API access logs",
        check=_one_of(*LOG_RETENTION_DAYS),
    ),
    Key(
        "lakeProjectionStart",
        "string",
        "2026-01-01",
        "First date of Athena partition projection (dt range start)",
        check=_iso_date,
    ),
    Key(
        "lakeInfrequentAccessDays",
        "integer",
        90,
        "Move lake objects to STANDARD_IA after N days (0: never)",
        check=_ia_days,
    ),
    Key("quarantineExpirationDays", "integer", 30, "Delete quarantined records after N days", check=_between(1, 3650)),
    Key(
        "athenaResultsExpirationDays", "integer", 7, "Delete Athena query results after N days", check=_between(1, 365)
    ),
    Key(
        "athenaBytesScannedCutoff",
        "integer",
        1_073_741_824,
        "Athena per-query scan limit in bytes (>= 10 MB)",
        check=_between(10_485_760, 10**15),
    ),
    Key(
        "alarmDecoderP99Ms",
        "integer",
        3000,
        "Alarm when the decoder's p99 duration exceeds this (ms)",
        check=_between(100, 30000),
    ),
    Key(
        "alarmApiLatencyP99Ms",
        "integer",
        5000,
        "Alarm when API p99 latency exceeds this (ms)",
        check=_between(100, 30000),
    ),
    Key(
        "alarmApi5xxPercent", "integer", 1, "Alarm when API 5XX responses exceed this share (%)", check=_between(1, 100)
    ),
    Key(
        "alarmRejectPercent", "integer", 20, "Alarm when rejected frames exceed this share (%)", check=_between(1, 100)
    ),
    Key(
        "alarmQueueAgeSeconds",
        "integer",
        300,
        "Alarm when the oldest box-office message is older (s)",
        check=_between(60, 86400),
    ),
    Key(
        "alarmIteratorAgeSeconds",
        "integer",
        900,
        "Alarm when the Glue job lags the stream by more (s)",
        check=_between(60, 86400),
    ),
)
KEYS_BY_NAME = {k.name: k for k in KEYS}


@dataclass(frozen=True)
class StackConfig:
    """Validated configuration: ``values`` by key name (typed), the loaded camera registry, the stack name."""

    stack: str
    region: str
    values: Mapping[str, Any]
    registry: Registry
    project_dir: Path

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def path(self, key: str) -> Path:
        """A path-valued key resolved against the project directory."""
        return _resolve(self.project_dir, self.values[key])


def _convert(key: Key, raw: str) -> Any:
    if key.type == "integer":
        return int(raw)
    if key.type == "boolean":
        lowered = raw.strip().lower()
        if lowered not in ("true", "false"):
            raise ValueError
        return lowered == "true"
    return raw


def parse(raw: Mapping[str, str | None], stack: str, project_dir: Path, region: str | None) -> StackConfig:
    """Validate raw config strings (key -> value or None when unset) and load the camera registry.

    ``region`` is the ``aws:region`` provider setting.

    Raises:
        ConfigError: naming every missing or invalid key.
    """
    problems: list[tuple[str, str]] = []
    if not region:
        problems.append(("aws:region", "required: the AWS region to deploy to (pulumi config set aws:region REGION)"))
    values: dict[str, Any] = {}
    for key in KEYS:
        value = raw.get(key.name)
        if value is None or (value == "" and key.default is None):
            if key.default is None:
                problems.append((key.name, f"required ({key.description})"))
                continue
            values[key.name] = key.default
            continue
        try:
            values[key.name] = _convert(key, value)
        except ValueError:
            problems.append((key.name, f"expected {key.type}, got {value!r}"))
            continue
        why = key.check(values[key.name]) if key.check else None
        if why:
            shown = "<secret>" if key.secret else repr(value)
            problems.append((key.name, f"{why} (got {shown})"))
    if values.get("boxOfficeUrl") and not values.get("boxOfficeToken"):
        problems.append(
            ("boxOfficeToken", "required when boxOfficeUrl is set: pulumi config set --secret boxOfficeToken TOKEN")
        )
    jar = values.get("kinesisConnectorJar")
    if jar and not _resolve(project_dir, jar).is_file():
        problems.append(
            ("kinesisConnectorJar", f"file {_resolve(project_dir, jar)} not found; download it (docs/ops.md)")
        )
    registry = Registry()
    if "cameras" in values:
        try:
            registry = load_registry(project_dir, values["cameras"])
        except RegistryError as e:
            problems.append(("cameras", str(e)))
    if problems:
        raise ConfigError(problems)
    return StackConfig(stack=stack, region=region or "", values=values, registry=registry, project_dir=project_dir)


def _resolve(project_dir: Path, value: str) -> Path:
    """``value`` as a path; relative ones are relative to the project directory."""
    return Path(value) if Path(value).is_absolute() else project_dir / value


def load_registry(project_dir: Path, value: str) -> Registry:
    """The camera registry named by the ``cameras`` key (a path relative to ``project_dir``).

    Raises:
        RegistryError: the file is missing, unreadable, or holds no active camera.
    """
    path = _resolve(project_dir, value)
    if not path.is_file():
        raise RegistryError(
            f"camera registry {path} not found; create it with `monuv-qr cameras add CAMERA_ID --cinema C --room R "
            f"--tz ZONE --cameras {value}`"
        )
    registry = Registry.from_json(path.read_text("utf-8"), str(path))
    if not any(not c.revoked for c in registry):
        raise RegistryError(f"camera registry {path} has no active camera; add one before deploying")
    return registry
