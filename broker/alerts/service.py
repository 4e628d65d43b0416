"""The alerts service's Kafka loop: read its verified feed, keep clocks, raise alerts, exactly once.

One Kafka transaction per polled batch (or per clock tick that finds alerts due) holds the signed
`alert.raised` envelopes for `ingress.<service>`, the sealed state record of every child it
changed (`state.<service>`) and the consumed feed offsets, so `read_committed` readers see each
alert exactly once, and a restarted instance rebuilds the state that goes with the committed
offsets. The transactional id is stable per instance: a restarted instance fences its
predecessor and aborts what that left open. Input first, then clocks: a stopping event already
in the feed when the service comes back is applied before any clock it stops is judged, and a
clock that ran out while the service was down fires once on return.

One active instance per service: the clocks of a child depend on events of several agencies,
which arrive on different feed partitions, so the whole state is rebuilt on every assignment.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata

from broker.agreements.evaluate import EventView
from broker.alerts.check import load_rules
from broker.alerts.clocks import (
    ALERT_EVENT_TYPE,
    ChildKey,
    ChildState,
    Clock,
    Engine,
    child_key,
    iso_duration,
)
from broker.alerts.metrics import AlertsMetrics
from broker.alerts.state import apply_record, seal_for, state_key
from broker.config import AlertsSettings, BrokerConfig, ConfigError, topic_feed, topic_ingress
from broker.envelope import issue
from broker.errors import BrokerError
from broker.feed import FeedVerifier
from broker.kafka.client import KafkaClients, KafkaDeadline, KafkaUnavailable, TransactionalProducer
from broker.kafka.credentials import principal_of
from broker.publish import agency_key
from broker.router.changelog import ChangelogSeal, Ignored
from broker.router.service import _describe, _recoverable
from broker.schemas import SchemaRegistry

log = logging.getLogger(__name__)

Now = Callable[[], datetime]
RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 3.0)


def wall_clock() -> datetime:
    return datetime.now(UTC)


class ManualClock:
    """A clock someone sets (tests, the demo): the time it was last set to."""

    def __init__(self, at: datetime) -> None:
        self._at = at
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._at

    def set(self, at: datetime) -> None:
        with self._lock:
            self._at = at


class FileClock:
    """A clock read from a file holding one ISO 8601 time (for tests and drills: the time a
    scenario says it is); until the file holds a valid time, the wall clock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: datetime | None = None

    def __call__(self) -> datetime:
        with contextlib.suppress(OSError, ValueError):
            text = self.path.read_text().strip()
            at = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if at.tzinfo is not None:
                self._last = at.astimezone(UTC)
        return self._last or wall_clock()


def settings_of(config: BrokerConfig) -> AlertsSettings:
    if config.alerts is None:
        raise ConfigError(
            f"{config.source}: no `alerts` section: add one naming the alerts agency and its "
            "rules directory (docs/alerts.md)"
        )
    return config.alerts


