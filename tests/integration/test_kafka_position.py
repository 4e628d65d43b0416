"""`consumer_position` and `committed_offsets` on the real broker: the same offsets as
`KafkaConsumer.position` and `KafkaConsumer.committed`, without a sweep or a request per partition.

kafka-python 3.0.12's `position(tp)` refreshes, resets and validates every assigned partition
before answering for one, so the router's lag gauge (one call per owned partition after every
batch), the audit reader and the changelog replays (one per pending partition after every poll)
cost O(partitions²) per poll. These tests pin that the helper gives the same answers, past
transaction markers too, and asks `position()` only while the consumer holds no position.
`committed` asks for one partition per request, and every rewind after a Kafka failure asked for
each owned partition in turn.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from broker.kafka.client import committed_offsets, consumer_position, rewind_to_committed

pytestmark = pytest.mark.integration


def _counting(consumer: KafkaConsumer) -> list[TopicPartition]:
    """Record every call of this consumer's `position()` (still answered by the real one)."""
    calls: list[TopicPartition] = []
    real = consumer.position

    def position(tp: TopicPartition, timeout_ms: Any = None) -> Any:
        calls.append(tp)
        return real(tp, timeout_ms=timeout_ms)

    consumer.position = position  # type: ignore[method-assign]
    return calls


def test_the_held_position_is_kafkas_and_no_sweep_is_made_once_positions_are_held(
    operator_options: dict[str, Any], new_topic: Callable[..., str]
) -> None:
    topic = new_topic("pos", partitions=4)
    producer = KafkaProducer(
        **operator_options, transactional_id=f"pos-{uuid.uuid4().hex}", acks="all"
    )
    producer.init_transactions()
    for n in range(3):  # committed transactions: a marker after each partition's records
        producer.begin_transaction()
        for partition in range(4):
            for i in range(n + partition + 1):
                producer.send(topic, f"{n}-{i}".encode(), partition=partition)
        producer.commit_transaction()
    producer.close()
    consumer = KafkaConsumer(
        **operator_options, isolation_level="read_committed", enable_auto_commit=False,
        max_poll_records=5,
    )  # fmt: skip
    try:
        partitions = [TopicPartition(topic, p) for p in range(4)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        calls = _counting(consumer)
        # No position held yet (a seek to the beginning waits for a fetch): asked of Kafka,
        # whose answer for the first partition resets them all.
        assert [consumer_position(consumer, tp) for tp in partitions] == [0, 0, 0, 0]
        assert calls[:1] == partitions[:1]
        ends = consumer.end_offsets(partitions)
        seen, polls, held = 0, 0, []
        while seen < 42 or held != [ends[tp] for tp in partitions]:
            # 42 records: 3 transactions of 1+2+3+4, 2+3+4+5 and 3+4+5+6; at the end each
            # position is past the last commit marker, at the end offset.
            polls += 1
            assert polls < 100, f"{seen} of 42 records, positions {held} of {ends}"
            polled = consumer.poll(timeout_ms=500)
            seen += sum(len(records) for records in polled.values())
            calls.clear()
            held = [consumer_position(consumer, tp) for tp in partitions]
            assert calls == []  # no sweep: each answer is the position the consumer holds
            assert held == [consumer.position(tp) for tp in partitions]
        assert seen == 42
    finally:
        consumer.close(autocommit=False)


def test_an_unassigned_partition_is_kafkas_error(
    operator_options: dict[str, Any], new_topic: Callable[..., str]
) -> None:
    topic = new_topic("pos")
    consumer = KafkaConsumer(**operator_options, enable_auto_commit=False)
    try:
        with pytest.raises(Exception, match="not assigned"):
            consumer_position(consumer, TopicPartition(topic, 0))
    finally:
        consumer.close(autocommit=False)


def test_committed_offsets_come_in_one_request_and_rewinding_seeks_to_them(
    operator_options: dict[str, Any], new_topic: Callable[..., str]
) -> None:
    topic = new_topic("committed", partitions=4)
    producer = KafkaProducer(**operator_options)
    for partition in range(4):
        for _ in range(5):
            producer.send(topic, b"x", partition=partition)
    producer.flush()
    producer.close()
    group = f"committed-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(**operator_options, group_id=group, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in range(4)]
        consumer.assign(partitions)
        consumer.commit({tp: OffsetAndMetadata(tp.partition + 1, f"m{tp.partition}", -1)
                         for tp in partitions[1:]})  # partition 0: nothing committed
        fetches: list[list[TopicPartition]] = []
        real = consumer._coordinator.fetch_committed_offsets

        def fetch(asked: Any, timeout_ms: Any = None) -> Any:
            fetches.append(list(asked))
            return real(asked, timeout_ms=timeout_ms)

        consumer._coordinator.fetch_committed_offsets = fetch
        found = committed_offsets(consumer, partitions, 10.0)
        assert {tp: (meta.offset, meta.metadata) for tp, meta in found.items()} == {
            tp: (tp.partition + 1, f"m{tp.partition}") for tp in partitions[1:]
        }
        assert found == {tp: consumer.committed(tp, metadata=True) for tp in partitions[1:]}
        assert consumer.committed(partitions[0]) is None
        fetches.clear()
        for tp in partitions:
            consumer.seek(tp, 5)
        rewind_to_committed(consumer, 10.0)
        assert len(fetches) == 1 and sorted(fetches[0]) == partitions  # one request for all
        assert [consumer.position(tp) for tp in partitions] == [0, 2, 3, 4]
    finally:
        consumer.close(autocommit=False)
