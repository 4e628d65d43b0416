"""`broker bench envelope` runs and reports every figure (timings are never asserted)."""

from __future__ import annotations

import re

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
    assert "decode (envelope bytes" in out
    # Issue 19: verification from bytes against its floor, bare verify + decode, judged.
    floor = re.search(
        r"verify envelope / \(bare verify \+ decode\): +(\d+\.\d\d)x "
        r"\(the floor; goal <= 1\.5: (met|MISSED)\)",
        out,
    )
    assert floor and float(floor.group(1)) > 0, out
    assert "verify envelope / bare verify" in out
