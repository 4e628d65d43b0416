"""`KafkaClients.subscribe`: the partitions are known before the consumer's first poll.

kafka-python 3.0.12 can lose a group member's first assignment for good when the member joins
before it knows its topics' partitions (see the method's docstring); these tests pin the order
of calls that avoids it, on a stand-in consumer.
"""

from __future__ import annotations

from typing import Any

import pytest

from broker.config import KafkaSettings
from broker.kafka.client import KafkaClients, KafkaUnavailable


class FakeConsumer:
    """Records calls; each topic's partitions become known after `ready_after` fetches."""

    def __init__(self, ready_after: dict[str, int]) -> None:
        self.ready_after = ready_after
        self.fetches = 0
        self.calls: list[str] = []
        self.listener: Any = None

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self.calls.append(f"subscribe {','.join(topics)}")
        self.listener = listener

    def topics(self) -> set[str]:
        self.calls.append("topics")
        self.fetches += 1
        return set(self.ready_after)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1, 2} if self.fetches >= self.ready_after[topic] else set()


def _clients() -> KafkaClients:
    return KafkaClients(KafkaSettings(bootstrap_servers="127.0.0.1:9"))


def test_subscribes_then_fetches_metadata_until_every_topic_has_partitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("time.sleep", lambda _: None)
    consumer = FakeConsumer({"a": 1, "b": 3})
    listener = object()
    _clients().subscribe(consumer, ["a", "b"], listener=listener)
    assert consumer.calls == ["subscribe a,b", "topics", "topics", "topics"]
    assert consumer.listener is listener


def test_topics_without_partitions_are_an_error_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("time.sleep", lambda _: None)
    consumer = FakeConsumer({"a": 1, "b": 10**9})
    with pytest.raises(KafkaUnavailable, match="no partition metadata for b"):
        _clients().subscribe(consumer, ["a", "b"], timeout_s=0.0)
