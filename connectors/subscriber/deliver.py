"""Deliver a verified feed to a target, committing the consumer offset only after delivery.

Events are delivered one at a time in feed order (partition order; one subject's events share a
partition), each retried with exponential back-off until it is delivered, the target refuses it
for good, `give_up_after_s` passes, or the run is stopped. Offsets are committed per batch up to
the last event delivered, so the next run starts at the first event not delivered. An event that
fails verification is never delivered: it is reported (offset and reason code) and skipped.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Protocol

from broker.feed import FeedItem
from broker.schemas import SchemaRegistry
from connectors.subscriber.targets import DeliveryError, Target

log = logging.getLogger(__name__)


class Feed(Protocol):
    """What delivery needs of `broker.feed.FeedReader`."""

    topic: str
    registry: SchemaRegistry

    def batches(self, *, follow: bool, poll_ms: int = ...) -> Any: ...

    def commit(self, offsets: dict[int, int] | None = None) -> None: ...


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts: `initial_s`, times `factor` each time, at most `max_s`, with up to
    10% jitter; `give_up_after_s` (None: never) bounds the time spent on one event."""

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    give_up_after_s: float | None = None

    def delays(self) -> Any:
        delay = self.initial_s
        while True:
            yield delay * (1 + random.random() / 10)
            delay = min(delay * self.factor, self.max_s)


@dataclass
class DeliveryStats:
    delivered: int = 0
    failed_verification: int = 0
    retries: int = 0
    stopped: bool = False


def deliver_with_retry(
    target: Target,
    event: dict[str, Any],
    backoff: Backoff,
    stop: threading.Event,
    stats: DeliveryStats,
    *,
    log_out: IO[str] = sys.stderr,
) -> None:
    """Deliver one event; raises `DeliveryError` when it cannot, returns quietly when stopped."""
    started = time.monotonic()
    delays = backoff.delays()
    while True:
        try:
            target.deliver(event)
            return
        except DeliveryError as exc:
            if not exc.retryable:
                raise
            waited = time.monotonic() - started
            if backoff.give_up_after_s is not None and waited >= backoff.give_up_after_s:
                raise DeliveryError(
                    f"{exc} (gave up after {waited:.0f} s)", retryable=False
                ) from None
            delay = next(delays)
            stats.retries += 1
            print(f"delivery retry in {delay:.1f} s: {exc}", file=log_out)
            if stop.wait(delay):
                stats.stopped = True
                return


def deliver_feed(
    feed: Feed,
    target: Target,
    *,
    follow: bool,
    backoff: Backoff = Backoff(),
    stop: threading.Event | None = None,
    log_out: IO[str] = sys.stderr,
) -> DeliveryStats:
    """Deliver every verified event of `feed` to `target`; see the module docstring."""
    stop = stop or threading.Event()
    stats = DeliveryStats()
    for batch in feed.batches(follow=follow):
        done: dict[int, int] = {}  # partition -> next offset to read
        item: FeedItem
        try:
            for item in batch:
                if item.event is None:
                    stats.failed_verification += 1
                    code = item.error.code if item.error else "unknown"
                    print(
                        f"NOT VERIFIED {feed.topic}/{item.partition}@{item.offset}: {code}",
                        file=log_out,
                    )
                else:
                    event = item.event.to_json(feed.registry)
                    deliver_with_retry(target, event, backoff, stop, stats, log_out=log_out)
                    if stats.stopped:
                        break
                    stats.delivered += 1
                done[item.partition] = item.offset + 1
        finally:
            # Whatever happened, remember exactly what was delivered (and nothing more).
            feed.commit(done)
        if stats.stopped or stop.is_set():
            stats.stopped = True
            break
    return stats
