"""`broker bench scale`: routing throughput of two router processes against one (issue 19, part 4).

On one local secured Kafka (TLS + SCRAM-SHA-512 + ACLs; or the cluster `--bootstrap` names, as
in `broker bench router`), the deployment of `broker bench router` (signed
`child.missing.started` events of one council, forwarded to two recipients) with `--partitions`
partitions per ingress topic. Then, in the same run:

* one router process (`python -m broker.cli route --instance r1`, as in production) routes a
  backlog of `--events` events;
* `--instances` router processes (r1, r2, ...) in the same consumer group route a fresh backlog
  of the same size.

Each backlog is published in ONE Kafka transaction once every router has joined the group and
owns its partitions: the routers read `read_committed`, so all of it appears at the commit and
none of it before (no instance starts alone because it joined first, and publishing does not
compete with routing). Every 0.25 s the harness reads each router's CPU time (`/proc/PID/stat`)
and its count of routed records (its own `/metrics`, `broker_routing_seconds_count`): events/s
and CPU µs per event of the router processes are taken between the first sample after the first
commit and the first sample that finds the backlog routed (group joins and state recovery
excluded); their product is how many cores the routers kept busy. Exactly-once is checked on the
audit log: one decision per ingress record of the backlog, none twice. The Kafka broker and this
harness run on the same machine as the routers and share its cores: the output says how many
there are and the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from broker.bench import bench_kafka
from broker.bench.router import (
    Mark,
    Rate,
    _Deployment,
    _external,
    _issuer,
    _ok,
    _publish_presigned,
    _rate,
    add_cluster_arguments,
)
from broker.errors import BrokerError
from broker.kafka.credentials import OPERATOR

GOAL = 1.7  # two instances on two cores route at least this many times one (issue 19)
SAMPLE_S = 0.25
_PORT = re.compile(rb"metrics at http://127\.0\.0\.1:(\d+)/metrics")


class ScaleBenchError(BrokerError):
    """The scale-out benchmark could not run as asked, or a router failed during it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=20000, help="events per backlog")
    add_cluster_arguments(parser)
    parser.add_argument(
        "--partitions",
        type=int,
        default=4,
        help="partitions per topic (the backlog spreads over the council's ingress partitions; "
        "at least --instances, best a multiple of it)",
    )
    parser.add_argument(
        "--instances", type=int, default=2, help="router processes of the scaled-out run"
    )


@dataclass
class Outcome:
    """One run: the rate of the router processes, how the backlog was shared, exactly-once."""

    instances: int
    rate: Rate
    routed: dict[str, int]
    decisions: int
    distinct: int
    outcomes: dict[str, int] = field(default_factory=dict)


def run(args: argparse.Namespace) -> int:
    _check(args)
    external = _external(args)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="broker-bench-scale-") as tmp:
        scratch = Path(tmp)
        with bench_kafka(external, scratch / "kafka", secure=True) as access:
            print(
                f"scale-out benchmark: {args.events} child.missing.started events per backlog "
                f"over {args.partitions} ingress partitions; 1 router process, then "
                f"{args.instances} in one consumer group",
                flush=True,
            )
            print(f"  machine: {cores} cores, {_load()}", flush=True)
            deployment = _Deployment.make(
                access, scratch / "deployment", args.partitions, router={"metrics_port": 0}
            )
            one = _routed_by(deployment, scratch, args.events, instances=1, tag="one")
            many = _routed_by(
                deployment, scratch, args.events, instances=args.instances, tag="many"
            )
            print(f"  machine at the end: {_load()}", flush=True)
    status = 0
    for result in (one, many):
        exact = result.decisions == args.events and result.distinct == args.events
        status |= 0 if exact else 1
        shares = ", ".join(f"{name} {count}" for name, count in sorted(result.routed.items()))
        outcomes = ", ".join(f"{n} {o}" for o, n in sorted(result.outcomes.items()))
        label = f"{result.instances} router{'s' if result.instances > 1 else ''}"
        used = result.rate[0] * result.rate[1] / 1e6  # CPU seconds per second: cores busy
        print(
            f"  {label:<10}: {result.rate[0]:7.0f} events/s, {result.rate[1]:5.0f} µs CPU/event "
            f"(router processes; routed: {shares}); the routers used {used:.2f} of {cores} cores",
            flush=True,
        )
        print(
            f"  {'':<10}  audit: {result.decisions} decisions for {args.events} events, "
            f"{result.distinct} distinct ingress records ({outcomes}): "
            f"{'exactly once' if exact else 'NOT exactly once'}",
            flush=True,
        )
    speedup = many.rate[0] / one.rate[0]
    print(
        f"  {args.instances} / 1      : {speedup:7.2f}   by events/s (goal >= {GOAL} on two "
        f"cores: {_ok(speedup >= GOAL)}); CPU per event {many.rate[1] / one.rate[1]:.2f}",
        flush=True,
    )
    print(
        f"  (the Kafka broker, this harness and anything else on the machine share the same "
        f"{cores} cores with the routers: see the load averages above; if the routers used no "
        "more cores with more instances, the machine had none to give them)",
        flush=True,
    )
    return status


