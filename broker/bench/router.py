"""`broker bench router`: router throughput against a pass-through copy, and end-to-end latency.

On one Kafka, N signed `child.missing.started` events (a Philomena grab pack: forwarded to the
police and, pseudonymised, to national statistics) are published once. Then, in the same run:

* pass-through: consume them and produce the same bytes to another topic, with the router's own
  client settings and one transaction per polled batch (offsets included);
* fan-out pass-through: the same, but writing as many records per event as the router does
  (`ROUTER_WRITES`: two feed forwards and an audit record), the Kafka part of the router's work;
* router: the routing service over the same records (verify, decide, disclose, audit);

each rate is taken between its first and last committed batch (group joins excluded), and the
ratio router / pass-through is printed, by wall clock and by CPU time per event (the latter is the
one to trust on a machine busy with other work). Then the design's floor, measured in the same
run: the fan-out pass-through's CPU per event plus, per event, one Ed25519 verify, two Ed25519
signatures and one envelope decode (the least the router must do besides Kafka); printed with
router / floor (goal <= 1.5, issue 19) and router / fan-out. The floor pipeline does that same
work inside the fan-out pass-through, so it is paid beside a busy Kafka on the same cores, as the
router's work is: router / pipeline says how far the router is from the floor's work done in its
own conditions. `--flush-bug` also runs the fan-out pass-through and the router (on as many fresh
events) without the workaround for kafka-python's stuck flush (docs/performance.md), to show
what it saves. Last, with the router running as its own process, events signed beforehand are
published at a fixed rate (default 200/s) and the time from publish to the police feed record
being visible to a `read_committed` consumer gives p50/p99 (goals, issue 19: p99 < 100 ms at 200
events/s, < 250 ms at 1,000 events/s); the records are decoded after the timed window.

By default the bench starts two local Kafkas, one secured (TLS + SCRAM-SHA-512 + ACLs) and one
plaintext, runs each throughput step on the secured one and then on the plaintext one (so that a
change in the machine's load falls on both alike), and prints secured / plaintext for the rates
and the CPU costs: what security costs. The latency part runs on the secured Kafka only.
`--no-plaintext` skips the plaintext Kafka; `--bootstrap` (with `--kafka-ca` and
`--kafka-credentials` for a secured cluster) measures once, on that cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broker.bench import bench_kafka, interleaved_costs, median_costs
from broker.errors import BrokerError
from broker.kafka.credentials import OPERATOR, credential_path
from broker.kafka.local import ClusterAccess
from broker.kafka.operator import provision

_WESTMINSTER = "council.E09000033"
_POLICE = "police.met"
_PASS_TOPIC = "bench.passthrough"


class BenchOptionsError(BrokerError):
    """The options name an external cluster inconsistently."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=20000, help="events for the throughput runs")
    add_cluster_arguments(parser)
    parser.add_argument(
        "--no-plaintext",
        action="store_true",
        help="skip the plaintext local Kafka (no secured / plaintext comparison)",
    )
    parser.add_argument("--partitions", type=int, default=3, help="partitions per topic")
    parser.add_argument(
        "--rate",
        type=float,
        action="append",
        default=None,
        help="latency run: events per second (repeatable; default 200 and 1000, issue 19's "
        "goals: p99 < 100 ms at 200/s, < 250 ms at 1,000/s)",
    )
    parser.add_argument(
        "--latency-seconds", type=float, default=12.0, help="latency run: how long to publish"
    )
    parser.add_argument(
        "--flush-bug",
        action="store_true",
        help="also measure the fan-out pass-through and the router without the workaround for "
        "kafka-python's stuck flush (docs/performance.md): before / after",
    )


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """--bootstrap, --kafka-ca and --kafka-credentials: an external cluster (see `_external`)."""
    parser.add_argument(
        "--bootstrap",
        default=None,
        help="use this Kafka (host:port) instead of starting local ones: one measurement, "
        "PLAINTEXT unless --kafka-ca and --kafka-credentials are given",
    )
    parser.add_argument(
        "--kafka-ca",
        type=Path,
        default=None,
        metavar="FILE",
        help="with --bootstrap: the secured cluster's CA certificate (PEM)",
    )
    parser.add_argument(
        "--kafka-credentials",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --bootstrap: a directory holding operator.json; the bench issues the "
        "credentials of its own principals into it",
    )


