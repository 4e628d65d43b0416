"""What `broker route` says when it meets an error it cannot handle (issue 14, part 2)."""

from __future__ import annotations

from kafka.errors import FencedInstanceIdError, KafkaError

from broker.router.cli import _failure
from broker.router.service import _recoverable


def test_kafka_outages_are_retried_refusals_and_bugs_are_not() -> None:
    from broker.kafka.client import KafkaDeadline, KafkaDenied, KafkaUnavailable

    assert _recoverable(KafkaDeadline("the commit", 10))
    assert _recoverable(KafkaUnavailable("unreachable"))
    assert _recoverable(KafkaError("coordinator moved"))
    assert not _recoverable(KafkaDenied("refused"))
    assert not _recoverable(FencedInstanceIdError())
    assert not _recoverable(RuntimeError("a bug"))


def test_each_unhandled_error_is_one_line_naming_the_fix() -> None:
    fenced = _failure(FencedInstanceIdError(), "router-0")
    assert "router-0" in fenced and "--instance" in fenced
    broken = _failure(KafkaError("x"), "router-0")
    assert "start the router again" in broken
    bug = _failure(ValueError("a personal value must never show"), "router-0")
    assert "-v" in bug and "personal" not in bug
    for message in (fenced, broken, bug):
        assert "\n" not in message
