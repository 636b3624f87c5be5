"""The Glue entry point's argument handling, and the layering rule (only etl/job.py may import awsglue)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from etl import job, settings

REPO = Path(__file__).resolve().parents[2]
ARN = "arn:aws:kinesis:sa-east-1:123456789012:stream/monuv-reads"


def test_source_options_come_from_the_stream_arn():
    opts = job.source_options({settings.STREAM_ARN: ARN, settings.STARTING_POSITION: "LATEST"})
    assert opts["kinesis.streamName"] == "monuv-reads"
    assert opts["kinesis.region"] == "sa-east-1"
    assert opts["kinesis.endpointUrl"] == "https://kinesis.sa-east-1.amazonaws.com"
    assert opts["kinesis.startingPosition"] == "LATEST"


@pytest.mark.parametrize("arn", ["", "arn:aws:s3:::bucket", "arn:aws:kinesis:sa-east-1:1:table/x"])
def test_bad_stream_arn_is_named_in_the_error(arn):
    with pytest.raises(job.JobConfigError, match=settings.STREAM_ARN):
        job.source_options({settings.STREAM_ARN: arn})


def test_batch_options_window_and_checkpoint():
    opts = job.batch_options({settings.WINDOW_SECONDS: "30", settings.CHECKPOINT_PATH: "s3://b/cp/"})
    assert opts == {"windowSize": "30 seconds", "checkpointLocation": "s3://b/cp/", "batchMaxRetries": "3"}
    with pytest.raises(job.JobConfigError, match=settings.WINDOW_SECONDS):
        job.batch_options({settings.WINDOW_SECONDS: "soon", settings.CHECKPOINT_PATH: "s3://b/cp/"})


def test_etl_modules_import_without_glue_pulumi_or_boto3():
    code = (
        "import sys; import etl.transforms, etl.local, etl.batch, etl.job, etl.compact, stream.sqlite; "
        "bad = [m for m in ('awsglue', 'pulumi', 'boto3', 'pyspark') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_only_job_module_imports_awsglue():
    pattern = re.compile(r"^\s*(from|import)\s+awsglue", re.MULTILINE)
    offenders = [p.name for p in (REPO / "etl").glob("*.py") if pattern.search(p.read_text()) and p.name != "job.py"]
    assert offenders == []