Rate = tuple[float, float]  # events per second, CPU microseconds per event

DEFAULT_RATES = (200.0, 1000.0)


def latency_goal_ms(rate: float) -> float:
    """Issue 19's end-to-end p99 goal at `rate` events/s: 100 ms up to 200/s, else 250 ms."""
    return 100.0 if rate <= 200 else 250.0

# Records the router writes per child.missing.started event: the police forward, the national
# statistics forward and the audit record. The bench checks the forwards against the router's
# own count in the same run.
ROUTER_WRITES = 3


@dataclass(frozen=True)
class Throughput:
    passthrough: Rate
    router: Rate


def run(args: argparse.Namespace) -> int:
    external = _external(args)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as kafkas:
        scratch = Path(tmp)
        if external is not None:
            clusters = [external]
            mode = "secured" if external.secured else "plaintext"
            note = f"one measurement, on the external {mode} Kafka (no comparison)"
        else:
            modes = [True] if args.no_plaintext else [True, False]
            clusters = [
                kafkas.enter_context(bench_kafka(None, scratch / f"kafka-{n}", secure=secure))
                for n, secure in enumerate(modes)
            ]
            note = (
                "secured only (--no-plaintext)"
                if args.no_plaintext
                else "each step on the secured Kafka, then on the plaintext one"
            )
        print(
            f"router benchmark: {args.events} child.missing.started events, "
            f"{args.partitions} partitions; {note}",
            flush=True,
        )
        deployments = [
            _Deployment.make(cluster, scratch / f"deployment-{n}", args.partitions)
            for n, cluster in enumerate(clusters)
        ]
        figures = _measure(deployments, args)
    if len(figures) == 2:
        print(comparison(figures[0], figures[1]))
        print(
            "  (the cost of TLS + SCRAM-SHA-512 + ACLs: events/s below 1, CPU µs/event above 1; "
            "the CPU is this process's, the broker's own TLS work shows in events/s only)"
        )
    return 0


def comparison(secured: Throughput, plaintext: Throughput) -> str:
    """The `secured / plaintext` line: rate and CPU-per-event ratios of router and pass-through."""
    router = [s / p for s, p in zip(secured.router, plaintext.router, strict=True)]
    copy = [s / p for s, p in zip(secured.passthrough, plaintext.passthrough, strict=True)]
    return (
        f"secured / plaintext: router {router[0]:.2f} (events/s), {router[1]:.2f} "
        f"(CPU µs/event); pass-through {copy[0]:.2f}, {copy[1]:.2f}"
    )


def _external(args: argparse.Namespace) -> ClusterAccess | None:
    """The external cluster the options name, checked; None to start local ones."""
    ca, credentials = args.kafka_ca, args.kafka_credentials
    if not args.bootstrap:
        if ca is not None or credentials is not None:
            raise BenchOptionsError(
                "--kafka-ca and --kafka-credentials describe an external cluster: "
                "give its address with --bootstrap too"
            )
        return None
    if (ca is None) != (credentials is None):
        raise BenchOptionsError(
            "a secured external cluster needs both --kafka-ca FILE and --kafka-credentials DIR "
            "(leave out both for a PLAINTEXT one)"
        )
    if ca is None or credentials is None:
        return ClusterAccess(args.bootstrap)
    if not ca.is_file():
        raise BenchOptionsError(f"--kafka-ca: {ca} is not a file: give the cluster's CA (PEM)")
    if not credential_path(credentials, OPERATOR).is_file():
        raise BenchOptionsError(
            f"--kafka-credentials: {credentials} holds no {OPERATOR}.json: give the directory "
            "holding the operator's credential (a local Kafka's is <data-dir>/client)"
        )
    return ClusterAccess(args.bootstrap, ca, credentials)