def _check(args: argparse.Namespace) -> None:
    if args.instances < 2:
        raise ScaleBenchError(f"--instances {args.instances}: give 2 or more (it is compared "
                              "with one instance)")  # fmt: skip
    if args.partitions < args.instances:
        raise ScaleBenchError(
            f"--partitions {args.partitions} is fewer than --instances {args.instances}: an "
            "instance without a partition has nothing to do; give at least as many partitions"
        )
    if args.events < 100:
        raise ScaleBenchError(f"--events {args.events}: give at least 100 to measure a rate")


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min)"


@dataclass
class _Router:
    """One `broker route` process, its log, and its metrics port once it has said it."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @classmethod
    def start(cls, config: Path, name: str, log: Path) -> _Router:
        command = [sys.executable, "-m", "broker.cli", "route", "--config", str(config)]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*command, "--instance", name], stdout=out, stderr=subprocess.STDOUT
            )
        return cls(name, proc, log)

    def metrics(self) -> dict[str, float]:
        """Its /metrics as {sample name: sum over labels} ({} before it serves them)."""
        if self.port is None:
            found = _PORT.search(self.log.read_bytes())
            if found is None:
                return {}
            self.port = int(found.group(1))
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                base = name.partition("{")[0]
                samples[base] = samples.get(base, 0.0) + float(value)
        return samples

    def cpu_s(self) -> float:
        """User + system CPU seconds of the process (all its threads) so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise ScaleBenchError(f"router {self.name} stopped (status {self.proc.returncode}):\n"
                                  f"{tail}")  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _routed_by(
    deployment: _Deployment, scratch: Path, events: int, *, instances: int, tag: str
) -> Outcome:
    """Start `instances` routers, wait until they own every ingress partition between them,
    publish a backlog of `events` in one transaction and sample until it is routed."""
    config = deployment.config
    total = len(config.agency_ids) * config.kafka.topics.partitions
    before = _ends(deployment)
    routers: list[_Router] = []
    with contextlib.ExitStack() as cleanup:
        for n in range(1, instances + 1):
            router = _Router.start(deployment.config_path, f"r{n}", scratch / f"{tag}-r{n}.log")
            routers.append(router)
            cleanup.callback(router.stop)
        _until_assigned(routers, total)
        _publish_presigned(deployment, events, tag=tag, transactional=True)
        marks, routed = _sample(routers, events)
    after = _ends(deployment)
    decisions, distinct, outcomes = _audited(deployment, before, after)
    return Outcome(instances, _rate(marks), routed, decisions, distinct, outcomes)


def _until_assigned(routers: list[_Router], total: int, timeout_s: float = 180.0) -> None:
    """Until the routers own all `total` ingress partitions between them, each some."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        owned = []
        for router in routers:
            router.alive()
            owned.append(router.metrics().get("broker_partitions_owned", 0.0))
        if sum(owned) == total and all(owned):
            return
        time.sleep(SAMPLE_S)
    raise ScaleBenchError(
        f"the routers did not share the {total} ingress partitions within {timeout_s:.0f} s "
        "(logs in the bench's temporary directory)"
    )


def _sample(routers: list[_Router], events: int) -> tuple[list[Mark], dict[str, int]]:
    """(wall clock, CPU seconds of all routers, events routed) every `SAMPLE_S` from the first
    routed event until `events` are routed; and how many each router routed."""
    marks: list[Mark] = []
    deadline = time.monotonic() + 120 + events / 50
    done = 0
    counts: dict[str, int] = {}
    while done < events:
        if time.monotonic() > deadline:
            raise ScaleBenchError(f"only {done} of {events} events routed in time")
        now = time.monotonic()
        cpu = 0.0
        for router in routers:
            router.alive()
            cpu += router.cpu_s()
            counts[router.name] = int(router.metrics().get("broker_routing_seconds_count", 0))
        done = sum(counts.values())
        if done:
            marks.append((now, cpu, done))
        time.sleep(SAMPLE_S)
    return marks, counts


def _ends(deployment: _Deployment) -> dict[int, int]:
    """End offset of each partition of the council's ingress topic."""
    from kafka import TopicPartition

    from broker.config import topic_ingress
    from broker.kafka.client import KafkaClients

    topic = topic_ingress(_issuer(deployment))
    consumer = KafkaClients(deployment.config.kafka, OPERATOR).consumer(group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return {tp.partition: end for tp, end in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close(autocommit=False)


def _audited(
    deployment: _Deployment, before: dict[int, int], after: dict[int, int]
) -> tuple[int, int, dict[str, int]]:
    """Decisions in the audit log for the council's ingress records between `before` and
    `after`: how many, for how many distinct records, and by outcome."""
    from broker.audit.cli import read_values
    from broker.audit.reader import TopicReader
    from broker.audit.record import decode_fields
    from broker.config import TOPIC_AUDIT, topic_ingress
    from broker.kafka.client import KafkaClients

    topic = topic_ingress(_issuer(deployment))
    with TopicReader(KafkaClients(deployment.config.kafka, OPERATOR)) as reader:
        values = read_values(reader, TOPIC_AUDIT)
    decisions = 0
    seen: set[tuple[int, int]] = set()
    outcomes: Counter[str] = Counter()
    for _, _, value in values:
        fields = decode_fields(value)
        partition, offset = fields["ingress_partition"], fields["ingress_offset"]
        if fields["ingress_topic"] != topic:
            continue
        if not before.get(partition, 0) <= offset < after.get(partition, 0):
            continue
        decisions += 1
        seen.add((partition, offset))
        outcomes[str(fields["outcome"])] += 1
    return decisions, len(seen), dict(outcomes)
