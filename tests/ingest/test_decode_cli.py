"""``monuv-qr decode``: one result per file, --json, a clear message and non-zero exit on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from local.cli import main
from local.frames import render_frame

TICKET = "TKT:REX:R02:S20260301-1900:0b7e1c3a-1111-4222-8333-444455556666:C7"


@pytest.fixture
def frames(tmp_path: Path) -> dict[str, Path]:
    files = {
        "ticket": render_frame([TICKET], seed=21),
        "empty": render_frame([], seed=22, fmt="PNG"),
        "broken": b"definitely not an image",
    }
    out = {}
    for name, data in files.items():
        out[name] = tmp_path / f"{name}.img"
        out[name].write_bytes(data)
    return out


def test_decode_prints_one_result_per_file(frames: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", str(frames["ticket"]), str(frames["empty"])]) == 0
    out = capsys.readouterr().out
    assert f"{frames['ticket']}: 1 code(s)" in out
    assert f"{frames['empty']}: 0 code(s)" in out
    assert f"[zxing-cpp] {TICKET}" in out


def test_decode_json_is_one_object_per_line(frames: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "--json", str(frames["ticket"]), str(frames["empty"])]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [rec["file"] for rec in lines] == [str(frames["ticket"]), str(frames["empty"])]
    assert [c["text"] for c in lines[0]["codes"]] == [TICKET]
    assert lines[0]["codes"][0]["decoder"] == "zxing-cpp" and lines[0]["ms"] > 0
    assert lines[1]["codes"] == []


def test_unreadable_input_exits_non_zero_with_reason_and_still_decodes_the_rest(
    frames: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["decode", str(frames["broken"]), str(frames["ticket"])]) == 1
    captured = capsys.readouterr()
    assert f"{frames['broken']}: the bytes are not a recognised image" in captured.err
    assert TICKET in captured.out


def test_missing_file_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "--json", str(tmp_path / "nope.jpg")]) == 1
    rec = json.loads(capsys.readouterr().out)
    assert rec["error"] == "unreadable_file" and "cannot read file" in rec["reason"]


def test_installed_command_runs_in_a_subprocess(frames: dict[str, Path]) -> None:
    exe = Path(sys.executable).with_name("monuv-qr")
    if not exe.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    done = subprocess.run(
        [str(exe), "decode", "--json", str(frames["ticket"]), str(frames["broken"])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    first = json.loads(done.stdout.splitlines()[0])
    assert [c["text"] for c in first["codes"]] == [TICKET]
    assert "not a recognised image" in done.stderr