@dataclass(frozen=True)
class _Deployment:
    """The demo deployment on one cluster, provisioned, with the benchmark's events published."""

    mode: str  # "secured" or "plaintext"
    config_path: Path
    config: Any
    ids: dict[str, str]

    @classmethod
    def make(
        cls,
        access: ClusterAccess,
        directory: Path,
        partitions: int,
        router: dict[str, Any] | None = None,
    ) -> _Deployment:
        """`router`: router settings added to the bench's own (e.g. a metrics port)."""
        from broker.config import load_config
        from broker.kafka.client import KafkaClients, TopicSpec
        from broker.router.service import topic_specs

        directory.mkdir()
        config_path, ids = _deployment(directory, access, partitions, router)
        config = load_config(config_path)
        provision(config)  # credentials, topics and ACLs on a secured cluster
        # The harness (publishing, the pass-through, the latency reader) runs as the operator;
        # the router as its own principal.
        clients = KafkaClients(config.kafka, OPERATOR)
        clients.ensure_topics([*topic_specs(config), TopicSpec(_PASS_TOPIC, partitions)])
        mode = "secured" if access.secured else "plaintext"
        security = " (TLS + SCRAM-SHA-512 + ACLs)" if access.secured else ""
        print(f"  {mode} Kafka{security} at {access.bootstrap_servers}", flush=True)
        return cls(mode, config_path, config, ids)