class AlertsService:
    """Runs the read-clock-raise loop until `stop()` (or SIGTERM/SIGINT)."""

    def __init__(
        self, config: BrokerConfig, *, clock: Now | None = None, instance_id: str | None = None
    ) -> None:
        self.config = config
        self.settings = settings = settings_of(config)
        self.instance_id = instance_id or settings.instance_id
        self.engine = Engine(load_rules(settings.rules_dir), service_id=settings.id)
        self.verifier = FeedVerifier.from_config(config, settings.id)
        self.registry = SchemaRegistry.default()
        self.key = agency_key(config, settings.id)
        self.seal = seal_for(config.alerts_state_secret)
        self.clients = KafkaClients(config.kafka, principal_of(settings.id))
        self.clock = clock or wall_clock
        self.metrics = AlertsMetrics()
        self.states: dict[ChildKey, ChildState] = {}
        # Each child's earliest pending due time: a transaction looks at the children it
        # touched and those with something due, never at every child.
        self.next_due: dict[ChildKey, datetime] = {}
        self._metrics_at = 0.0
        self.feed_topic = topic_feed(settings.id)
        self.ingress_topic = topic_ingress(settings.id)
        self.raised_total = 0
        self.metrics_port: int | None = None
        self._recovering = True
        self._consumer: Any = None
        self._stop = threading.Event()
        self._last_tick = 0.0

    def stop(self, *_: Any) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: stopping after the open transaction", signum)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self, *, idle_exit_s: float | None = None) -> int:
        """Run until stopped; return the number of alerts raised."""
        settings = self.settings
        if settings.metrics_port is not None:
            self.metrics_port = self.metrics.serve(settings.metrics_port)
            log.info("metrics at http://127.0.0.1:%d/metrics", self.metrics_port)
        producer = self.clients.bounded_transactional_producer(
            f"{settings.transactional_prefix}{self.instance_id}",
            timeout_s=settings.kafka_timeout_s,
            transaction_timeout_ms=settings.transaction_timeout_ms,
            linger_ms=5,
            retry_backoff_ms=20,
            reconnect_backoff_max_ms=1000,
        )
        producer.start()
        consumer = self.clients.consumer(
            group_id=settings.group_id,
            group_instance_id=self.instance_id,
            max_poll_records=settings.batch_max_records,
            session_timeout_ms=10000,
            heartbeat_interval_ms=2000,
            reconnect_backoff_max_ms=1000,
        )
        self._consumer = consumer
        self.clients.subscribe(consumer, [self.feed_topic], listener=_Listener(self))
        last_input = time.monotonic()
        retries = 0
        try:
            while not self._stop.is_set():
                try:
                    if not producer.ready:
                        producer.renew()
                        self._rewind_to_committed(consumer)
                    if self._recovering and consumer.assignment():
                        self._recover(consumer)
                    polled = consumer.poll(timeout_ms=settings.poll_timeout_ms)
                    if self._recovering:
                        for tp, records in polled.items():  # fetched before the pause
                            consumer.seek(tp, records[0].offset)
                        continue
                    if polled:
                        self._transaction(producer, consumer, polled)
                        last_input = time.monotonic()
                    elif time.monotonic() - self._last_tick >= settings.tick_s:
                        self._transaction(producer, consumer, {})
                    retries = 0
                    if idle_exit_s is not None and time.monotonic() - last_input > idle_exit_s:
                        break
                except Exception as exc:
                    if not _recoverable(exc):
                        raise
                    delay = RETRY_BACKOFF_S[min(retries, len(RETRY_BACKOFF_S) - 1)]
                    retries += 1
                    log.warning("alerts paused: %s; aborting and retrying from the committed "
                                "state (nothing is lost or raised twice)", _describe(exc))
                    producer.abandon()
                    self._reset(consumer)
                    self._stop.wait(delay)
        finally:
            with contextlib.suppress(Exception):
                consumer.close(autocommit=False, timeout_ms=int(settings.kafka_timeout_s * 1000))
            producer.close()
        return self.raised_total

    # -- one transaction -----------------------------------------------------------------------

    def _transaction(
        self, producer: TransactionalProducer, consumer: Any, polled: dict[Any, list[Any]]
    ) -> None:
        now = self.clock()
        self._last_tick = time.monotonic()
        touched: set[ChildKey] = set()
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, records in polled.items():
            for record in records:
                child = self._observe(tp.partition, record, now)
                if child is not None:
                    touched.add(child)
            offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
        ripe = {child for child, at in self.next_due.items() if at <= now}
        due = [alert for child in sorted(touched | ripe)
               for alert in self.engine.due(child, self.states[child], now)]
        if not due and not touched and not offsets:
            self._update_clocks(now)
            return
        producer.begin()
        try:
            failed = []
            for alert in due:
                try:
                    envelope = issue(alert.event(), issuer=self.settings.id, key=self.key,
                                     registry=self.registry)
                except BrokerError as exc:
                    # An alert the schema or the key refuses would fail the same way for ever:
                    # recorded as handled (so the service goes on) and reported by rule.
                    failed.append(alert)
                    log.error("rule %s: alert could not be issued (%s); check the rule and the "
                              "service's key", alert.rule.key, type(exc).__name__)
                else:
                    producer.send(self.ingress_topic, key=(envelope.subject or "").encode(),
                                  value=envelope.to_bytes(self.registry))
                self.states[alert.child].raised.add(alert.alert_id)
                touched.add(alert.child)
            for child in sorted(touched):
                state = self.states[child]
                self.engine.prune(state, now)
                key = state_key(child)
                producer.send(self.settings.state_topic, key=key,
                              value=self.seal.seal(key, state.to_bytes()))
            if offsets:
                producer.send_offsets(offsets, consumer.group_metadata())
            producer.commit()
        except Exception:
            self.metrics.transactions.labels("abort").inc()
            raise
        self.metrics.transactions.labels("commit").inc()
        for child in touched:
            self._schedule(child)
        for alert in failed:
            self.metrics.issue_failed.labels(alert.rule.key).inc()
        due = [alert for alert in due if alert not in failed]
        for alert in due:
            self.metrics.raised.labels(alert.rule.key).inc()
            log.info("alert raised: rule %s, stage %s, council %s", alert.rule.key,
                     iso_duration(alert.stage), alert.child[0])
        self.raised_total += len(due)
        for rule, reason in self.engine.errors:
            self.metrics.condition_errors.labels(rule).inc()
            log.warning("rule %s: condition failed (%s); treated as false", rule, reason)
        self.engine.errors.clear()
        self._update_clocks(now)

    def _schedule(self, child: ChildKey) -> None:
        at = self.engine.next_due(self.states[child])
        if at is None:
            self.next_due.pop(child, None)
        else:
            self.next_due[child] = at

    def _observe(self, partition: int, record: Any, now: datetime) -> ChildKey | None:
        item = self.verifier.verify(partition, record.offset, record.value, record.timestamp)
        if item.event is None:
            code = item.error.code if item.error else "unknown"
            self.metrics.input.labels(f"rejected_{code}").inc()
            log.warning("%s/%d@%d: not verified (%s); skipped", self.feed_topic, partition,
                        record.offset, code)
            return None
        event = item.event
        if event.event_type == ALERT_EVENT_TYPE:
            self.metrics.input.labels("alert").inc()
            return None
        view = EventView(event.event_id, event.event_type, event.issuer, event.subject or "",
                         event.header.occurred_at, event.fields)
        child = child_key(view)
        if child is None:
            self.metrics.input.labels("no_child").inc()
            return None
        state = self.states.setdefault(child, ChildState())
        if not self.engine.observe(state, view, now=now):
            self.metrics.input.labels("duplicate").inc()
            return None
        self.metrics.input.labels("applied").inc()
        return child

    def open_clocks(self, now: datetime | None = None) -> list[Clock]:
        at = now or self.clock()
        return [c for child, state in self.states.items()
                for c in self.engine.clocks(child, state, at)]

    def _update_clocks(self, now: datetime) -> None:
        """The clock gauges, at most once per tick (they look at every child)."""
        if time.monotonic() - self._metrics_at < self.settings.tick_s:
            return
        self._metrics_at = time.monotonic()
        running: dict[str, int] = dict.fromkeys(self.engine.rules, 0)
        overdue: dict[str, int] = dict.fromkeys(self.engine.rules, 0)
        for clock in self.open_clocks(now):
            (overdue if clock.state == "overdue" else running)[clock.rule] += 1
        for rule in self.engine.rules:
            self.metrics.clocks_open.labels(rule).set(running[rule])
            self.metrics.clocks_overdue.labels(rule).set(overdue[rule])

    # -- recovery ------------------------------------------------------------------------------

    def _reset(self, consumer: Any) -> None:
        """Forget in-memory state; it is rebuilt from the changelog before the next batch."""
        self.states.clear()
        self.next_due.clear()
        self._recovering = True
        with contextlib.suppress(Exception):
            consumer.pause(*consumer.assignment())

    def _rewind_to_committed(self, consumer: Any) -> None:
        for tp in consumer.assignment():
            committed = consumer.committed(tp, timeout_ms=int(self.settings.kafka_timeout_s
                                                              * 1000))
            if committed is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)

    def assigned(self, partitions: list[TopicPartition]) -> None:
        self._recovering = True
        if self._consumer is not None and partitions:
            self._consumer.pause(*partitions)

    def _recover(self, consumer: Any) -> None:
        started = time.monotonic()
        self.states = replay_state(self.clients, self.settings, self.seal, self.metrics,
                                   stop=self._stop)
        self.next_due.clear()
        for child in self.states:
            self._schedule(child)
        self._rewind_to_committed(consumer)
        self._recovering = False
        consumer.resume(*consumer.assignment())
        log.info("rebuilt the clocks of %d child(ren) in %.2f s", len(self.states),
                 time.monotonic() - started)


