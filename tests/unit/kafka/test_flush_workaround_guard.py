"""The flush workaround refuses a kafka-python whose accumulator internals changed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from kafka.producer.record_accumulator import AtomicInteger

from broker.kafka.client import KafkaClientChanged, _end_stuck_flush, flushes_in_progress


def test_a_producer_without_the_flush_counter_is_refused_with_what_to_do() -> None:
    changed = SimpleNamespace(_accumulator=SimpleNamespace(flush_in_progress=lambda: False))
    with pytest.raises(KafkaClientChanged, match=r"pinned back to 3\.0\.12"):
        flushes_in_progress(changed)  # type: ignore[arg-type]


def test_the_stuck_flush_is_taken_back_to_the_count_before_the_commit() -> None:
    counter = AtomicInteger()
    counter.increment()  # a flush() of someone else's, still waiting
    before = counter.get()
    counter.increment()  # the sender's, never ended
    _end_stuck_flush(counter, before)
    assert counter.get() == 1
    _end_stuck_flush(counter, 1)
    assert counter.get() == 1
