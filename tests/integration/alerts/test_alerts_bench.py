"""`broker bench alerts` runs end to end on the session Kafka (figures are printed, not judged)."""

from __future__ import annotations

import re

import pytest

from broker.cli import main


@pytest.mark.integration
@pytest.mark.slow
def test_bench_alerts_prints_latency_hops_and_cost(
    bench_cluster_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Half the events raise an alert: exactly those are read in the police feed (an alert for
    any other event would count too, and the bench would exit 1)."""
    status = main(["bench", "alerts", *bench_cluster_args, "--rate", "20", "--seconds", "2",
                   "--raising", "0.5"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert ("40 events at 20/s over 2 s, 20 of them raising an alert; 20 alerts read in the "
            "police feed (0 missing)") in out, out
    match = re.search(r"police feed: p50 (\d+) ms, p99 (\d+) ms \(goal p99 < 1000 ms\)", out)
    assert match and 0 < int(match.group(1)) <= int(match.group(2)), out
    cost = re.search(r"alerts service ([\d.]+) ms, router ([\d.]+) ms per record routed", out)
    assert cost and float(cost.group(1)) > 0 and float(cost.group(2)) > 0, out
    for hop in ("router forwards the event", "alerts service raises the alert",
                "router forwards the alert to the police"):
        assert re.search(rf"{hop}: p50 -?\d+ ms, p99 -?\d+ ms", out), out