def replay_state(
    clients: KafkaClients,
    settings: AlertsSettings,
    seal: ChangelogSeal,
    metrics: AlertsMetrics | None = None,
    *,
    stop: threading.Event | None = None,
    stall_s: float = 30.0,
) -> dict[ChildKey, ChildState]:
    """Every child's committed state, read from `state.<service>` (sealed records only)."""
    states: dict[ChildKey, ChildState] = {}
    reader = clients.consumer(isolation_level="read_committed")
    try:
        topic = settings.state_topic
        partitions = [TopicPartition(topic, p)
                      for p in sorted(reader.partitions_for_topic(topic) or [])]
        if not partitions:
            raise KafkaUnavailable(
                f"topic {topic} is not there (or not readable): provision the deployment "
                "(`broker kafka provision`) so the operator creates it")
        reader.assign(partitions)
        reader.seek_to_beginning(*partitions)
        ends = reader.end_offsets(partitions)
        pending = {tp for tp in partitions if ends[tp] > 0}
        last = time.monotonic()
        ignored: dict[Ignored, int] = {}
        while pending:
            if (stop is not None and stop.is_set()) or time.monotonic() - last > stall_s:
                raise KafkaDeadline(f"replaying {topic}", stall_s)
            for records in reader.poll(timeout_ms=200).values():
                for record in records:
                    reason = apply_record(states, record.key, record.value, seal)
                    if reason is not None:
                        ignored[reason] = ignored.get(reason, 0) + 1
                last = time.monotonic()
            for tp in list(pending):
                if reader.position(tp) >= ends[tp]:
                    pending.discard(tp)
            if pending and time.monotonic() - last > 3.0:
                ends = reader.end_offsets(partitions)  # an aborted tail: the end moved back
        for reason, count in ignored.items():
            log.warning("%s: %d record(s) ignored, not applied (%s)", topic, count, reason.value)
            if metrics is not None:
                metrics.state_ignored.labels(reason.value).inc(count)
        return states
    finally:
        reader.close(autocommit=False)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: AlertsService) -> None:
        self.service = service

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.service.states.clear()
        self.service.next_due.clear()
        self.service._recovering = True

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.service.assigned(assigned)


__all__ = ["AlertsService", "FileClock", "ManualClock", "replay_state", "wall_clock"]
