"""Fixtures: the prod stack config (Pulumi.prod.yaml) with test files for its file-valued keys, and one mocked run."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deploy.config import PROJECT
from deploy.mocks import REPO_ROOT, ProgramRun, run_program


def assert_pins_within_declared_ranges(pins: Iterable[str]) -> None:
    """Every ``name==version`` pin (Lambda zip, Glue job) satisfies pyproject's range for that package, if any."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    declared = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    ranges = {canonicalize_name(r.name): r.specifier for r in declared}
    for pin in pins:
        req = Requirement(pin)
        version = next(iter(req.specifier)).version
        spec = ranges.get(canonicalize_name(req.name))
        assert spec is None or spec.contains(version), f"{pin} is outside pyproject's {req.name}{spec}"


CAMERAS = [
    {"camera_id": "rex-1-door", "cinema_id": "REX", "room_id": "1", "tz": "America/Sao_Paulo", "key_id": "ck_a1"},
    {"camera_id": "rex-2-door", "cinema_id": "REX", "room_id": "2", "tz": "America/Sao_Paulo", "key_id": "ck_a2"},
    {
        "camera_id": "odeon-7-door",
        "cinema_id": "ODEON",
        "room_id": "7",
        "tz": "America/Recife",
        "key_id": "ck_b7",
        "revoked": True,
    },
]
TOKEN = "test-box-office-token"


@pytest.fixture(scope="session")
def stack_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("stack")
    registry = d / "cameras.json"
    registry.write_text(json.dumps({"cameras": CAMERAS}), "utf-8")
    jar = d / "connector.jar"
    jar.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip: the program only uploads it
    return {"cameras": registry, "jar": jar}


@pytest.fixture(scope="session")
def prod_config(stack_files) -> dict[str, str]:
    """Pulumi.prod.yaml's values (as the CLI passes them: strings), the registry/jar pointed at test files."""
    doc = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text("utf-8"))
    config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in doc["config"].items()}
    config[f"{PROJECT}:cameras"] = str(stack_files["cameras"])
    config[f"{PROJECT}:kinesisConnectorJar"] = str(stack_files["jar"])
    config[f"{PROJECT}:boxOfficeToken"] = TOKEN
    return config


@pytest.fixture(scope="session")
def stack(prod_config) -> ProgramRun:
    """One run of the real program under mocks with the prod config."""
    return run_program(prod_config, secret_keys=(f"{PROJECT}:boxOfficeToken",))


def pytest_configure(config):
    # pulumi_aws warns about its own deprecated classes when its modules are imported; not our usage.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws.*")
