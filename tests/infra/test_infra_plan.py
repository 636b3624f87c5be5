"""``python -m deploy.plan``: the reviewer's view of what ``pulumi up`` would create."""

from __future__ import annotations

import subprocess
import sys

from deploy.mocks import REPO_ROOT
from deploy.plan import SECRET_PLACEHOLDER, render, stack_config


def test_render_nests_resources_under_their_components(stack):
    text = render(stack)
    lines = text.splitlines()
    component = next(i for i, line in enumerate(lines) if line.startswith("monuv:etl:EtlJob"))
    job = next(i for i, line in enumerate(lines) if "aws:glue/job:Job" in line)
    assert job > component and lines[job].startswith("  "), "the job is listed under its component"
    assert "gluestreaming" in lines[job]
    assert "ReportBatchItemFailures" in text
    assert f"{len([r for r in stack.resources if r.custom])} resources" in text
    assert "api_url = " in text


def test_stack_config_reads_the_stack_file_and_stands_in_for_unset_secrets():
    config, secrets = stack_config("prod", ["cameras=x.json", "aws:region=eu-west-1"])
    assert config["monuv-qr:cameras"] == "x.json" and config["aws:region"] == "eu-west-1"
    assert config["monuv-qr:boxOfficeToken"] == SECRET_PLACEHOLDER
    assert secrets == ["monuv-qr:boxOfficeToken"]


def test_plan_command_prints_the_graph(stack_files):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "deploy.plan",
            "--set",
            f"cameras={stack_files['cameras']}",
            "--set",
            f"kinesisConnectorJar={stack_files['jar']}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "monuv:ingest:IngestApi" in proc.stdout
    assert "aws:apigateway/apiKey:ApiKey  monuv-qr-prod-ingest-key-rex-1-door" in proc.stdout


def test_plan_command_exits_2_naming_the_bad_key():
    proc = subprocess.run(
        [sys.executable, "-m", "deploy.plan", "--set", "streamMode=FAST"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "monuv-qr:streamMode" in proc.stderr


def test_plan_example_needs_no_files_from_the_operator(capsys):
    from deploy.plan import main

    assert main(["--example"]) == 0
    out = capsys.readouterr().out
    assert "aws:apigateway/apiKey:ApiKey  monuv-qr-prod-ingest-key-rex-2-door" in out
    assert 'camera_key_ids = {"rex-1-door"' in out