def _measure(deployments: list[_Deployment], args: argparse.Namespace) -> list[Throughput]:
    """Pass-through and router throughput on each deployment, step by step in turn (so that a
    change in the machine's load falls on all of them alike); then end to end on the first."""
    for deployment in deployments:
        _publish_presigned(deployment, args.events)
    passthrough = []
    for deployment in deployments:
        passthrough.append(_rate(_passthrough(deployment.config, _issuer(deployment), args.events)))
        _print_rate(deployment.mode, "pass-through copy", passthrough[-1])
    fanout = []
    for deployment in deployments:
        fanout.append(
            _rate(
                _passthrough(
                    deployment.config, _issuer(deployment), args.events, writes=ROUTER_WRITES
                )
            )
        )
        _print_rate(deployment.mode, f"fan-out 1:{ROUTER_WRITES}", fanout[-1])
    pipeline = []
    for deployment in deployments:
        pipeline.append(
            _rate(
                _passthrough(
                    deployment.config,
                    _issuer(deployment),
                    args.events,
                    writes=ROUTER_WRITES,
                    work=_floor_work(deployment.config),
                )
            )
        )
        _print_rate(deployment.mode, "floor pipeline", pipeline[-1])
    routed = []
    for deployment in deployments:
        marks, forwards = _router_throughput(deployment.config, args.events)
        routed.append(_rate(marks))
        _print_rate(deployment.mode, "router", routed[-1])
        if forwards != 2 * args.events:
            print(
                f"  {deployment.mode:<9} note: the router forwarded {forwards} records for "
                f"{args.events} events, not {ROUTER_WRITES - 1} each: the fan-out differs",
                flush=True,
            )
    floor_parts = _floor_parts()
    print(
        "  floor parts (µs per event, this process): "
        + ", ".join(f"{label} {cost:.1f}" for label, cost in floor_parts.items()),
        flush=True,
    )
    crypto = sum(floor_parts.values())
    for deployment, copy, spread, in_pipeline, router in zip(
        deployments, passthrough, fanout, pipeline, routed, strict=True
    ):
        ratio, cpu_ratio = router[0] / copy[0], copy[1] / router[1]
        floor = spread[1] + crypto
        mode = deployment.mode
        lines = [
            f"{'ratio':<17} : {ratio:9.2f}   router / 1:1 pass-through by events/s; "
            f"by CPU time per event {cpu_ratio:.2f}",
            f"{'floor':<17} : {floor:9.0f} µs CPU/event (fan-out {spread[1]:.0f} "
            f"+ verify + 2 signs + decode {crypto:.0f})",
            f"{'router / floor':<17} : {router[1] / floor:9.2f}   "
            f"(CPU per event; goal <= 1.5: {_ok(router[1] / floor <= 1.5)})",
            f"{'router / fan-out':<17} : {router[1] / spread[1]:9.2f}   (CPU per event)",
            f"{'router / pipeline':<17} : {router[1] / in_pipeline[1]:9.2f}   (CPU per event, "
            f"against the floor pipeline: the floor's work done inside the fan-out, "
            f"{in_pipeline[1] - spread[1]:.0f} µs there against {crypto:.0f} measured alone)",
        ]
        print("\n".join(f"  {mode:<9} {line}" for line in lines), flush=True)
    if args.flush_bug:
        _flush_bug(deployments, args.events, fanout, routed)
    first = deployments[0]
    only = f"; {first.mode} Kafka only" if len(deployments) > 1 else ""
    for rate in args.rate or DEFAULT_RATES:
        latencies, lost = _latency(
            first.config_path, first.config, first.ids, rate=rate, seconds=args.latency_seconds
        )
        p50 = statistics.median(latencies) if latencies else float("nan")
        p99 = _percentile(latencies, 0.99)
        goal = latency_goal_ms(rate)
        print(
            f"  {first.mode:<9} end to end at {rate:.0f} events/s for "
            f"{args.latency_seconds:.0f} s ({len(latencies)} events, {lost} not seen): "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (goal p99 < {goal:.0f} ms: "
            f"{_ok(p99 < goal and not lost)}){only}",
            flush=True,
        )
    return [Throughput(c, r) for c, r in zip(passthrough, routed, strict=True)]


def _flush_bug(
    deployments: list[_Deployment], events: int, fanout: list[Rate], routed: list[Rate]
) -> None:
    """The fan-out pass-through and the router again, on fresh events, with kafka-python's
    stuck flush left in place (`clear_stuck_flush=False`): CPU per event before / after."""
    for deployment, spread, router in zip(deployments, fanout, routed, strict=True):
        issuer = _issuer(deployment)
        buggy_spread = _rate(
            _passthrough(
                deployment.config,
                issuer,
                events,
                writes=ROUTER_WRITES,
                clear_stuck_flush=False,
            )
        )
        _publish_presigned(deployment, events, tag="bug")
        buggy_router = _rate(
            _router_throughput(deployment.config, events, clear_stuck_flush=False)[0]
        )
        for label, bug, fixed in (
            (f"fan-out 1:{ROUTER_WRITES}", buggy_spread, spread),
            ("router", buggy_router, router),
        ):
            print(
                f"  {deployment.mode:<9} {label:<17} : {bug[1]:6.0f} µs CPU/event without the "
                f"flush workaround, {fixed[1]:.0f} with it ({bug[0]:.0f} / {fixed[0]:.0f} "
                f"events/s): x{bug[1] / fixed[1]:.2f}",
                flush=True,
            )


def _floor_parts(events: int = 2000, repeat: int = 5) -> dict[str, float]:
    """What the router must do per event besides Kafka, each at its bare cost: decode the
    ingress envelope, verify its issuer signature, sign two forwards. CPU µs of this thread
    (like the rates' CPU figures, and unlike wall clock unmoved by other processes), median of
    `repeat` interleaved rounds of `events` calls."""
    from broker.bench.envelope import EVENT
    from broker.envelope import Envelope, canonical, generate_key, issue, load_signing_key
    from broker.schemas import SchemaRegistry

    registry = SchemaRegistry.default()  # one, as in the router
    with tempfile.TemporaryDirectory() as tmp:
        start = datetime(2026, 1, 1, tzinfo=UTC)
        key = load_signing_key(generate_key(_WESTMINSTER, Path(tmp), valid_from=start)[0])
    envelope = issue(EVENT, issuer=_WESTMINSTER, key=key, registry=registry)
    data = envelope.to_bytes(registry)
    signed = canonical.issuer_signing_input(
        envelope.header.to_bytes(), envelope.digests, version=envelope.header.version
    )
    public = key.public_key_info()
    actions: dict[str, Callable[[], object]] = {
        "decode": lambda: Envelope.from_bytes(data, registry),
        "verify": lambda: public.verify(envelope.signature, signed),
        "sign": lambda: key.sign(signed),
    }
    costs = median_costs(interleaved_costs(actions, events, repeat))
    return {"decode": costs["decode"], "verify": costs["verify"], "2 x sign": 2 * costs["sign"]}


def _floor_work(config: Any) -> Callable[[bytes], object]:
    """The floor's work on one ingress record, as `_floor_parts` times it but with the router's
    own keys: decode the envelope, verify its issuer signature, sign two forwards. Run inside
    the fan-out pass-through (the floor pipeline), it costs what it costs beside a busy Kafka
    on the same cores, as the router's work does; `_floor_parts` times it on a quiet process."""
    from broker.envelope import Envelope, canonical
    from broker.envelope.keys import ROLE_ISSUER
    from broker.router.service import build_core

    core = build_core(config)
    keys, router_key, registry = core.keys, core.router_key, core.registry

    def work(value: bytes) -> None:
        envelope = Envelope.from_bytes(value, registry)
        header = envelope.header
        key = keys.lookup(header.issuer, header.key_id, header.issued_at, role=ROLE_ISSUER)
        signed = canonical.issuer_signing_input(
            header.to_bytes(), envelope.digests, version=header.version
        )
        if not key.verify(envelope.signature, signed):
            raise BrokerError("floor pipeline: an issuer signature did not verify")
        router_key.sign(signed)
        router_key.sign(signed)

    return work


def _issuer(deployment: _Deployment) -> str:
    return deployment.ids[_WESTMINSTER]


def _ok(passed: bool) -> str:
    return "met" if passed else "MISSED"


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _deployment(
    directory: Path,
    bootstrap: ClusterAccess,
    partitions: int,
    router: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, str]]:
    """The demo deployment with agency ids no earlier run used (so `--bootstrap` can be reused):
    every id gets a suffix, in the registry and in the example agreements alike."""
    from broker.scaffold import DEMO_AGENCIES, EXAMPLE_AGREEMENTS, write_deployment

    suffix = uuid.uuid4().hex[:8]
    ids = {agency: f"{agency}_{suffix}" for agency in DEMO_AGENCIES}
    pattern = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, ids)) + r")(?![\w-])")
    agreements = directory / "agreements"
    agreements.mkdir()
    for source in EXAMPLE_AGREEMENTS.glob("*.yaml"):
        text = pattern.sub(lambda m: ids[m.group(1)], source.read_text())
        (agreements / source.name).write_text(text)
    config = write_deployment(
        directory,
        bootstrap_servers=bootstrap,
        agencies={ids[a]: name for a, name in DEMO_AGENCIES.items()},
        agreements_dir=agreements,
        partitions=partitions,
        router={"group_id": f"bench-router-{suffix}", "instance_id": "bench", **(router or {})},
    )
    return config, ids


