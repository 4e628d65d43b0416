"""kafka-python against the real local broker: admin, idempotent transactions, offsets in txns."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

pytestmark = pytest.mark.integration


def _read_all(options: dict[str, Any], topic: str, isolation: str, *, expected: int) -> list[bytes]:
    consumer = KafkaConsumer(
        **options,
        isolation_level=isolation,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    consumer.assign([TopicPartition(topic, 0)])
    values: list[bytes] = []
    for record in consumer:
        values.append(record.value)
        if len(values) >= expected:
            break
    consumer.close()
    return values


def _transactional_producer(options: dict[str, Any]) -> KafkaProducer:
    producer = KafkaProducer(
        **options,
        transactional_id=f"test-{uuid.uuid4().hex}",
        enable_idempotence=True,
        acks="all",
    )
    producer.init_transactions()
    return producer


def test_admin_creates_topic_with_partitions(
    operator_options: dict[str, Any], new_topic: Callable[..., str]
) -> None:
    topic = new_topic("admin", partitions=3)
    admin = KafkaAdminClient(**operator_options)
    try:
        assert topic in admin.list_topics()
        (described,) = admin.describe_topics([topic])
        assert len(described["partitions"]) == 3
    finally:
        admin.close()


def test_aborted_transaction_invisible_committed_visible(
    operator_options: dict[str, Any], new_topic: Callable[..., str]
) -> None:
    topic = new_topic("txn")
    producer = _transactional_producer(operator_options)
    producer.begin_transaction()
    producer.send(topic, b"aborted-1")
    producer.send(topic, b"aborted-2")
    producer.flush()
    producer.abort_transaction()
    producer.begin_transaction()
    producer.send(topic, b"committed-1")
    producer.commit_transaction()
    producer.close()

    committed = _read_all(operator_options, topic, "read_committed", expected=3)
    assert committed == [b"committed-1"]
    # The aborted records really were written: a read_uncommitted reader sees them.
    uncommitted = _read_all(operator_options, topic, "read_uncommitted", expected=3)
    assert uncommitted == [b"aborted-1", b"aborted-2", b"committed-1"]


def test_consumer_offsets_commit_inside_transaction(
    operator_options: dict[str, Any], new_topic: Callable[..., str]
) -> None:
    source, sink = new_topic("src"), new_topic("sink")
    plain = KafkaProducer(**operator_options, acks="all")
    for i in range(10):
        plain.send(source, f"r{i}".encode())
    plain.flush()
    plain.close()

    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(
        source,
        **operator_options,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    records = []
    while len(records) < 4:
        for batch in consumer.poll(timeout_ms=1000, max_records=4 - len(records)).values():
            records.extend(batch)
    tp = TopicPartition(source, 0)

    producer = _transactional_producer(operator_options)
    # An aborted transaction must not move the group's offset ...
    producer.begin_transaction()
    producer.send(sink, b"lost")
    producer.send_offsets_to_transaction(
        {tp: OffsetAndMetadata(99, "", -1)}, consumer.group_metadata()
    )
    producer.abort_transaction()
    # ... and a committed one moves it together with the output.
    producer.begin_transaction()
    for record in records:
        producer.send(sink, record.value.upper())
    producer.send_offsets_to_transaction(
        {tp: OffsetAndMetadata(records[-1].offset + 1, "", -1)}, consumer.group_metadata()
    )
    producer.commit_transaction()
    producer.close()
    consumer.close(autocommit=False)

    admin = KafkaAdminClient(**operator_options)
    try:
        offsets = admin.list_group_offsets(group)[group]
    finally:
        admin.close()
    assert offsets[tp].offset == 4
    assert _read_all(operator_options, sink, "read_committed", expected=5) == [
        b"R0",
        b"R1",
        b"R2",
        b"R3",
    ]
