"""The HTML report opens in a real headless Chromium, its charts are drawn and its script runs.

Chromium is part of the project's set-up (scripts/ensure_chromium.sh); this test requires it.
The report's layout is fixed (a 120 px header, then three 960x360 px charts: the trend for the
picked council, its region and England; time to the first incident; incidents by month), so the
test knows where each chart is on the screenshot (kept as `report.png` in the test's temporary
directory, to look at). As a control, the same page with its charts removed must fail the same
checks.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg
from stats_samples import synthetic_feed

from broker.stats import Period, StatsState, compute
from broker.stats.output import Council, write_outputs
from broker.stats.report import COLOURS, ENGLAND_COLOUR

HEADER = 120
CHART_W, CHART_H, MARGIN = 960, 360, 24
CHARTS = ("trend", "time-to-first", "incidents-by-month")
WINDOW = (1280, HEADER + CHART_H * len(CHARTS) + 200)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no chromium on PATH: run scripts/ensure_chromium.sh (part of the set-up)")


def screenshot(page: Path, out: Path) -> np.ndarray:
    run_chromium(page, f"--screenshot={out}", f"--window-size={WINDOW[0]},{WINDOW[1]}")
    assert out.exists(), "chromium wrote no screenshot"
    pixels = np.asarray(mpimg.imread(out))[:, :, :3]
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    return pixels


def run_chromium(page: Path, *options: str) -> str:
    with tempfile.TemporaryDirectory(prefix="stats-chromium-") as profile:
        done = subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                f"--user-data-dir={profile}",
                *options,
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
    return done.stdout


def rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])


def chart_regions(pixels: np.ndarray) -> dict[str, np.ndarray]:
    return {
        name: pixels[HEADER + n * CHART_H : HEADER + (n + 1) * CHART_H, MARGIN : MARGIN + CHART_W]
        for n, name in enumerate(CHARTS)
    }


def bar_pixels(region: np.ndarray, colour: str) -> int:
    return int((np.abs(region - rgb(colour)).max(axis=2) < 0.06).sum())


LOOKUP = {
    "E09000033": Council("E09000033", "Westminster", "213", "E13000001", "Inner London"),
    "E08000025": Council("E08000025", "Birmingham", "330", "E12000005", "West Midlands"),
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five reporting years of the synthetic feed (which starts in June 2023: two years have
    data, three are empty), Westminster picked."""
    state = StatsState()
    state.apply_all(synthetic_feed())
    out = tmp_path_factory.mktemp("report")
    years = [compute(state, p) for p in Period.reporting_years(2025)]
    return write_outputs(years, out, state, LOOKUP, "E09000033")["html"]


def test_report_charts_render_in_headless_chromium(report: Path) -> None:
    pixels = screenshot(report, report.parent / "report.png")
    for name, region in chart_regions(pixels).items():
        assert region.std() > 0.05, f"chart {name} looks blank"
        assert (region.mean(axis=2) < 0.5).sum() > 500, f"chart {name} has no axes or text"
        assert bar_pixels(region, COLOURS["missing"]) > 300, f"chart {name} shows no missing"
        assert bar_pixels(region, COLOURS["away"]) > 100, f"chart {name} shows no away"
    trend = chart_regions(pixels)["trend"]
    assert bar_pixels(trend, ENGLAND_COLOUR) > 100, "no England line in the trend"


def test_the_picked_council_is_named_and_its_script_runs(report: Path) -> None:
    dom = run_chromium(report, "--dump-dom", "--virtual-time-budget=2000")
    assert '<option value="E09000033" selected="">Westminster (E09000033)</option>' in dom
    # The script marked the picked council's row in the comparison table.
    assert re.search(r'<tr data-council="E09000033" class="selected">', dom), dom[:2000]
    assert "Westminster" in dom and "E09000033" in dom


def test_the_check_fails_when_the_charts_are_missing(report: Path, tmp_path: Path) -> None:
    html = report.read_text(encoding="utf-8")
    broken = re.sub(r"<svg .*?</svg>", "<div style='height:360px'></div>", html, flags=re.S)
    assert broken != html
    page = tmp_path / "broken.html"
    page.write_text(broken, encoding="utf-8")
    pixels = screenshot(page, tmp_path / "broken.png")
    for region in chart_regions(pixels).values():
        assert bar_pixels(region, COLOURS["missing"]) < 50
