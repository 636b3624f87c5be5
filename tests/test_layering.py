"""Layering: pure core and the Lambda's modules import no Pulumi, no Glue, no Spark; core imports no boto3."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PURE = ["stream.schema", "stream.ports", "ingest.decode", "ingest.tickets", "ingest.cameras", "ingest.errors"]
FORBIDDEN_IN_CORE = ["pulumi", "boto3", "botocore", "awsglue", "pyspark", "duckdb", "cv2"]


def _imported(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return {m.split(".")[0] for m in out.stdout.split()}


@pytest.mark.parametrize("module", PURE)
def test_pure_core_module_imports_no_cloud_sdk_or_engine(module):
    leaked = _imported(module) & set(FORBIDDEN_IN_CORE)
    assert not leaked, f"{module} pulls in {sorted(leaked)}"


def test_only_infra_modules_and_the_program_import_pulumi():
    """``infra.py`` of each package (and ``infra_*.py`` parts of it) hold its Pulumi resources."""
    offenders = []
    for path in ROOT.glob("*/*.py"):
        if path.parts[-2] in (".venv", "tests", "build", "bench") or path.name.startswith("infra"):
            continue
        if path.parts[-2] == "deploy":  # the packaging/planning helpers used by the Pulumi program
            continue
        if re.search(r"^\s*(import|from)\s+pulumi", path.read_text("utf-8"), re.M):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"pulumi imported outside infra modules: {offenders}"


def test_only_the_glue_job_imports_awsglue():
    offenders = [
        str(p.relative_to(ROOT))
        for p in ROOT.glob("*/*.py")
        if p.parts[-2] not in (".venv", "tests")
        and p.name != "job.py"
        and re.search(r"^\s*(import|from)\s+awsglue", p.read_text("utf-8"), re.M)
    ]
    assert not offenders, f"awsglue referenced outside etl/job.py: {offenders}"
