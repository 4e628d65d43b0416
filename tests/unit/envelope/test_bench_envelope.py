"""`broker bench envelope` runs and reports every figure (timings are never asserted)."""

from __future__ import annotations

import pytest

from broker.cli import main


def test_bench_envelope_prints_costs_and_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "envelope", "--events", "5", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    for label in (
        "bare Ed25519 verify",
        "issue",
        "disclose",
        "verify envelope",
        "verify forwarded",
    ):
        assert label in out
    assert "verify envelope / bare verify" in out and "goal < 1.5" in out
