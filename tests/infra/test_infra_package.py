"""The Lambda package: built from the repo as `pulumi up` does, under the limits, importable in a fresh interpreter.

The deployed package targets the Lambda runtime (python3.12, glibc 2.34).  This machine runs Python 3.11, so
the import check builds the *same* pins and sources for 3.11 with the same platform ceiling and imports the
handlers from that zip with nothing but the zip, the standard library and the runtime-provided boto3.
First run downloads the wheels (~20 s per Python version); later runs reuse build/lambda/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deploy import lambda_package as lp
from deploy.archive import write_zip

from .conftest import assert_pins_within_declared_ranges

pytestmark = pytest.mark.slow

FORBIDDEN = ("cv2", "numpy", "pulumi", "pulumi_aws", "duckdb", "pyarrow", "boto3", "botocore", "pyspark", "pyzbar")
RUNTIME_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3")


@pytest.fixture(scope="module")
def deployed() -> lp.ArchiveInfo:
    return lp.build(lp.PackageSpec.for_runtime("python3.12"))


@pytest.fixture(scope="module")
def local_build() -> lp.ArchiveInfo:
    return lp.build(lp.PackageSpec(python_version=f"{sys.version_info.major}.{sys.version_info.minor}"))


def test_package_is_under_the_lambda_limits(deployed):
    assert deployed.zipped_bytes < lp.MAX_ZIPPED_BYTES
    assert deployed.unzipped_bytes < lp.MAX_UNZIPPED_BYTES
    assert deployed.unzipped_bytes < 60_000_000, "expected ~30 MB with Pillow + zxing-cpp; did OpenCV creep in?"


def test_package_holds_the_lambda_code_and_nothing_it_does_not_import(deployed):
    names = zipfile.ZipFile(deployed.path).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {"ingest", "stream", "zxingcpp", "PIL", "aws_lambda_powertools", "aws_kinesis_agg"} <= tops
    assert "ingest/handler.py" in names and "ingest/forwarder.py" in names
    assert not [t for t in tops if t.split(".")[0] in FORBIDDEN]
    assert not [n for n in names if n.split("/")[-1].startswith("infra") or "__pycache__" in n or n.endswith(".pyc")]


def test_native_libraries_match_the_runtime_python_and_glibc(deployed):
    names = zipfile.ZipFile(deployed.path).namelist()
    exts = [n for n in names if n.endswith(".so") and ".cpython-" in n]
    assert exts and all(".cpython-312-x86_64-linux-gnu.so" in n for n in exts), exts[:5]
    tags = [
        line
        for n in names
        if n.endswith(".dist-info/WHEEL")
        for line in zipfile.ZipFile(deployed.path).read(n).decode().splitlines()
        if line.startswith("Tag:")
    ]
    for tag in tags:
        m = re.search(r"manylinux_2_(\d+)", tag)
        assert m is None or int(m.group(1)) <= 34, f"{tag} needs a newer glibc than Amazon Linux 2023's 2.34"


def test_every_bundled_dependency_is_satisfied(deployed):
    assert lp.unmet_requirements(lp.PackageSpec.for_runtime("python3.12").deps_dir) == []


def test_pins_satisfy_the_projects_declared_ranges():
    assert_pins_within_declared_ranges(lp.LAMBDA_REQUIREMENTS)


def test_archive_is_deterministic(tmp_path):
    spec = lp.PackageSpec(python_version="3.12")
    entries = spec.source_entries()
    a = write_zip(entries, tmp_path / "a.zip")
    b = write_zip(list(reversed(entries)), tmp_path / "b.zip")
    assert a.sha256 == b.sha256


def _runtime_dir(tmp_path: Path) -> Path:
    """Symlinks to the venv's boto3 & co: what the Lambda runtime provides besides the package."""
    import importlib.util

    d = tmp_path / "runtime"
    d.mkdir()
    for mod in RUNTIME_MODULES:
        origin = Path(importlib.util.find_spec(mod).origin)
        src = origin.parent if origin.name == "__init__.py" else origin
        (d / src.name).symlink_to(src)
    return d


PROBE = r"""
import json, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
t = time.perf_counter()
import ingest.handler, ingest.forwarder
import_ms = (time.perf_counter() - t) * 1000
event = {"resource": "/upload", "path": "/upload", "httpMethod": "POST", "headers": {"Content-Type": "image/jpeg"},
         "requestContext": {"requestId": "r1", "identity": {"apiKeyId": "not-a-registered-key"},
                            "resourcePath": "/upload", "httpMethod": "POST", "stage": "v1"},
         "body": "", "isBase64Encoded": True}
response = ingest.handler.handler(event, None)
outside = sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)
                  and "site-packages" in m.__file__ and not m.__file__.startswith(tuple(sys.path[:2]))})
print(json.dumps({"import_ms": import_ms, "status": response["statusCode"], "body": response["body"],
                  "outside": outside}))
"""


def test_handlers_import_and_answer_from_the_built_zip_in_a_fresh_interpreter(local_build, tmp_path):
    unzipped = tmp_path / "task"
    zipfile.ZipFile(local_build.path).extractall(unzipped)
    registry = unzipped / "camera_registry.json"
    registry.write_text(
        json.dumps({"cameras": [{"camera_id": "c1", "cinema_id": "REX", "room_id": "1", "key_id": "k1"}]}), "utf-8"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "CAMERA_REGISTRY": f"file://{registry}",
        "READS_STREAM_NAME": "s",
        "BOX_OFFICE_QUEUE_URL": "q",
    }
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(unzipped), str(_runtime_dir(tmp_path))],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == 403, result
    assert json.loads(result["body"])["error"]["code"] == "forbidden"
    assert result["outside"] == [], "modules loaded from outside the package and the runtime"
