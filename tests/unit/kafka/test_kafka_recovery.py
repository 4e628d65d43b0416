"""The Kafka-failure recovery the router and the alerts service share (`KafkaRecovery`)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from kafka.errors import KafkaError

from broker.kafka import client
from broker.kafka.client import (
    AUTH_GRACE_S,
    KafkaAuthError,
    KafkaDenied,
    KafkaRecovery,
    KafkaUnavailable,
)

PAUSED = "work paused: %s"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(client.time, "monotonic", fake)
    return fake


def _recovery() -> KafkaRecovery:
    return KafkaRecovery(threading.Event(), logging.getLogger("test.recovery"), paused=PAUSED)


def test_a_refused_credential_is_retried_only_during_an_outage_and_only_for_the_grace(
    clock: Clock,
) -> None:
    recovery = _recovery()
    refused = KafkaAuthError("SCRAM authentication failed")
    assert not recovery.retryable(refused)  # no outage: a wrong credential stops at once
    assert recovery.failed(KafkaUnavailable("node went away"))
    assert recovery.retryable(refused)
    clock.now += AUTH_GRACE_S - 1
    assert recovery.retryable(refused)
    clock.now += 2
    assert not recovery.retryable(refused)
    assert not recovery.retryable(KafkaDenied("no ACL"))  # never retried, outage or not


def test_an_outage_is_logged_once_and_ended_by_a_commit(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    recovery = _recovery()
    with caplog.at_level(logging.DEBUG, logger="test.recovery"):
        assert recovery.failed(KafkaError("coordinator moved"))
        clock.now += 5
        assert not recovery.failed(KafkaError("coordinator moved"))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["work paused: KafkaError: coordinator moved"]
    assert recovery.resumed() == pytest.approx(5.0)
    assert recovery.resumed() is None
    assert not recovery.retryable(KafkaAuthError("refused"))  # the outage is over


class _Producer:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.renewed = self.abandoned = 0

    def renew(self) -> None:
        self.renewed += 1
        if self.failures:
            raise self.failures.pop(0)

    def abandon(self) -> None:
        self.abandoned += 1


class _Stop(threading.Event):
    """A stop event that records the back-off waits instead of waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return False


def test_restart_backs_off_until_kafka_answers_then_rewinds() -> None:
    stop = _Stop()
    recovery = KafkaRecovery(stop, logging.getLogger("test.recovery"), paused=PAUSED)
    producer: Any = _Producer([KafkaUnavailable("down"), KafkaUnavailable("down")])
    rewound: list[bool] = []
    assert not recovery.restart(producer, lambda: rewound.append(True))
    assert not recovery.restart(producer, lambda: rewound.append(True))
    assert recovery.restart(producer, lambda: rewound.append(True))
    assert stop.waits == [0.5, 1.0] and rewound == [True] and producer.abandoned == 2
    denied: Any = _Producer([KafkaDenied("no ACL")])
    with pytest.raises(KafkaDenied):  # a refusal is not waited out
        KafkaRecovery(stop, logging.getLogger("t"), paused=PAUSED).restart(denied, lambda: None)


def test_the_router_and_the_alerts_service_use_the_same_recovery() -> None:
    from broker.alerts import service as alerts
    from broker.router import service as router

    assert router._recoverable is client.recoverable  # what its unit tests check
    for module in (router, alerts):
        assert module.KafkaRecovery is KafkaRecovery
        assert module.RETRY_BACKOFF_S is client.RETRY_BACKOFF_S
