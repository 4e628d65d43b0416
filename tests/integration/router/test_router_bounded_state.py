"""Issue 14, part 7: bounded router state.

A new owner reads the latest snapshot of partition state and the records after it, so the
number of `router.state` records it reads does not grow with the history; the de-duplication
window holds at most its count; an event re-sent inside the window is a duplicate after a
takeover, one re-sent after it left the window is routed again (docs/faults.md, "Bounded
state"), and audit replay judges both the same way.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from router_helpers import (
    MET,
    WESTMINSTER,
    Deployment,
    copy_to_audit_topic,
    create_topics,
    decisions,
    decisions_by_ingress,
    event,
    make_deployment,
    publish,
    read_audit,
    read_feed,
    read_topic,
    router_thread,
    signed,
    wait_for_decisions,
)

from broker.audit import Outcome
from broker.audit.cli import replay_log
from broker.config import TOPIC_ROUTER_STATE, topic_ingress
from broker.kafka.client import KafkaClients
from broker.kafka.credentials import OPERATOR
from broker.kafka.local import ClusterAccess
from broker.router.service import RouterService
from broker.router.state import PartitionState

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCH = 5
SNAPSHOT_EVERY = 20
WINDOW = 40
# Read at a takeover with snapshots: the snapshot (one part for each of the deployment's 8
# ingress partitions), then at most SNAPSHOT_EVERY / BATCH + 1 routing transactions of one
# partition (window batch, chain head, checkpoint, maybe a subject record each), a final
# checkpoint. Nothing here depends on how many events were routed before.
BOUND = 8 + (SNAPSHOT_EVERY // BATCH + 1) * 4 + 8


def _events(dep: Deployment, start: int, count: int) -> list[dict[str, object]]:
    return [
        event("child.missing.started", f"s{i % 7}", f"{dep.suffix}-{i}", missing_type="M")
        for i in range(start, start + count)
    ]


def _takeover(dep: Deployment) -> tuple[RouterService, PartitionState]:
    """A router taking over every partition (the same instance id: no wait for the group),
    stopped once it has rebuilt their state; with the state of Westminster's partition."""
    topic = topic_ingress(dep.id(WESTMINSTER))
    with router_thread(dep) as service:
        deadline = time.monotonic() + 120
        while not service.states or service._recovering:
            assert time.monotonic() < deadline, "the router did not take over"
            time.sleep(0.05)
        state = next(s for tp, s in service.states.items() if tp.topic == topic)
    return service, state


def test_takeover_reads_a_bounded_number_of_state_records_whatever_the_history(
    tmp_path: Path, kafka_access: ClusterAccess
) -> None:
    dep = make_deployment(
        tmp_path / "deployment",
        kafka_access,
        partitions=1,
        router={
            "batch_max_records": BATCH,
            "snapshot_every_records": SNAPSHOT_EVERY,
            "dedup_window_events": WINDOW,
        },
    )
    create_topics(dep)
    published = 0
    read: dict[int, int] = {}
    for history in (30, 300):  # 10x the history
        publish(dep, WESTMINSTER, _events(dep, published, history - published))
        published = history
        with router_thread(dep):
            wait_for_decisions(dep, published)
        service, state = _takeover(dep)
        assert service.stats.recovery_start is not None  # from a snapshot, not the beginning
        read[history] = service.stats.recovery_records
        assert len(state.seen) == min(history, WINDOW)
        assert state.next_offset == history
    print(f"\n[state records read at takeover: {read}; bound {BOUND}]")
    assert all(n <= BOUND for n in read.values()), read

    # The same takeover with snapshots off (the behaviour before them) reads the whole
    # history of the partition: what the bound above is worth.
    raw = yaml.safe_load(dep.config_path.read_text())
    raw["router"]["snapshot_every_records"] = 0
    dep.config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    full, _ = _takeover(dep)
    assert full.stats.recovery_start is None
    assert full.stats.recovery_records >= 300 // BATCH * 2


def test_duplicates_inside_and_outside_the_window_after_a_takeover(
    tmp_path: Path, kafka_access: ClusterAccess
) -> None:
    dep = make_deployment(
        tmp_path / "deployment",
        kafka_access,
        partitions=1,
        router={
            "batch_max_records": BATCH,
            "snapshot_every_records": SNAPSHOT_EVERY,
            "dedup_window_events": WINDOW,
        },
    )
    create_topics(dep)
    events = _events(dep, 0, 100)
    publish(dep, WESTMINSTER, events)
    with router_thread(dep):
        wait_for_decisions(dep, 100)
    # Re-sent by the issuer (same bytes): the newest is inside the window, the oldest left it.
    inside, outside = events[-1], events[0]
    producer = KafkaClients(dep.config.kafka, OPERATOR).producer()
    try:
        for evt in (inside, outside):
            value = signed(dep, WESTMINSTER, evt).to_bytes()
            producer.send(topic_ingress(dep.id(WESTMINSTER)), key=b"k", value=value)
        producer.flush()
    finally:
        producer.close()
    with router_thread(dep) as service:  # a new owner: state from the snapshot and its tail
        wait_for_decisions(dep, 102)
    assert service.stats.recovery_start is not None
    by_ingress = decisions_by_ingress(decisions(dep))
    topic = topic_ingress(dep.id(WESTMINSTER))
    assert by_ingress[(topic, 0, 100)][0].outcome == Outcome.DUPLICATE
    assert by_ingress[(topic, 0, 101)][0].outcome == Outcome.FORWARDED
    delivered = Counter(item.event.event_id for item in read_feed(dep, MET) if item.event)
    assert delivered[str(inside["event_id"])] == 1
    assert delivered[str(outside["event_id"])] == 2  # routed again: documented
    # Audit replay keeps the same window, so it finds both decisions right.
    audit = copy_to_audit_topic(dep, read_audit(dep), "decisions")
    report = replay_log(dep.config, audit_topic=audit)
    assert report.ok, report.findings[:5]
    assert report.compared == 102


def test_window_slots_stay_bounded_when_batches_are_small(
    tmp_path: Path, kafka_access: ClusterAccess
) -> None:
    """One event per transaction and a record interval far away: without the per-partition
    transaction bound every transaction would take a new `w|` slot that compaction keeps for
    good (one key per event); with it the slots start again every SLOTS transactions."""
    slots, events = 6, 40
    dep = make_deployment(
        tmp_path / "deployment",
        kafka_access,
        partitions=1,
        router={
            "batch_max_records": 1,
            "snapshot_every_records": 10_000,
            "snapshot_every_batches": slots,
        },
    )
    create_topics(dep)
    publish(dep, WESTMINSTER, _events(dep, 0, events))
    with router_thread(dep) as service:
        wait_for_decisions(dep, events)
    assert service.stats.snapshots >= events // slots - 1, service.stats
    # Other tests on the same Kafka write keys of every shape (some not UTF-8): ours only.
    chain = f"w|{topic_ingress(dep.id(WESTMINSTER))}/0|".encode()
    keys = {key for record in read_topic(dep, TOPIC_ROUTER_STATE) if (key := record.key)}
    used = sorted(int(key[len(chain) :]) for key in keys if key.startswith(chain))
    assert used and max(used) < slots, used
