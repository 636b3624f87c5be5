"""The HTML report opened in headless Chromium: the DOM has the charts and the peak table, and the screenshot
shows the highlighted peak bars (the chart really renders in a browser, offline)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from analytics.report import PEAK_COLOUR, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install -y chromium); the project's test command installs it",
)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=90, check=True)


@pytest.fixture(scope="module")
def report_file(lake_con, tmp_path_factory) -> Path:
    return write_report(lake_con, tmp_path_factory.mktemp("report") / "peaks.html", cinema="sp")


def test_browser_dom_has_the_chart_image_and_the_peak_table(report_file, tmp_path):
    dom = chromium(tmp_path, "--dump-dom", report_file.as_uri()).stdout
    assert dom.count('<img class="chart"') == 1 and 'src="data:image/png;base64,' in dom
    assert "<h2>Cinema sp</h2>" in dom
    # peak table rows: cinema-wide first, then rooms
    assert '<tr class="cinema"><td class="text">2026-11-30</td><td class="text">all rooms</td>' in dom
    assert '<span class="peak">19:00–20:00</span></td><td>4</td><td>8</td><td>50%</td>' in dom
    assert '<td class="text">R2</td><td class="text"><span class="peak">18:00–19:00</span></td><td>1</td>' in dom


def test_browser_screenshot_shows_highlighted_peak_bars(report_file, tmp_path):
    shot = tmp_path / "report.png"
    chromium(tmp_path, "--window-size=1100,1000", "--hide-scrollbars", f"--screenshot={shot}", report_file.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    target = np.array([int(PEAK_COLOUR[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    near = int((np.abs(pixels - target) < 25).all(axis=-1).sum())
    # R1 has one peak bar, R2 four tied ones: thousands of pixels in the peak colour, none without the image
    assert near > 2000, f"only {near} pixels of the peak colour: the chart did not render"
