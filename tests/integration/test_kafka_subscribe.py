"""`KafkaClients.subscribe` on the real broker: partitions known before the first poll.

kafka-python 3.0.12 can lose a group member's first assignment for good when the member joins
before it knows its topics' partitions (see the method's docstring). The two-router test in
tests/integration/router/ shows the whole effect; these pin the method's own contract.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from broker.config import KafkaSettings
from broker.kafka.client import KafkaClients, KafkaUnavailable
from broker.kafka.credentials import OPERATOR

pytestmark = pytest.mark.integration


def test_a_static_member_polling_briefly_always_gets_its_partitions(
    operator_settings: KafkaSettings, new_topic: Callable[..., str]
) -> None:
    """The router's conditions, made tight: a static member, polls of 2 ms. With a bare
    `consumer.subscribe()` the first join goes out before the topic's metadata, the leader
    assigns nothing, and the rejoin that follows is usually lost: about 5 rounds in 6 end
    with no assignment and no heartbeats. Three rounds all passing by luck: under 1%."""
    clients = KafkaClients(operator_settings, OPERATOR)
    for _ in range(3):
        topic = new_topic("sub", partitions=3)
        consumer = clients.consumer(
            group_id=f"g-{topic}",
            group_instance_id="i1",
            session_timeout_ms=10000,
            heartbeat_interval_ms=2000,
        )
        try:
            clients.subscribe(consumer, [topic])
            deadline = time.monotonic() + 8
            while not consumer.assignment() and time.monotonic() < deadline:
                consumer.poll(timeout_ms=2)
            assert {tp.partition for tp in consumer.assignment()} == {0, 1, 2}
        finally:
            consumer.close(autocommit=False)


def test_a_topic_that_does_not_exist_is_a_clear_error_after_the_timeout(
    operator_settings: KafkaSettings, new_topic: Callable[..., str]
) -> None:
    existing = new_topic("sub")
    missing = f"missing-{uuid.uuid4().hex[:8]}"  # the local broker does not auto-create
    clients = KafkaClients(operator_settings, OPERATOR)
    consumer = clients.consumer(group_id=f"sub-{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(KafkaUnavailable, match=f"no partition metadata for {missing} after"):
            clients.subscribe(consumer, [existing, missing], timeout_s=1.0)
    finally:
        consumer.close(autocommit=False)
