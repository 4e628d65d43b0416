"""`broker bench scale` runs end to end on the session Kafka (figures are printed, not judged).

A tiny run: one router process, then two in one consumer group, each on a backlog of its own.
What is checked is what does not depend on the machine's speed: both backlogs are routed exactly
once (one audit decision per event, as the bench itself counts), the two instances shared the
second backlog, and the ratio and CPU lines are printed.
"""

from __future__ import annotations

import re

import pytest

from broker.cli import main


@pytest.mark.integration
@pytest.mark.slow
def test_bench_scale_routes_each_backlog_exactly_once_and_prints_the_ratio(
    bench_cluster_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = bench_cluster_args
    status = main(["bench", "scale", *cluster, "--events", "1200", "--partitions", "2"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "local Kafka" not in out, out  # the session's, none of its own
    routed = {}
    for label in ("1 router ", "2 routers"):
        match = re.search(
            rf"{label} *: +(\d+) events/s, +(\d+) µs CPU/event \(router processes; routed: (.*)\)",
            out,
        )
        assert match and int(match.group(1)) > 0 and int(match.group(2)) > 0, out
        routed[label] = dict(
            (name, int(count)) for name, count in re.findall(r"(r\d) (\d+)", match.group(3))
        )
    assert routed["1 router "] == {"r1": 1200}, out
    assert set(routed["2 routers"]) == {"r1", "r2"} and all(routed["2 routers"].values()), out
    assert sum(routed["2 routers"].values()) == 1200, out
    exact = "1200 decisions for 1200 events, 1200 distinct ingress records"
    assert out.count(exact) == 2 and out.count(": exactly once") == 2, out
    ratio = r"2 / 1 +: +(\d+\.\d\d) +by events/s \(goal >= 1\.7 on two cores: (met|MISSED)\)"
    assert re.search(ratio, out), out
    assert "share the same" in out and "load average" in out, out
