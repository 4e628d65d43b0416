"""`broker bench router` runs end to end on the session Kafka (figures are printed, not judged)."""

from __future__ import annotations

import re

import pytest

from broker.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_router_prints_ratio_and_latency(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        [
            "bench", "router", "--bootstrap", kafka_bootstrap, "--events", "600",
            "--rate", "50", "--latency-seconds", "2",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    assert re.search(r"pass-through copy +: +\d+ events/s, +\d+ µs CPU/event", out), out
    assert re.search(r"router +: +\d+ events/s, +\d+ µs CPU/event", out), out
    assert re.search(r"ratio +: +\d+\.\d\d", out), out
    match = re.search(r"\((\d+) events, (\d+) not seen\): p50 [\d.]+ ms, p99 [\d.]+ ms", out)
    assert match, out
    assert match.group(1) == "100" and match.group(2) == "0", out