def _event(number: int, tag: str) -> dict[str, Any]:
    from broker.bench.envelope import EVENT

    child = f"bench-{tag}-{number:06d}"
    return {**EVENT, "subject": child, "fields": {**EVENT["fields"], "la_child_id": child}}


def _publish_presigned(
    deployment: _Deployment, count: int, tag: str = "tp", *, transactional: bool = False
) -> None:
    """Sign first, then produce as fast as Kafka takes them (publishing is not measured).

    `transactional`: all in one Kafka transaction, so that a `read_committed` consumer (the
    router) sees the whole backlog at once, at the commit, and none of it before."""
    from broker.config import topic_ingress
    from broker.envelope import issue
    from broker.kafka.client import KafkaClients
    from broker.publish import agency_key
    from broker.schemas import SchemaRegistry

    config, issuer = deployment.config, _issuer(deployment)
    registry = SchemaRegistry.default()
    key = agency_key(config, issuer)
    started = time.monotonic()
    records = []
    for number in range(count):
        envelope = issue(_event(number, tag), issuer=issuer, key=key, registry=registry)
        records.append(((envelope.subject or "").encode(), envelope.to_bytes(registry)))
    clients = KafkaClients(config.kafka, OPERATOR)
    if transactional:
        batch = clients.bounded_transactional_producer(
            f"bench-publish-{uuid.uuid4().hex[:8]}", timeout_s=120.0
        )
        batch.start()
        try:
            batch.begin()
            for subject, value in records:
                batch.send(topic_ingress(issuer), key=subject, value=value)
            batch.commit()
        finally:
            batch.close()
    else:
        producer = clients.producer()
        try:
            for subject, value in records:
                producer.send(topic_ingress(issuer), key=subject, value=value)
            producer.flush()
        finally:
            producer.close()
    took = time.monotonic() - started
    print(f"  {deployment.mode:<9} published {count} events in {took:.1f} s", flush=True)


