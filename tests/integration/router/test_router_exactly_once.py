"""Acceptance 3 and 4: exactly once across SIGKILLs, and two routers sharing the partitions.

Expectations per event kind are written out from the example agreements
(`router_helpers.event_kinds`); the feeds are read with `read_committed` (`FeedReader`), so
anything an aborted transaction wrote is invisible and anything committed twice is counted twice.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import KafkaError
from router_helpers import (
    BASE_AGENCIES,
    AuditTail,
    Deployment,
    RouterProcess,
    check_exactly_once,
    create_topics,
    event_stream,
    make_deployment,
    metric,
    router_thread,
    scrape,
    wait_for_decisions,
)

from broker.kafka.client import KafkaClients, TransactionalProducer
from broker.kafka.credentials import OPERATOR
from broker.kafka.local import ClusterAccess
from broker.router.core import RouterCore

pytestmark = pytest.mark.integration


def _produce_slowly(
    dep: Deployment, records: list[tuple[str, bytes, bytes]], seconds: float
) -> None:
    producer = KafkaClients(dep.config.kafka, OPERATOR).producer()
    try:
        chunk = 100
        pause = seconds / max(1, len(records) // chunk)
        for start in range(0, len(records), chunk):
            for topic, key, value in records[start : start + chunk]:
                producer.send(topic, key=key, value=value)
            producer.flush()
            time.sleep(pause)
    finally:
        producer.close()


@pytest.fixture
def processes() -> Iterator[list[RouterProcess]]:
    """Router processes a test starts; killed at the end whatever happened."""
    started: list[RouterProcess] = []
    yield started
    for proc in started:
        proc.cleanup()


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_repeats_nothing(
    tmp_path: Path, kafka_access: ClusterAccess, processes: list[RouterProcess]
) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    dep = make_deployment(tmp_path / "deployment", kafka_access)
    create_topics(dep)
    records, permitted = event_stream(dep, 5000, duplicates=50, seed=seed)
    feeder = threading.Thread(target=_produce_slowly, args=(dep, records, 12.0))
    feeder.start()
    tail = AuditTail(dep)
    kills = 0
    try:
        while kills < 3 or feeder.is_alive():
            router = RouterProcess(dep.config_path, "r1", tmp_path / f"router-{kills}.log")
            processes.append(router.start())
            # Kill only once the router is working: a random moment after its next commit.
            tail.wait_beyond(tail.drain(), timeout=90, router=router)
            time.sleep(rng.uniform(0.0, 1.5))
            assert router.running, router.output()
            router.kill()
            kills += 1
            if kills >= 6:
                break
        feeder.join()
        final = RouterProcess(dep.config_path, "r1", tmp_path / "router-final.log", idle_exit=3)
        processes.append(final.start())
        assert final.wait(timeout=180) == 0, final.output()
    finally:
        tail.close()
        feeder.join()
    assert kills >= 3
    check_exactly_once(dep, permitted, len(records), duplicates=50)


@pytest.mark.slow
def test_two_routers_split_the_partitions_and_route_everything_once(
    tmp_path: Path, kafka_access: ClusterAccess, processes: list[RouterProcess]
) -> None:
    # Port 0: each router picks a free metrics port and logs it.
    dep = make_deployment(tmp_path / "deployment", kafka_access, router={"metrics_port": 0})
    routers = [
        RouterProcess(dep.config_path, f"r-{name}", tmp_path / f"router-{name}.log")
        for name in ("a", "b")
    ]
    for router in routers:
        processes.append(router.start())
    ports = [router.metrics_port() for router in routers]
    # Wait until the group has settled with both members owning partitions.
    partitions = len(BASE_AGENCIES) * dep.config.kafka.topics.partitions
    deadline = time.monotonic() + 90
    while True:
        owned = []
        for port in ports:
            try:
                owned.append(metric(scrape(port), "broker_partitions_owned"))
            except OSError:
                owned.append(0.0)
        if all(owned) and sum(owned) == partitions:
            break
        assert time.monotonic() < deadline, f"group did not settle: {owned}"
        time.sleep(0.3)

    records, permitted = event_stream(dep, 600, duplicates=10, seed=1)
    _produce_slowly(dep, records, 0.0)
    tail = AuditTail(dep)
    try:
        tail.wait_beyond(len(records) - 1, timeout=120)
    finally:
        tail.close()
    routed = []
    for router, port in zip(routers, ports, strict=True):
        routed.append(metric(scrape(port), "broker_transactions_total", result="commit"))
        assert router.terminate() == 0, router.output()
    # Both did part of the work, and together they decided every record once.
    counts = [_records_routed(r.output()) for r in routers]
    assert all(routed) and all(counts), counts
    assert sum(counts) == len(records)
    check_exactly_once(dep, permitted, len(records), duplicates=10)


def _records_routed(output: str) -> int:
    """From the router's last line: `router stopped: N record(s) in ...`."""
    for line in reversed(output.splitlines()):
        if line.startswith("router stopped:"):
            return int(line.split()[2])
    raise AssertionError(f"router did not report its work:\n{output}")


def test_aborted_transactions_are_retried_without_repeats(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed commit aborts the batch; the router rebuilds its state from the changelog and
    routes the batch again: nothing is lost, repeated, or left out of the audit chains."""
    dep = deployment
    create_topics(dep)
    records, permitted = event_stream(dep, 400, duplicates=5, seed=2)
    commits = Counter[str]()
    commit = TransactionalProducer.commit

    def failing_commit(self: TransactionalProducer) -> None:
        commits["calls"] += 1
        if commits["calls"] in (2, 3):  # the second and third commits fail
            raise KafkaError("injected commit failure")
        commit(self)

    monkeypatch.setattr(TransactionalProducer, "commit", failing_commit)
    with router_thread(dep) as service:
        _produce_slowly(dep, records, 2.0)
        wait_for_decisions(dep, len(records))
    aborts = service.metrics.registry.get_sample_value(
        "broker_transactions_total", {"result": "abort"}
    )
    assert aborts == 2
    check_exactly_once(dep, permitted, len(records), duplicates=5)


def test_a_batch_that_outlives_the_transaction_timeout_is_routed_in_smaller_ones(
    tmp_path: Path, kafka_access: ClusterAccess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Routing slowed down (a loaded machine: 100 ms a record) with batches of 150 under a
    1 s transaction timeout: a whole batch takes 15 s, longer than the timeout plus Kafka's
    10 s sweep for timed-out transactions, so the coordinator aborts every one. Routed again
    whole it would fail for ever (this test then times out); the router halves the batch after
    each failure until one commits."""
    dep = make_deployment(
        tmp_path / "deployment",
        kafka_access,
        partitions=1,  # one partition: each poll gets the whole batch
        router={"batch_max_records": 150, "transaction_timeout_ms": 1000},
    )
    create_topics(dep)
    records, permitted = event_stream(dep, 150, duplicates=0, seed=4)
    route = RouterCore.route

    def slow_route(self: RouterCore, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.1)
        return route(self, *args, **kwargs)

    monkeypatch.setattr(RouterCore, "route", slow_route)
    _produce_slowly(dep, records, 0.0)
    with router_thread(dep) as service:
        wait_for_decisions(dep, len(records), timeout=240)
    aborts = service.metrics.registry.get_sample_value(
        "broker_transactions_total", {"result": "abort"}
    )
    assert aborts, "no transaction failed: the test showed nothing"
    check_exactly_once(dep, permitted, len(records), duplicates=0)
