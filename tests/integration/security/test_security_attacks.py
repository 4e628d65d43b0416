"""Acceptance (issue 12): the three attacks of the issue's "Why", each failing to do harm now.

(a) reading what a council published (names of a child in care), or another agency's feed,
    without being its reader;
(b) destroying the evidence: deleting the records of `quarantine` (even the router may not),
    writing junk into `audit.decisions` (its writer, the router, aside: against that stand
    the hash chain and the signatures);
(c) silencing an agency: moving the police feed's consumer group to the end of its topic so
    that a pending event is skipped.

Each test first shows the target holds what the attacker wants (as the operator sees it), so
that a refusal is not just an empty topic. One deployment and one router for the module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import OffsetSpec
from kafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError
from kafka.structs import OffsetAndMetadata
from router_helpers import (
    BTP,
    GUARDIAN,
    MET,
    NRM,
    WESTMINSTER,
    Deployment,
    decisions,
    event,
    make_deployment,
    produce_raw,
    publish,
    read_quarantine,
    read_topic,
    router_thread,
    wait_for_decisions,
)
from security_helpers import DENY, Actor, actors

from broker.config import TOPIC_AUDIT, TOPIC_QUARANTINE, topic_feed, topic_ingress
from broker.kafka.client import KafkaClients
from broker.kafka.credentials import AUDITOR, OPERATOR, principal_of
from broker.kafka.credentials import STATS as STATS_PRINCIPAL
from broker.kafka.local import ClusterAccess
from broker.router.service import RouterService
from broker.scaffold import REPO_ROOT

pytestmark = pytest.mark.integration

CHILD_NAME = "Philippa-Attacktest"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, kafka_access: ClusterAccess) -> Deployment:
    return make_deployment(tmp_path_factory.mktemp("security-attacks") / "deployment", kafka_access)


@pytest.fixture(scope="module")
def router(deployment: Deployment) -> Iterator[RouterService]:
    """The deployment's router, routing for the whole module."""
    with router_thread(deployment) as service:
        yield service


@pytest.fixture(scope="module")
def published(deployment: Deployment, router: RouterService) -> int:
    """A child taken into care (with names), referred to the NRM and given a guardian; returns
    the number of routing decisions so far."""
    dep, w = deployment, deployment.id(WESTMINSTER)
    names = {"first_name": CHILD_NAME, "last_name": "Testchild", "la_child_id": "LA-A1"}
    publish(
        dep,
        WESTMINSTER,
        [
            event("guardian.appointed", "child-a1", "a-ga", guardian_service=dep.id(GUARDIAN),
                  **names),
            event("child.care.started", "child-a1", "a-cs", **names),
            event("nrm.referral.submitted", "child-a1", "a-nr", first_responder=w,
                  first_responder_type="local_authority", local_authority=w, **names),
        ],
    )  # fmt: skip
    wait_for_decisions(dep, 3)
    return 3


def _operator_reads(dep: Deployment, topic: str) -> list[bytes]:
    return [r.value or b"" for r in read_topic(dep, topic)]


def _attackers(dep: Deployment) -> dict[str, tuple[str, str | None]]:
    """Every principal but the operator (and the agency attacked, added by each test)."""
    return {
        "council": (principal_of(dep.id(WESTMINSTER)), None),
        "another police force": (principal_of(dep.id(BTP)), None),
        "router": (principal_of(dep.config.router.id), None),
        "auditor": (AUDITOR, None),
        "stats": (STATS_PRINCIPAL, None),
    }


# -- (a) reading what is not yours -----------------------------------------------------------


def test_the_police_cannot_read_a_council_ingress_nor_other_feeds(
    deployment: Deployment, published: int
) -> None:
    dep = deployment
    ingress = topic_ingress(dep.id(WESTMINSTER))
    targets = [ingress, topic_feed(dep.id(NRM)), topic_feed(dep.id(GUARDIAN))]
    for topic in targets:  # the prize is there: the operator sees it
        assert _operator_reads(dep, topic), topic
    assert any(CHILD_NAME.encode() in value for value in _operator_reads(dep, ingress))

    police = KafkaClients(dep.config.kafka, principal_of(dep.id(MET)))
    for topic in targets:
        consumer = police.consumer(group_id=None, fetch_max_wait_ms=50)
        got: list[bytes] = []
        try:
            parts = [TopicPartition(topic, p) for p in range(dep.config.kafka.topics.partitions)]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            with pytest.raises(TopicAuthorizationFailedError):
                for _ in range(50):
                    for records in consumer.poll(timeout_ms=100).values():
                        got += [r.value for r in records]
                    consumer.position(parts[0], timeout_ms=5000)
        finally:
            consumer.close(autocommit=False)
        assert not got, topic


def test_a_client_without_credentials_cannot_read_a_council_ingress(
    deployment: Deployment, published: int
) -> None:
    settings = deployment.config.kafka
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        KafkaConsumer(
            topic_ingress(deployment.id(WESTMINSTER)),
            bootstrap_servers=settings.bootstrap_servers.split(","),
            security_protocol="SSL",
            ssl_cafile=str(settings.ssl_cafile),
            bootstrap_timeout_ms=3000,
            auto_offset_reset="earliest",
        )


# -- (b) destroying the evidence ---------------------------------------------------------------