Mark = tuple[float, float, int]  # (wall clock, this process's CPU time, events done)


def _mark(done: int) -> Mark:
    return time.monotonic(), time.process_time(), done


def _rate(marks: list[Mark]) -> Rate:
    """Events per second, and CPU microseconds per event (all threads of this process), between
    the first and the last committed batch. The CPU figure hardly moves when other processes
    compete for the cores, the wall-clock one does."""
    if len(marks) < 2:
        raise RuntimeError("too few batches to measure: raise --events")
    (t0, c0, n0), (t1, c1, n1) = marks[0], marks[-1]
    return (n1 - n0) / (t1 - t0), (c1 - c0) / (n1 - n0) * 1e6


def _print_rate(mode: str, label: str, rate: Rate) -> None:
    print(
        f"  {mode:<9} {label:<17} : {rate[0]:9.0f} events/s, {rate[1]:6.0f} µs CPU/event",
        flush=True,
    )


def _passthrough(
    config: Any,
    issuer: str,
    total: int,
    *,
    writes: int = 1,
    clear_stuck_flush: bool = True,
    work: Callable[[bytes], object] | None = None,
) -> list[Mark]:
    """Consume ingress and produce the same bytes `writes` times per record, in transactions
    like the router's (a fresh consumer group: it reads all of ingress from the start); with
    `work`, call it on each record's value first (`_floor_work`)."""
    from kafka.structs import OffsetAndMetadata

    from broker.config import topic_ingress
    from broker.kafka.client import KafkaClients
    from broker.router.service import consumer_options, producer_options

    settings = config.router
    clients = KafkaClients(config.kafka, OPERATOR)
    name = f"bench-pass-{uuid.uuid4().hex[:8]}"
    producer = clients.bounded_transactional_producer(
        name,
        timeout_s=settings.kafka_timeout_s,
        clear_stuck_flush=clear_stuck_flush,
        **producer_options(settings),
    )
    producer.start()
    consumer = clients.consumer(group_id=name, group_instance_id=name, **consumer_options(settings))
    clients.subscribe(consumer, [topic_ingress(issuer)])  # partitions loaded: see its docstring
    marks: list[Mark] = []
    done = 0
    try:
        while done < total:
            polled = consumer.poll(timeout_ms=settings.poll_timeout_ms)
            if not polled:
                continue
            producer.begin()
            offsets = {}
            for tp, records in polled.items():
                for record in records:
                    if work is not None:
                        work(record.value)
                    for _ in range(writes):
                        producer.send(_PASS_TOPIC, key=record.key, value=record.value)
                offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
            producer.send_offsets(offsets, consumer.group_metadata())
            producer.commit()
            done += sum(len(records) for records in polled.values())
            marks.append(_mark(done))
    finally:
        consumer.close(autocommit=False)
        producer.close()
    return marks


def _router_throughput(
    config: Any, total: int, *, clear_stuck_flush: bool = True
) -> tuple[list[Mark], int]:
    """The routing service in this process, timed at each committed batch, until it has routed
    `total` more events; and how many records it forwarded."""
    from broker.router.service import RouterService

    marks: list[Mark] = []

    class TimedRouter(RouterService):
        def __init__(self, config: Any) -> None:
            super().__init__(config)
            if not clear_stuck_flush:
                self.clients = _with_stuck_flush(config)

        def _count(self, results: Any, received: float) -> None:
            super()._count(results, received)
            marks.append(_mark(self.stats.records))

    service = TimedRouter(config)
    failure: list[BaseException] = []

    def route() -> None:
        try:
            service.run()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=route, daemon=True)
    thread.start()
    while service.stats.records < total and thread.is_alive():
        time.sleep(0.05)
    service.stop()
    thread.join()
    if failure:
        raise failure[0]
    return marks, service.stats.forwarded


