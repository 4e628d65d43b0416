"""`within_deadline`: a Kafka client constructor that blocks (kafka-python's TLS handshake has
no deadline, so a frozen broker holds it) cannot hold its caller past the deadline."""

from __future__ import annotations

import threading
import time

import pytest

from broker.kafka.client import KafkaDeadline, within_deadline


def test_a_constructor_that_blocks_is_abandoned_at_the_deadline_and_discarded_later() -> None:
    release = threading.Event()
    discarded: list[str] = []
    began = time.monotonic()
    with pytest.raises(KafkaDeadline, match="connecting"):
        within_deadline(
            lambda: release.wait(30) and "client",
            0.2,
            "connecting",
            discard=discarded.append,
        )
    assert time.monotonic() - began < 5
    release.set()  # the frozen broker answers at last: what it made is discarded, not leaked
    deadline = time.monotonic() + 5
    while not discarded and time.monotonic() < deadline:
        time.sleep(0.01)
    assert discarded == ["client"]


def test_a_result_or_an_error_within_the_deadline_is_passed_through() -> None:
    assert within_deadline(lambda: 42, 1.0, "x", discard=lambda _: None) == 42

    def fail() -> int:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        within_deadline(fail, 1.0, "x", discard=lambda _: None)
