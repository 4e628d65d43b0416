"""`KafkaClients.subscribe` on the real broker: partitions known before the first poll.

kafka-python 3.0.12 can lose a group member's first assignment for good when the member joins
before it knows its topics' partitions (see the method's docstring). The two-router test in
tests/integration/router/ shows the whole effect; these pin the method's own contract.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from broker.config import KafkaSettings
from broker.kafka.client import KafkaClients, KafkaUnavailable

pytestmark = pytest.mark.integration


def test_partitions_are_known_before_the_first_poll_and_the_group_assigns_them(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topics = [new_topic("sub", partitions=3), new_topic("sub", partitions=2)]
    clients = KafkaClients(KafkaSettings(bootstrap_servers=kafka_bootstrap))
    consumer = clients.consumer(group_id=f"sub-{uuid.uuid4().hex[:8]}")
    try:
        clients.subscribe(consumer, topics)
        assert consumer.subscription() == set(topics)
        # Before any poll: what the group leader will see when it computes the assignment.
        assert [len(consumer.partitions_for_topic(t) or ()) for t in topics] == [3, 2]
        for _ in range(100):
            consumer.poll(timeout_ms=100)
            if len(consumer.assignment()) == 5:
                break
        assert {(tp.topic, tp.partition) for tp in consumer.assignment()} == {
            (t, p) for t, n in zip(topics, (3, 2), strict=True) for p in range(n)
        }
    finally:
        consumer.close(autocommit=False)


def test_a_topic_that_does_not_exist_is_a_clear_error_after_the_timeout(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    existing = new_topic("sub")
    missing = f"missing-{uuid.uuid4().hex[:8]}"  # the local broker does not auto-create
    clients = KafkaClients(KafkaSettings(bootstrap_servers=kafka_bootstrap))
    consumer = clients.consumer(group_id=f"sub-{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(KafkaUnavailable, match=f"no partition metadata for {missing} after"):
            clients.subscribe(consumer, [existing, missing], timeout_s=1.0)
    finally:
        consumer.close(autocommit=False)