def _with_stuck_flush(config: Any) -> Any:
    """The router's `KafkaClients`, but its transactional producers keep kafka-python's stuck
    flush."""
    from broker.kafka.client import KafkaClients
    from broker.kafka.credentials import principal_of

    class WithStuckFlush(KafkaClients):
        def bounded_transactional_producer(self, *args: Any, **kwargs: Any) -> Any:
            return super().bounded_transactional_producer(
                *args, **{**kwargs, "clear_stuck_flush": False}
            )

    return WithStuckFlush(config.kafka, principal_of(config.router.id))


def _latency(
    config_path: Path, config: Any, ids: dict[str, str], *, rate: float, seconds: float
) -> tuple[list[float], int]:
    """Publish at `rate` for `seconds` with the router as its own process; return the
    publish-to-visible times (ms) of the police feed, and how many events never showed.

    The bench's own work stays out of the timed window, so that on a small machine it does not
    take the cores the router needs: the events are signed before it, and the reader only notes
    when each police feed record became readable; it decodes them after the window. (Signing
    each event as it was published and decoding each forward as it arrived took 0.3-0.6 of a
    core at 200 events/s on two cores, and the router's hop looked several times slower.)
    """
    from kafka import TopicPartition

    from broker.config import topic_feed, topic_ingress
    from broker.envelope import ForwardedEnvelope, issue
    from broker.kafka.client import KafkaClients
    from broker.publish import agency_key
    from broker.schemas import SchemaRegistry

    issuer = ids[_WESTMINSTER]
    registry = SchemaRegistry.default()
    key = agency_key(config, issuer)
    producer = KafkaClients(config.kafka, OPERATOR).producer()
    feed = topic_feed(ids[_POLICE])
    reader = KafkaClients(config.kafka, OPERATOR).consumer(group_id=None)
    partitions = [TopicPartition(feed, p) for p in sorted(reader.partitions_for_topic(feed))]
    reader.assign(partitions)
    reader.seek_to_end(*partitions)
    for tp in partitions:
        reader.position(tp)
    arrivals: list[tuple[float, bytes]] = []  # (when readable, feed record value)
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for records in reader.poll(timeout_ms=20).values():
                now = time.monotonic()
                arrivals.extend((now, record.value) for record in records)

    def signed(number: int, tag: str) -> tuple[str, bytes, bytes]:
        envelope = issue(_event(number, tag), issuer=issuer, key=key, registry=registry)
        return envelope.header.event_id, (envelope.subject or "").encode(), envelope.to_bytes()

    def seen() -> dict[str, float]:
        # Matched by event id: feed record keys are per-recipient pseudonyms, not the subject.
        found: dict[str, float] = {}
        for at, value in list(arrivals):
            found.setdefault(ForwardedEnvelope.from_bytes(value, registry).header.event_id, at)
        return found

    router = subprocess.Popen(
        [sys.executable, "-m", "broker.cli", "route", "--config", str(config_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    reader_thread = threading.Thread(target=read, daemon=True)
    reader_thread.start()
    sent: dict[str, float] = {}
    try:
        # Warm up until the router (a process of its own) forwards.
        warm = [signed(number, "warm") for number in range(10)]
        for _, subject, value in warm:
            producer.send(topic_ingress(issuer), key=subject, value=value)
        producer.flush()
        deadline = time.monotonic() + 90
        while not seen().keys() >= {event_id for event_id, _, _ in warm}:
            if time.monotonic() > deadline or router.poll() is not None:
                raise RuntimeError("the router did not start forwarding")
            time.sleep(0.2)
        events = [signed(number, "lat") for number in range(int(rate * seconds))]
        start = time.monotonic()
        for number, (event_id, subject, value) in enumerate(events):
            due = start + number / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sent[event_id] = time.monotonic()
            producer.send(topic_ingress(issuer), key=subject, value=value)
        producer.flush()
        deadline = time.monotonic() + 30
        while len(arrivals) < len(sent) + len(warm) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # anything still on its way
    finally:
        stop.set()
        reader_thread.join()
        reader.close(autocommit=False)
        producer.close()
        router.send_signal(signal.SIGTERM)
        try:
            router.wait(timeout=30)
        except subprocess.TimeoutExpired:
            router.kill()
            router.wait()
    seen_at = seen()
    latencies = [(seen_at[k] - t) * 1000 for k, t in sent.items() if k in seen_at]
    return latencies, len(sent) - len(latencies)
