"""`broker bench takeover`: time for a new owner to take over a partition, against history size.

On one local Kafka, a deployment with one partition per topic routes N signed events in small
transactions (`--batch`, so that `router.state` gets a long history: a few records per
transaction), then a router taking over every partition is timed from its assignment to
partitions ready (state rebuilt, resumed); then 9N more events and the same again (10N). Each
takeover is timed `--repeat` times (median) twice over the same history: with snapshots (a new
owner reads the latest snapshot and what follows it) and with snapshots off, which reads the
whole of `router.state` as routers before snapshots did. Printed: takeover times, records read,
and the 10N / N ratios (goal with snapshots: <= 1.5).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.bench import bench_kafka
from broker.kafka.credentials import OPERATOR
from broker.kafka.local import ClusterAccess

_WESTMINSTER = "council.E09000033"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=1000, help="N: the smaller history")
    parser.add_argument(
        "--batch", type=int, default=5, help="records per routing transaction (history length)"
    )
    parser.add_argument(
        "--snapshot-every", type=int, default=500, help="router.snapshot_every_records"
    )
    parser.add_argument("--repeat", type=int, default=3, help="takeovers timed per figure")


@dataclass(frozen=True)
class Takeover:
    seconds: float  # median, assignment to partitions ready
    records: int  # router.state records read


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp, bench_kafka(None, Path(tmp) / "k") as kafka:
        config = _deployment(Path(tmp) / "deployment", kafka, args)
        print(
            f"takeover benchmark: histories of {args.events} and {10 * args.events} "
            f"child.missing.started events routed {args.batch} per transaction, snapshot every "
            f"{args.snapshot_every} records; each takeover timed {args.repeat}x (median)",
            flush=True,
        )
        figures: dict[tuple[int, bool], Takeover] = {}
        routed = 0
        for history in (args.events, 10 * args.events):
            started = time.monotonic()
            _publish(config, routed, history - routed)
            _route(config, history - routed)
            routed = history
            size = _state_size(config)
            print(
                f"  history {history:>6} events: router.state {size} records "
                f"(built in {time.monotonic() - started:.0f} s)",
                flush=True,
            )
            for snapshots in (True, False):
                figure = _takeover(config, snapshots, args.repeat)
                figures[(history, snapshots)] = figure
                label = "with snapshots" if snapshots else "full replay   "
                print(
                    f"    {label}: takeover {figure.seconds * 1000:7.1f} ms, "
                    f"{figure.records} records read",
                    flush=True,
                )
    small, large = args.events, 10 * args.events
    ratio = figures[(large, True)].seconds / figures[(small, True)].seconds
    old = figures[(large, False)].seconds / figures[(small, False)].seconds
    verdict = "met" if ratio <= 1.5 else "MISSED"
    print(f"10x history / 1x, with snapshots : {ratio:.2f} (goal <= 1.5: {verdict})")
    print(f"10x history / 1x, full replay    : {old:.2f} (the behaviour before snapshots)")
    return 0


def _deployment(directory: Path, access: ClusterAccess, args: argparse.Namespace) -> Any:
    from broker.config import load_config
    from broker.kafka.client import KafkaClients
    from broker.kafka.operator import provision
    from broker.router.service import topic_specs
    from broker.scaffold import DEMO_AGENCIES, EXAMPLE_AGREEMENTS, write_deployment

    directory.mkdir()
    suffix = uuid.uuid4().hex[:8]
    path = write_deployment(
        directory,
        bootstrap_servers=access,
        agencies=dict(DEMO_AGENCIES),
        agreements_dir=EXAMPLE_AGREEMENTS,
        partitions=1,
        router={
            "group_id": f"bench-takeover-{suffix}",
            "instance_id": "bench",
            "batch_max_records": args.batch,
            "snapshot_every_records": args.snapshot_every,
        },
    )
    config = load_config(path)
    provision(config)
    KafkaClients(config.kafka, OPERATOR).ensure_topics(topic_specs(config))
    return config


def _publish(config: Any, first: int, count: int) -> None:
    from broker.bench.router import _event
    from broker.config import topic_ingress
    from broker.envelope import issue
    from broker.kafka.client import KafkaClients
    from broker.publish import agency_key
    from broker.schemas import SchemaRegistry

    registry = SchemaRegistry.default()
    key = agency_key(config, _WESTMINSTER)
    producer = KafkaClients(config.kafka, OPERATOR).producer()
    try:
        for number in range(first, first + count):
            envelope = issue(_event(number, "to"), issuer=_WESTMINSTER, key=key, registry=registry)
            value = envelope.to_bytes(registry)
            producer.send(topic_ingress(_WESTMINSTER), key=b"bench", value=value)
        producer.flush()
    finally:
        producer.close()


def _route(config: Any, count: int) -> None:
    """Route `count` new events with the routing service in this process."""
    from broker.router.service import RouterService

    service = RouterService(config)
    done = _in_thread(service, lambda: service.stats.records >= count)
    if done is not None:
        raise done


def _takeover(config: Any, snapshots: bool, repeat: int) -> Takeover:
    from broker.router.service import RouterService

    if not snapshots:
        router = config.router.model_copy(update={"snapshot_every_records": 0})
        config = config.model_copy(update={"router": router})
    times: list[float] = []
    records = 0

    class TimedRouter(RouterService):
        assigned_at: float | None = None
        ready_at: float | None = None

        def assigned(self, partitions: Any) -> None:
            if self.assigned_at is None:
                self.assigned_at = time.perf_counter()
            super().assigned(partitions)

        def _recover(self, consumer: Any) -> None:
            super()._recover(consumer)
            self.ready_at = time.perf_counter()

    for _ in range(repeat):
        service = TimedRouter(config)
        failure = _in_thread(service, lambda s=service: s.ready_at is not None)
        if failure is not None:
            raise failure
        assert service.assigned_at is not None and service.ready_at is not None
        times.append(service.ready_at - service.assigned_at)
        records = service.stats.recovery_records
    return Takeover(statistics.median(times), records)


def _in_thread(service: Any, done: Any) -> BaseException | None:
    failure: list[BaseException] = []

    def route() -> None:
        try:
            service.run()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=route, daemon=True)
    thread.start()
    while not done() and thread.is_alive():
        time.sleep(0.01)
    service.stop()
    thread.join()
    return failure[0] if failure else None


def _state_size(config: Any) -> int:
    """Records in `router.state` (its end offset: nothing of it is compacted in a short run)."""
    from kafka import TopicPartition

    from broker.config import TOPIC_ROUTER_STATE
    from broker.kafka.client import KafkaClients

    consumer = KafkaClients(config.kafka, OPERATOR).consumer(group_id=None)
    try:
        tp = TopicPartition(TOPIC_ROUTER_STATE, 0)
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close(autocommit=False)
