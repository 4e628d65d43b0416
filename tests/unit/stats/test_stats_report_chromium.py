"""Acceptance 4: the HTML report opens in a real headless Chromium and its charts are drawn.

Chromium is part of the project's set-up (scripts/ensure_chromium.sh); this test requires it.
The report's layout is fixed (a 120 px header, then three 960x360 px charts), so the test knows
where each chart is on the screenshot. As a control, the same page with its images removed must
fail the same checks.
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
from broker.stats.output import COLOURS, write_outputs

HEADER = 120
CHART_W, CHART_H, MARGIN = 960, 360, 24
CHARTS = ("incidents-by-month", "time-to-first", "council-comparison")
WINDOW = (1280, HEADER + CHART_H * len(CHARTS) + 200)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no chromium on PATH: run scripts/ensure_chromium.sh (part of the set-up)")


def screenshot(page: Path, out: Path) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="stats-chromium-") as profile:
        subprocess.run(
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
                f"--screenshot={out}",
                f"--window-size={WINDOW[0]},{WINDOW[1]}",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    assert out.exists(), "chromium wrote no screenshot"
    pixels = np.asarray(mpimg.imread(out))[:, :, :3]
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    return pixels


def rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])


def chart_regions(pixels: np.ndarray) -> dict[str, np.ndarray]:
    return {
        name: pixels[HEADER + n * CHART_H : HEADER + (n + 1) * CHART_H, MARGIN : MARGIN + CHART_W]
        for n, name in enumerate(CHARTS)
    }


def bar_pixels(region: np.ndarray, colour: str) -> int:
    return int((np.abs(region - rgb(colour)).max(axis=2) < 0.06).sum())


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = StatsState()
    state.apply_all(synthetic_feed())
    out = tmp_path_factory.mktemp("report")
    return write_outputs(compute(state, Period.reporting_year(2025)), out)["html"]


def test_report_charts_render_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    pixels = screenshot(report, tmp_path / "report.png")
    for name, region in chart_regions(pixels).items():
        assert region.std() > 0.05, f"chart {name} looks blank"
        assert (region.mean(axis=2) < 0.5).sum() > 500, f"chart {name} has no axes or text"
        assert bar_pixels(region, COLOURS["missing"]) > 300, f"chart {name} has no missing bars"
        assert bar_pixels(region, COLOURS["away"]) > 100, f"chart {name} has no away bars"


def test_the_check_fails_when_the_images_do_not_load(report: Path, tmp_path: Path) -> None:
    html = report.read_text(encoding="utf-8")
    broken = re.sub(r"src='data:image/png;base64,[^']*'", "src='missing.png'", html)
    assert broken != html
    page = tmp_path / "broken.html"
    page.write_text(broken, encoding="utf-8")
    pixels = screenshot(page, tmp_path / "broken.png")
    for region in chart_regions(pixels).values():
        assert bar_pixels(region, COLOURS["missing"]) < 50
