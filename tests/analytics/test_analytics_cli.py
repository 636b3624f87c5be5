"""``monuv-qr query`` and ``monuv-qr report`` through the real CLI entry point, on the fixture lake."""

from __future__ import annotations

import base64
import csv
import io
import json
import re

import pytest
from PIL import Image

from analytics.sql import ANALYST_VIEWS
from local.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_query_json_returns_the_view_rows_for_one_cinema(capsys, fixture_lake):
    rc, out, _ = run_cli(
        capsys, "query", "hourly_peak", "--data", str(fixture_lake), "--cinema", "lis", "--format", "json"
    )
    assert rc == 0
    assert json.loads(out) == [
        {
            "cinema_id": "lis",
            "room_id": None,
            "day": "2026-11-30",
            "peak_hour": 20,
            "peak_entries": 1,
            "day_entries": 1,
            "peak_share": 1.0,
        },
        {
            "cinema_id": "lis",
            "room_id": "R1",
            "day": "2026-11-30",
            "peak_hour": 20,
            "peak_entries": 1,
            "day_entries": 1,
            "peak_share": 1.0,
        },
        {
            "cinema_id": "lis",
            "room_id": None,
            "day": "2026-12-01",
            "peak_hour": None,
            "peak_entries": 0,
            "day_entries": 0,
            "peak_share": None,
        },
        {
            "cinema_id": "lis",
            "room_id": "R1",
            "day": "2026-12-01",
            "peak_hour": None,
            "peak_entries": 0,
            "day_entries": 0,
            "peak_share": None,
        },
    ]


def test_query_csv_filters_on_local_days(capsys, fixture_lake):
    rc, out, _ = run_cli(
        capsys,
        "query",
        "hourly_entries",
        "--data",
        str(fixture_lake),
        "--from",
        "2026-12-01",
        "--to",
        "2026-12-01",
        "--cinema",
        "sp",
        "--format",
        "csv",
    )
    assert rc == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 24 and {r["day"] for r in rows} == {"2026-12-01"}
    assert [int(r["hour"]) for r in rows] == list(range(24))
    assert [(r["hour"], r["entries"]) for r in rows if r["entries"] != "0"] == [("0", "1")]


def test_query_table_is_aligned_with_a_row_count(capsys, fixture_lake):
    rc, out, _ = run_cli(
        capsys, "query", "daily_summary", "--data", str(fixture_lake), "--from", "2026-11-30", "--to", "2026-11-30"
    )
    lines = out.splitlines()
    assert rc == 0 and lines[0].split()[:3] == ["cinema_id", "day", "entries"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[-1] == "(2 rows)"
    sp = next(line for line in lines if line.startswith("sp "))
    assert re.search(r"2026-11-30\s+8\s+1\s+53\s+1\s+0\.019\s+19\s+4\s+R1\s+5\s+2$", sp), sp


def test_query_without_data_exits_1_with_a_hint(capsys, tmp_path):
    rc, out, err = run_cli(capsys, "query", "hourly_entries", "--data", str(tmp_path / "nothing"))
    assert rc == 1 and out == ""
    assert "no Parquet data" in err and "--data" in err


def test_query_rejects_a_bad_date_and_an_inverted_range(capsys, fixture_lake):
    with pytest.raises(SystemExit) as e:
        main(["query", "hourly_entries", "--from", "30/11/2026"])
    assert e.value.code == 2 and "YYYY-MM-DD" in capsys.readouterr().err
    rc, _, err = run_cli(
        capsys, "query", "hourly_entries", "--data", str(fixture_lake), "--from", "2026-12-02", "--to", "2026-12-01"
    )
    assert rc == 1 and "after" in err


def test_query_help_lists_every_view_with_its_meaning(capsys):
    with pytest.raises(SystemExit):
        main(["query", "--help"])
    out = capsys.readouterr().out
    for name in ANALYST_VIEWS:
        assert re.search(rf"^\s+{name}\s+\S", out, re.M), f"{name} missing from --help"


def test_report_writes_a_self_contained_page_with_one_chart_per_cinema(capsys, fixture_lake, tmp_path):
    out_file = tmp_path / "sub" / "peaks.html"
    rc, _, _ = run_cli(capsys, "report", "--data", str(fixture_lake), "--out", str(out_file))
    assert rc == 0
    page = out_file.read_text(encoding="utf-8")
    images = re.findall(r'<img class="chart" alt="[^"]*" src="data:image/png;base64,([^"]+)">', page)
    assert len(images) == 2  # lis and sp
    for b64 in images:
        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert img.format == "PNG" and img.width > 500
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert '<span class="peak">19:00–20:00</span>' in page  # sp's peak hour on 2026-11-30


def test_report_for_a_period_without_activity_says_so(capsys, fixture_lake, tmp_path):
    out_file = tmp_path / "empty.html"
    rc, _, _ = run_cli(capsys, "report", "--data", str(fixture_lake), "--out", str(out_file), "--from", "2027-01-01")
    assert rc == 0
    page = out_file.read_text(encoding="utf-8")
    assert "No activity in the selected period" in page and "<img" not in page


def test_report_cli_help_mentions_out(capsys):
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert "--out FILE.html" in capsys.readouterr().out


def test_cli_resolves_query_and_report_commands():
    from local.cli import COMMANDS

    assert COMMANDS["query"][0] == "local.query_cmd" and COMMANDS["report"][0] == "local.report_cmd"
