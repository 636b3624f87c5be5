"""``monuv-qr demo`` end to end (a reduced evening), and proof that its ground-truth check can fail."""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

import pytest

from analytics.sql import open_lake
from local.demo import compare
from local.simulate import build
from tests.e2e.conftest import cli

TICKETS = 4
SEED = 7


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, date]:
    data = tmp_path_factory.mktemp("demo") / "data"
    done = cli("demo", "--data", str(data), "--tickets", str(TICKETS), "--seed", str(SEED), timeout=170)
    evening = re.search(r"evening of (\d{4}-\d\d-\d\d)", done.stdout)
    assert evening, done.stdout + done.stderr
    return data, done.stdout + f"\n[exit {done.returncode}]\n" + done.stderr, date.fromisoformat(evening.group(1))


def test_demo_exits_0_and_says_every_number_equals_the_ground_truth(demo_run):
    data, output, _evening = demo_run
    assert "[exit 0]" in output, output[-3000:]
    assert "knows the ground truth" in output
    assert "All numbers equal the simulated ground truth" in output
    assert len(re.findall(r"peak \d\d:00-\d\d:59 local .* ✓", output)) == 3  # one line per cinema
    assert (data / "report.html").stat().st_size > 0
    assert '{"_aws"' not in output  # no EMF metrics leak to the console


def test_demo_comparison_reports_a_mismatch_when_truth_or_lake_differ(demo_run, tmp_path):
    data, _output, evening = demo_run
    sc = build(evening, seed=SEED, tickets_per_session=TICKETS)
    n_frames = len(sc.frames)
    con = open_lake(data)
    _lines, mismatches = compare(sc, con, n_frames)
    assert mismatches == []  # control: the untouched lake equals the simulation

    key = next(iter(sc.room_entries))
    sc.room_entries[key] += 1  # the simulation says one more entry than the lake holds
    _lines, mismatches = compare(sc, con, n_frames)
    assert [m[0] for m in mismatches] == ["entries per room and hour"]
    con.close()

    tampered = tmp_path / "lake"  # a lake that lost one Parquet file of reads
    shutil.copytree(data, tampered, ignore=shutil.ignore_patterns("stream.db*", "LOCK"))
    victim = max((tampered / "reads").rglob("*.parquet"), key=lambda p: p.stat().st_size)
    victim.unlink()
    con = open_lake(tampered)
    _lines, mismatches = compare(build(evening, seed=SEED, tickets_per_session=TICKETS), con, n_frames)
    con.close()
    assert mismatches, "deleting a file of reads went unnoticed"
