"""Layering: pure ingest/stream modules load no AWS SDK; the Lambda adapters build no client at import."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("boto3", "botocore", "pulumi", "awsglue", "pyspark", "zxingcpp", "PIL")
PURE = ("ingest.request", "ingest.records", "ingest.service", "ingest.boxoffice", "stream.aggregate")


def loaded_after_import(*modules: str) -> list[str]:
    """Heavy modules present in a fresh interpreter after importing ``modules`` (in order)."""
    code = (
        f"import json, sys\nfor m in {modules!r}: __import__(m)\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout)


def test_pure_modules_import_no_aws_sdk_pulumi_or_spark():
    assert set(loaded_after_import(*PURE)) <= {"zxingcpp", "PIL"}  # the service decodes: imaging only


def test_the_forwarder_loads_neither_boto3_nor_the_decoder_at_import():
    assert set(loaded_after_import("ingest.forwarder", "ingest.boxoffice")) <= {"botocore"}  # via Powertools


def test_the_handler_imports_without_boto3():
    assert "boto3" not in loaded_after_import("ingest.handler")
