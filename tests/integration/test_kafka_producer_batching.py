"""The transactional producer batches as configured after its first commit (issue 19, part 2).

kafka-python 3.0.12 leaves its record accumulator "flushing" after a transaction commit that
had to wait for pending batches (the Java client's KAFKA-12870), after which every record goes
out in a produce request of its own and `linger_ms` is ignored. `TransactionalProducer` takes
that flush back after each commit and abort (docs/performance.md). These tests count the
produce requests the producer's sender thread builds, transaction by transaction, on the real
secured broker: with the workaround they stay at about one per transaction; without it (the
second test) they go back to about one per record, which is the library bug itself: when that
test fails, kafka-python has been fixed and the workaround can go.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from broker.config import KafkaSettings
from broker.kafka.client import KafkaClients, TransactionalProducer, flushes_in_progress
from broker.kafka.credentials import OPERATOR

pytestmark = pytest.mark.integration

TRANSACTIONS = 5
RECORDS = 40  # per transaction


def _count_produce_requests(producer: TransactionalProducer) -> list[int]:
    """Wrap the sender's request builder of this one producer: each call appends how many
    produce requests (one per broker node) it built. Nothing is stubbed: the requests go out."""
    sender = producer._live()._sender
    build = sender._create_produce_requests
    built: list[int] = []

    def counting(collated: Any) -> Any:
        requests = build(collated)
        built.append(len(requests))
        return requests

    sender._create_produce_requests = counting
    return built


def _requests_per_transaction(
    settings: KafkaSettings, topic: str, *, clear_stuck_flush: bool
) -> list[int]:
    clients = KafkaClients(settings, OPERATOR)
    producer = clients.bounded_transactional_producer(
        f"test-batching-{topic}",
        timeout_s=30,
        clear_stuck_flush=clear_stuck_flush,
        linger_ms=1000,  # only a commit (or the stuck flush) sends before a second has passed
        batch_size=512 * 1024,
    )
    producer.start()
    built = _count_produce_requests(producer)
    per_transaction = []
    try:
        for transaction in range(TRANSACTIONS):
            before = sum(built)
            producer.begin()
            for number in range(RECORDS):
                producer.send(topic, value=f"{transaction}-{number}".encode())
                # Spread over 0.4 s (within linger_ms), so that the partition's AddPartitionsToTxn
                # (retried after 100 ms while the last commit's markers are still being written)
                # is answered long before the last record, and a stuck flush sends the rest
                # one by one; at once, they would all wait for it in one batch regardless.
                time.sleep(0.01)
            producer.commit()
            per_transaction.append(sum(built) - before)
    finally:
        producer.close()
    return per_transaction


def test_records_of_a_transaction_share_produce_requests_after_the_first_commit(
    operator_settings: KafkaSettings, new_topic: Callable[..., str]
) -> None:
    counts = _requests_per_transaction(
        operator_settings, new_topic("batching"), clear_stuck_flush=True
    )
    # One node, linger 1 s: the commit sends each transaction's records in one request (a
    # retry could add one). One request per record would be 40.
    assert all(count <= 3 for count in counts), counts


def test_kafka_python_sends_each_record_alone_after_a_commit_without_the_workaround(
    operator_settings: KafkaSettings, new_topic: Callable[..., str]
) -> None:
    counts = _requests_per_transaction(
        operator_settings, new_topic("batching"), clear_stuck_flush=False
    )
    assert counts[0] <= 3, counts  # the first transaction is batched: nothing stuck yet
    # From the second on, the flush left by the first commit sends records as they come.
    assert min(counts[1:]) >= RECORDS // 4, counts


def test_offset_of_sends_the_record_without_waiting_for_linger(
    operator_settings: KafkaSettings, new_topic: Callable[..., str]
) -> None:
    """A snapshot needs its first part's offset inside the open transaction. With a linger far
    beyond the deadline, the offset only comes back within it if `offset_of` makes the batch
    ready at once (before the fix the router stalled `linger_ms` at every snapshot; here it
    would raise `KafkaDeadline`). The flush it begins is taken back: batching goes on."""
    topic = new_topic("offset-of")
    producer = KafkaClients(operator_settings, OPERATOR).bounded_transactional_producer(
        f"test-offset-of-{topic}",
        timeout_s=10,
        linger_ms=120_000,
        delivery_timeout_ms=300_000,
        batch_size=512 * 1024,
    )
    producer.start()
    try:
        counter = flushes_in_progress(producer._live())
        producer.begin()
        producer.send(topic, value=b"first")
        assert producer.offset_of(producer.send(topic, value=b"second")) == 1
        assert counter.get() == 0
        producer.commit()
    finally:
        producer.close()
