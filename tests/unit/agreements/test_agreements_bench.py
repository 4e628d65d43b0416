"""The agreements benchmark runs and reports both costs and the ratio (no timing asserted)."""

from __future__ import annotations

import argparse

import pytest

from broker.bench import agreements


def test_benchmark_reports_both_costs_and_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    agreements.add_arguments(parser)
    assert agreements.run(parser.parse_args(["--events", "600", "--repeat", "1"])) == 0
    out = capsys.readouterr().out
    assert "5 agreements:" in out and "500 agreements:" in out and "ratio:" in out
    assert "grants per event: 2.55 with 5, 2.55 with 500" in out
