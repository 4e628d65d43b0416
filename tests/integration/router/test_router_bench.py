"""`broker bench router` runs end to end on the session Kafka (figures are printed, not judged).

The bench is given the session Kafka as an external cluster (`--kafka-ca`, `--kafka-credentials`
when it is secured), so it starts no Kafka of its own and measures once; the secured / plaintext
line it prints after two local Kafkas is checked on figures made up here.
"""

from __future__ import annotations

import re

import pytest

from broker.bench.router import Throughput, comparison
from broker.cli import main
from broker.kafka.local import ClusterAccess


@pytest.mark.integration
@pytest.mark.slow
def test_bench_router_prints_ratio_and_latency(
    kafka_access: ClusterAccess,
    bench_cluster_args: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    cluster = bench_cluster_args
    status = main(
        [
            "bench", "router", *cluster, "--events", "600",
            "--rate", "50", "--latency-seconds", "2", "--flush-bug",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    mode = "secured" if kafka_access.secured else "plaintext"
    assert f"one measurement, on the external {mode} Kafka" in out, out
    if kafka_access.secured:
        assert "secured Kafka (TLS + SCRAM-SHA-512 + ACLs) at" in out, out
    assert "local Kafka" not in out, out  # no Kafka of its own
    for label in ("pass-through copy", "router"):
        match = re.search(rf"{mode} +{label} +: +(\d+) events/s, +(\d+) µs CPU/event", out)
        assert match, out
        assert int(match.group(1)) > 0 and int(match.group(2)) > 0, out
    match = re.search(r"ratio +: +(\d+\.\d\d) .*by CPU time per event (\d+\.\d\d)", out)
    assert match and float(match.group(1)) > 0 and float(match.group(2)) > 0, out
    # The design's floor (issue 19): the 1:3 fan-out, the in-process parts, and the ratios.
    fanout = re.search(rf"{mode} +fan-out 1:3 +: +(\d+) events/s, +(\d+) µs CPU/event", out)
    assert fanout and int(fanout.group(2)) > 0, out
    parts = re.search(r"decode ([\d.]+), verify ([\d.]+), 2 x sign ([\d.]+)", out)
    assert parts and all(float(part) > 0 for part in parts.groups()), out
    floor = re.search(r"floor +: +(\d+) µs CPU/event \(fan-out (\d+) ", out)
    assert floor and int(floor.group(1)) > int(floor.group(2)) == int(fanout.group(2)), out
    assert re.search(r"router / floor +: +\d+\.\d\d +\(CPU per event; goal <= 1\.5", out), out
    assert re.search(r"router / fan-out +: +\d+\.\d\d", out), out
    pipeline = re.search(r"floor pipeline +: +(\d+) events/s, +(\d+) µs CPU/event", out)
    assert pipeline and int(pipeline.group(2)) > int(fanout.group(2)), out
    assert re.search(r"router / pipeline +: +\d+\.\d\d +\(CPU per event, against", out), out
    for label in ("fan-out 1:3", "router"):  # --flush-bug: before / after the workaround
        assert re.search(rf"{label} +: +\d+ µs CPU/event without the flush workaround", out), out
    match = re.search(r"\((\d+) events, (\d+) not seen\): p50 ([\d.]+) ms, p99 ([\d.]+) ms", out)
    assert match, out
    assert match.group(1) == "100" and match.group(2) == "0", out
    assert 0 < float(match.group(3)) <= float(match.group(4)), out
    assert "secured / plaintext: router" not in out, out


def test_bench_router_comparison_line() -> None:
    secured = Throughput(passthrough=(800.0, 300.0), router=(450.0, 1100.0))
    plaintext = Throughput(passthrough=(1000.0, 250.0), router=(500.0, 1000.0))
    router, passthrough = "router 0.90 (events/s), 1.10 (CPU µs/event)", "pass-through 0.80, 1.20"
    assert comparison(secured, plaintext) == f"secured / plaintext: {router}; {passthrough}"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--kafka-ca", "ca.pem"], "--bootstrap"),
        (["--bootstrap", "127.0.0.1:1", "--kafka-ca", "ca.pem"], "--kafka-credentials"),
        (["--bootstrap", "127.0.0.1:1", "--kafka-credentials", "."], "--kafka-ca"),
    ],
)
def test_bench_router_refuses_half_an_external_cluster(
    options: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "router", *options]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err, err