def _ends(
    operator: Actor, topic: str
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    consumer = operator.consumer
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    return consumer.beginning_offsets(parts), consumer.end_offsets(parts)


def test_nobody_but_the_operator_deletes_quarantine_or_writes_into_the_audit_log(
    deployment: Deployment, published: int
) -> None:
    dep = deployment
    # Something worth deleting: input the router had to quarantine.
    produce_raw(dep, topic_ingress(dep.id(WESTMINSTER)), [(b"child-a1", b"not an envelope")])
    deadline = time.monotonic() + 60
    while not read_quarantine(dep):
        assert time.monotonic() < deadline, "the router quarantined nothing"
        time.sleep(0.5)

    principals = {**_attackers(dep), "police": (principal_of(dep.id(MET)), None)}
    principals[OPERATOR] = (OPERATOR, None)
    with actors(dep.config.kafka, principals) as cast:
        operator = cast.pop(OPERATOR)
        quarantine_before = _ends(operator, TOPIC_QUARANTINE)
        audit_before = _ends(operator, TOPIC_AUDIT)
        starts, ends = quarantine_before
        (tp,) = starts  # quarantine has one partition
        start, end = starts[tp], ends[tp]
        leader = next(
            p["leader_id"]
            for t in operator.admin.describe_topics([TOPIC_QUARANTINE])
            for p in t["partitions"]
            if p["partition_index"] == 0
        )
        assert end > start
        outcomes: dict[tuple[str, str], str] = {}
        for role, actor in cast.items():
            outcomes[(role, "delete quarantine")] = actor.attempt(
                lambda a=actor: a.delete_records(TOPIC_QUARANTINE, end, leader)
            )
            outcomes[(role, "retention.ms=1 on quarantine")] = actor.attempt(
                lambda a=actor: a.alter_retention(TOPIC_QUARANTINE)
            )
            if role != "router":  # its writer: what it writes is chained and signed (line 2)
                outcomes[(role, "junk into audit.decisions")] = actor.attempt(
                    lambda a=actor: a.produce(TOPIC_AUDIT)
                )
        assert outcomes == dict.fromkeys(outcomes, DENY)
        assert _ends(operator, TOPIC_QUARANTINE) == quarantine_before
        assert _ends(operator, TOPIC_AUDIT) == audit_before
    assert read_quarantine(dep), "the quarantined record is gone"


def _route(dep: Deployment, evt: dict[str, Any]) -> None:
    """Publish one event as Westminster and wait until the router decided it."""
    before = len(decisions(dep))
    publish(dep, WESTMINSTER, [evt])
    wait_for_decisions(dep, before + 1)


# -- (c) silencing an agency -----------------------------------------------------------------


def _feed_cli(dep: Deployment, agency: str) -> list[dict[str, object]]:
    """`broker feed --agency A` (no --from-beginning): what the agency's group has not seen."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker.cli",
            "feed",
            "--config",
            str(dep.config_path),
            "--agency",
            agency,
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=dict(os.environ),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def _event_ids(items: list[dict[str, object]]) -> list[object]:
    return [item.get("event_id") for item in items]


def test_nobody_else_can_move_the_police_feed_group_past_a_pending_event(
    deployment: Deployment, published: int
) -> None:
    dep, police = deployment, deployment.id(MET)
    group, feed = f"feed-{police}", topic_feed(police)
    missing = {"missing_type": "M", "la_child_id": "LA-A2"}
    # The police have read (and committed) their feed; then the child is found.
    _route(dep, event("child.missing.started", "child-a2", "a-ms1", **missing))
    assert "evt-a-ms1" in _event_ids(_feed_cli(dep, police))
    _route(dep, event("child.missing.ended", "child-a2", "a-me1", **missing))

    parts = [TopicPartition(feed, p) for p in range(dep.config.kafka.topics.partitions)]
    to_the_end = {tp: OffsetAndMetadata(10**6, "", -1) for tp in parts}
    outcomes: dict[tuple[str, str], str] = {}
    with actors(dep.config.kafka, _attackers(dep)) as cast:
        for role, actor in cast.items():
            # Three ways to the end of the topic: the admin API's reset and alter, and a
            # consumer of the group committing.
            outcomes[(role, "reset")] = actor.attempt(
                partial(actor.move_group_to_end, group, parts)
            )
            outcomes[(role, "alter")] = actor.attempt(
                partial(actor.commit_offsets, group, to_the_end)
            )
            consumer = actor.clients.consumer(group_id=group)
            try:
                consumer.assign(parts)
                outcomes[(role, "commit")] = actor.attempt(partial(consumer.commit, to_the_end))
            finally:
                consumer.close(autocommit=False)
    assert outcomes == dict.fromkeys(outcomes, DENY)

    # The pending event is still delivered, and only it.
    assert _event_ids(_feed_cli(dep, police)) == ["evt-a-me1"]

    # Control: the same move by the operator does skip an event, so the refusals above
    # are what protected the police.
    _route(dep, event("child.missing.started", "child-a2", "a-ms2", **missing))
    with KafkaClients(dep.config.kafka, OPERATOR).admin() as admin:
        admin.reset_group_offsets(group, dict.fromkeys(parts, OffsetSpec.LATEST))
    assert _feed_cli(dep, police) == []
