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
import dataclasses
import faulthandler
import heapq
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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
    ClockEntry,
    Engine,
    child_key,
    iso_duration,
)
from broker.alerts.metrics import AlertsMetrics
from broker.alerts.state import apply_record, seal_for, state_key
from broker.config import (
    TOPIC_QUARANTINE,
    AlertsSettings,
    BrokerConfig,
    ConfigError,
    topic_feed,
    topic_ingress,
)
from broker.envelope import issue
from broker.errors import BrokerError
from broker.feed import FeedItem, FeedVerifier
from broker.kafka.client import (
    RETRY_BACKOFF_S,
    KafkaClients,
    KafkaDeadline,
    KafkaRecovery,
    KafkaUnavailable,
    TransactionalProducer,
    describe,
    reached,
    rewind_to_committed,
)
from broker.kafka.credentials import principal_of
from broker.publish import agency_key
from broker.registry.live import CONFIRM_EVERY_S, LiveAgreements, LiveKeys, RegistryFollower
from broker.router.changelog import ChangelogSeal, Ignored
from broker.runtime import tune_gc
from broker.schemas import SchemaRegistry

log = logging.getLogger(__name__)

Now = Callable[[], datetime]

# Quarantine reason codes of the alerts service's own (verification failures carry the envelope
# layer's codes: bad_encoding, unknown_schema, bad_derived_signature, wrong_router, ...).
NO_VALUE = "bad_encoding"  # a tombstone on the feed: no bytes at all
INTERNAL_ERROR = "internal_error"  # the verifier itself failed (a bug): the record is kept


@dataclass(frozen=True)
class Quarantined:
    """A feed record the service could not verify, for `quarantine` (the router's format:
    key `<topic>/<partition>/<offset>`, the original bytes, headers `reason` and `detail`)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    reason: str
    service: str

    def send(self, producer: TransactionalProducer, now: datetime) -> None:
        # The detail is made here from the code alone: never the verifier's message, whose
        # header strings are whatever the sender wrote (a forger can write a child's name).
        detail = (f"forwarded record on {self.topic} failed verification by {self.service} "
                  f"({self.reason}): not applied to any alert clock; docs/bad-input.md")
        meta = {"reason": self.reason, "detail": detail, "topic": self.topic,
                "partition": self.partition, "offset": self.offset,
                "quarantined_at": now.isoformat()}
        producer.send(TOPIC_QUARANTINE, key=f"{self.topic}/{self.partition}/{self.offset}".encode(),
                      value=self.value, headers=[("reason", self.reason.encode()),
                                                 ("detail", json.dumps(meta).encode())])


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
        # touched and those with something due, never at every child; the heap finds those
        # without a scan (entries whose time is no longer the child's are skipped).
        self.next_due: dict[ChildKey, datetime] = {}
        self._due_heap: list[tuple[datetime, ChildKey]] = []
        # Each child's clock stages as the gauges count them, renewed when the child changes:
        # a tick counts these instead of deriving every child's clocks again.
        self.entries: dict[ChildKey, list[ClockEntry]] = {}
        self._metrics_at = 0.0
        self.feed_topic = topic_feed(settings.id)
        self.ingress_topic = topic_ingress(settings.id)
        self.raised_total = 0
        self.metrics_port: int | None = None
        self._recovering = True
        self._consumer: Any = None
        self._stop = threading.Event()
        self._last_tick = 0.0
        # Kafka failures: the router's recovery (outage logged once, credential grace, back-off).
        self._outage = KafkaRecovery(
            self._stop,
            log,
            paused="alerts paused: %s; abandoning the transactional producer and retrying with "
            "back-off (uncommitted work is aborted and done again from the committed state: "
            "nothing is lost or raised twice)",
        )
        # The live registry, as the router follows it: a revoked key or a withdrawn agreement
        # applies to the next record judged; fail closed when it cannot be read.
        self.registry_max_stale_s = config.router.registry_max_stale_s
        self._follower: RegistryFollower | None = None
        self._live: tuple[LiveKeys, LiveAgreements] | None = None
        self._registry_failing = False
        self._held_since: float | None = None
        if config.registry is not None:
            live = LiveKeys.from_config(config, self.verifier.keys)
            agreements = LiveAgreements.from_config(config)
            self.verifier = dataclasses.replace(self.verifier, agreements=agreements.agreements)
            self._live = (live, agreements)

    @property
    def stop_bound_s(self) -> float:
        """At most this long from SIGTERM to exit: the open transaction, closing the consumer,
        the producer and the registry reader each wait at most `kafka_timeout_s`."""
        return 4 * self.settings.kafka_timeout_s + 5

    def stop(self, *_: Any) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            if self._stop.is_set():
                return
            log.info("signal %d: finishing (or abandoning) the open transaction, then stopping "
                     "(within %.0f s)", signum, self.stop_bound_s)
            self.stop()
            threading.Thread(target=self._stop_watchdog, name="stop-watchdog", daemon=True).start()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _stop_watchdog(self) -> None:
        """The last resort behind every deadline (as the router's): exit if stopping takes
        longer than promised; whatever was left open is aborted when it starts again."""
        time.sleep(self.stop_bound_s)
        log.error("the alerts service did not stop within %.0f s of the signal: exiting without "
                  "finishing", self.stop_bound_s)
        if log.isEnabledFor(logging.DEBUG):
            faulthandler.dump_traceback(all_threads=True)
        logging.shutdown()
        os._exit(3)

    def run(self, *, idle_exit_s: float | None = None) -> int:
        """Run until stopped; return the number of alerts raised."""
        tune_gc()
        settings = self.settings
        if settings.metrics_port is not None:
            self.metrics_port = self.metrics.serve(settings.metrics_port)
            log.info("metrics at http://127.0.0.1:%d/metrics", self.metrics_port)
        self._start_registry()
        producer = self.clients.bounded_transactional_producer(
            f"{settings.transactional_prefix}{self.instance_id}",
            timeout_s=settings.kafka_timeout_s,
            transaction_timeout_ms=settings.transaction_timeout_ms,
            # As the router's producer (`router.service.producer_options`): the commit flushes
            # what is pending, so lingering costs no latency and makes fewer, larger produce
            # requests (fewer wake-ups of the sender thread per record).
            linger_ms=20,
            batch_size=512 * 1024,
            retry_backoff_ms=20,
            reconnect_backoff_max_ms=1000,
        )
        try:
            consumer = self._outage.connect(
                self.clients, producer, self._new_consumer, [self.feed_topic],
                listener=_Listener(self), subscribe_timeout_s=settings.kafka_timeout_s)
            last_input = time.monotonic()
            while not self._stop.is_set():
                try:
                    self._follow_registry()
                    if self._registry_held():
                        self._stop.wait(RETRY_BACKOFF_S[0])
                        continue
                    if not producer.ready and not self._outage.restart(
                            producer, lambda: self._rewind_to_committed(consumer)):
                        continue  # Kafka still does not answer (or we are stopping)
                    if self._recovering and consumer.assignment():
                        self._recover(consumer)
                    polled = consumer.poll(timeout_ms=settings.poll_timeout_ms)
                    if self._recovering:
                        for tp, records in polled.items():  # fetched before the pause
                            consumer.seek(tp, records[0].offset)
                        continue
                    if polled:
                        if not self._sync_registry(consumer, polled):
                            continue
                        self._transaction(producer, consumer, polled)
                        last_input = time.monotonic()
                    elif time.monotonic() - self._last_tick >= settings.tick_s:
                        self._transaction(producer, consumer, {})
                    if idle_exit_s is not None and time.monotonic() - last_input > idle_exit_s:
                        break
                except Exception as exc:
                    if not self._outage.retryable(exc):
                        raise
                    producer.abandon()
                    self._reset(consumer)
                    self._outage.failed(exc)
        finally:
            if self._consumer is not None:  # made, even if subscribing it then failed
                with contextlib.suppress(Exception):  # bounded; a dead cluster must not keep us
                    self._consumer.close(autocommit=False,
                                         timeout_ms=int(settings.kafka_timeout_s * 1000))
            producer.close()
            if self._follower is not None:
                self._follower.close()
        return self.raised_total

    def _new_consumer(self) -> Any:
        """The feed consumer, made within the deadline (kafka-python's bootstrap has none
        against a frozen cluster)."""
        settings = self.settings
        self._consumer = self.clients.bounded_consumer(
            timeout_s=settings.kafka_timeout_s,
            what="connecting to read the feed",
            group_id=settings.group_id,
            group_instance_id=self.instance_id,
            max_poll_records=settings.batch_max_records,
            session_timeout_ms=10000,
            heartbeat_interval_ms=2000,
            reconnect_backoff_max_ms=1000,
        )
        return self._consumer

    # -- the live registry (as the router follows it) ------------------------------------------

    def _start_registry(self) -> None:
        if self._live is None:
            return
        live, agreements = self._live
        bound = self.registry_max_stale_s
        self._follower = self._outage.at_start(
            "connecting to read the registry",
            lambda: RegistryFollower(
                self.clients, live, agreements,
                timeout_s=min(self.settings.kafka_timeout_s, bound),
                confirm_every_s=min(CONFIRM_EVERY_S, bound / 4)))
        try:
            read = self._follower.catch_up()
        except Exception as exc:  # fail closed: nothing is judged until it can be read
            self._registry_failed(exc)
        else:
            log.info("registry: %d record(s) read", read)

    def _follow_registry(self) -> None:
        """Between batches: what arrived on the registry (confirmed read to its end every few
        seconds), so a revocation or a new agreement version applies to the next batch."""
        if self._follower is None:
            return
        confirmed = self._follower.confirmed_at
        try:
            self._follower.poll()
        except Exception as exc:  # the next poll tries again; `_registry_held` bounds it
            self._registry_failed(exc)
        else:
            if self._follower.confirmed_at != confirmed:
                self._registry_ok()

    def _sync_registry(self, consumer: Any, polled: dict[Any, list[Any]]) -> bool:
        """Before judging a batch: apply every registry record Kafka received before the
        batch's newest feed record. False (the batch is read again later) if that failed."""
        if self._follower is None:
            return True
        stamps = [r.timestamp for records in polled.values() for r in records if r.timestamp]
        confirmed = self._follower.confirmed_at
        try:
            self._follower.sync_for(max(stamps, default=None))
        except Exception as exc:
            self._registry_failed(exc)
            for tp, records in polled.items():
                consumer.seek(tp, records[0].offset)
            return False
        if self._follower.confirmed_at != confirmed:
            self._registry_ok()
        return True

    def _registry_failed(self, exc: Exception) -> None:
        if not self._registry_failing:
            log.warning("reading the registry failed (%s); alerts hold if it cannot be read for "
                        "%.0f s", describe(exc), self.registry_max_stale_s)
        self._registry_failing = True

    def _registry_ok(self) -> None:
        if self._registry_failing:
            log.info("the registry is readable again")
        self._registry_failing = False

    def _registry_held(self) -> bool:
        """Fail closed, as the router: True while the registry has not been read to its end
        for more than `router.registry_max_stale_s` (verifying on could accept a revoked key or
        a withdrawn agreement). Nothing is judged, raised or committed meanwhile: input first,
        so no clock is judged while a stopping event may be waiting unread."""
        if self._follower is None:
            return False
        if self._follower.stale_for() > self.registry_max_stale_s:
            if self._held_since is None:
                self._held_since = time.monotonic()
                log.warning("alerts held: the registry (registry.keys, registry.agreements) has "
                            "not been read to its end for more than %.0f s; nothing is judged, "
                            "raised or committed until it can be read again",
                            self.registry_max_stale_s)
            return True
        if self._held_since is not None:
            log.info("alerts resumed: the registry is readable again after %.1f s held",
                     time.monotonic() - self._held_since)
            self._held_since = None
        return False

    # -- one transaction -----------------------------------------------------------------------

    def _transaction(
        self, producer: TransactionalProducer, consumer: Any, polled: dict[Any, list[Any]]
    ) -> None:
        now = self.clock()
        self._last_tick = time.monotonic()
        touched: set[ChildKey] = set()
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        rejected: list[Quarantined] = []
        for tp, records in polled.items():
            for record in records:
                child = self._observe(tp.partition, record, now, rejected)
                if child is not None:
                    touched.add(child)
            offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
        ripe = self._ripe(now)
        due = [alert for child in sorted(touched | ripe)
               for alert in self.engine.due(child, self.states[child], now)]
        if not due and not touched and not offsets:
            self._update_clocks(now)
            return
        producer.begin()
        try:
            for bad in rejected:  # in the same transaction as the offsets that pass them
                bad.send(producer, now)
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
        down = self._outage.resumed()
        if down is not None:
            log.info("alerts resumed: first transaction committed %.1f s after the failure", down)
        for child in touched:
            self._schedule(child)
        for alert in failed:
            self.metrics.issue_failed.labels(alert.rule.key).inc()
        for bad in rejected:
            self.metrics.quarantined.labels(bad.reason).inc()
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
        """After a child changed (committed): its next due time and its clock stages."""
        state = self.states[child]
        at, entries = self.engine.outlook(state)
        if at is None:
            self.next_due.pop(child, None)
        elif self.next_due.get(child) != at:
            self.next_due[child] = at
            heapq.heappush(self._due_heap, (at, child))
            if len(self._due_heap) > 2 * len(self.next_due) + 1024:  # drop the skipped ones
                self._due_heap = [(t, c) for c, t in self.next_due.items()]
                heapq.heapify(self._due_heap)
        if entries:
            self.entries[child] = entries
        else:
            self.entries.pop(child, None)

    def _ripe(self, now: datetime) -> set[ChildKey]:
        """The children with a stage due at `now` (taken off the heap: each is scheduled again
        after its transaction commits, or all are after a failure)."""
        ripe: set[ChildKey] = set()
        heap = self._due_heap
        while heap and heap[0][0] <= now:
            at, child = heapq.heappop(heap)
            if self.next_due.get(child) == at:
                ripe.add(child)
                del self.next_due[child]
        return ripe

    def _forget(self) -> None:
        """Drop the in-memory state (rebuilt from `state.<service>` before the next batch)."""
        self.states.clear()
        self.next_due.clear()
        self._due_heap.clear()
        self.entries.clear()

    def _observe(
        self, partition: int, record: Any, now: datetime, rejected: list[Quarantined]
    ) -> ChildKey | None:
        item = self._verify(partition, record)
        if item.event is None:
            code = item.error.code if item.error else INTERNAL_ERROR
            if record.value is None:
                code = NO_VALUE
            self.metrics.input.labels(f"rejected_{code}").inc()
            log.warning("%s/%d@%d: not verified (%s); quarantined, not applied", self.feed_topic,
                        partition, record.offset, code)
            rejected.append(Quarantined(self.feed_topic, partition, record.offset, record.value,
                                        code, self.settings.id))
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

    def _verify(self, partition: int, record: Any) -> FeedItem:
        """The feed verifier's judgement of one record (`event` None: quarantine it)."""
        if record.value is None:
            return FeedItem(partition, record.offset, None)
        item = self._judge(partition, record)
        if (item.error is not None and item.error.code == "unknown_agreement"
                and self._follower is not None):
            # A version published a moment ago (the clocks of two brokers): look once more. A
            # Kafka failure here goes to the loop's recovery; the batch is read again.
            self._follower.catch_up()
            item = self._judge(partition, record)
        return item

    def _judge(self, partition: int, record: Any) -> FeedItem:
        """Never raises: a record the verifier fails on (a bug) is quarantined `internal_error`,
        as the router does, and the service goes on. Logged by type only (no value)."""
        try:
            return self.verifier.verify(partition, record.offset, record.value, record.timestamp)
        except Exception as exc:
            log.error("%s/%d@%d: the verifier failed (%s)", self.feed_topic, partition,
                      record.offset, type(exc).__name__, exc_info=log.isEnabledFor(logging.DEBUG))
            return FeedItem(partition, record.offset, None)

    def open_clocks(self, now: datetime | None = None) -> list[Clock]:
        at = now or self.clock()
        return [Clock(child[0], entry.rule, state, entry.due_at)
                for child, entries in self.entries.items() for entry in entries
                if (state := entry.state_at(at)) is not None]

    def _update_clocks(self, now: datetime) -> None:
        """The clock gauges, at most once per tick (they count every child's clock stages)."""
        if time.monotonic() - self._metrics_at < self.settings.tick_s:
            return
        self._metrics_at = time.monotonic()
        running: dict[str, int] = dict.fromkeys(self.engine.rules, 0)
        overdue: dict[str, int] = dict.fromkeys(self.engine.rules, 0)
        for entries in self.entries.values():
            for entry in entries:
                state = entry.state_at(now)
                if state == "running":
                    running[entry.rule] += 1
                elif state == "overdue":
                    overdue[entry.rule] += 1
        for rule in self.engine.rules:
            self.metrics.clocks_open.labels(rule).set(running[rule])
            self.metrics.clocks_overdue.labels(rule).set(overdue[rule])

    # -- recovery ------------------------------------------------------------------------------

    def _reset(self, consumer: Any) -> None:
        """Forget in-memory state; it is rebuilt from the changelog before the next batch."""
        self._forget()
        self._recovering = True
        with contextlib.suppress(Exception):
            consumer.pause(*consumer.assignment())

    def _rewind_to_committed(self, consumer: Any) -> None:
        """Every assigned partition back at the group's committed offset, within the deadline."""
        rewind_to_committed(consumer, self.settings.kafka_timeout_s)

    def assigned(self, partitions: list[TopicPartition]) -> None:
        self._recovering = True
        if self._consumer is not None and partitions:
            self._consumer.pause(*partitions)

    def _recover(self, consumer: Any) -> None:
        started = time.monotonic()
        states = replay_state(self.clients, self.settings, self.seal, self.metrics,
                              stop=self._stop, stall_s=3 * self.settings.kafka_timeout_s)
        self._forget()
        self.states = states
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
    reader = clients.bounded_consumer(
        timeout_s=settings.kafka_timeout_s, what="connecting to read the alerts state",
        isolation_level="read_committed", reconnect_backoff_max_ms=1000)
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
                if reached(reader, tp, ends[tp]):
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
        self.service._forget()
        self.service._recovering = True

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.service.assigned(assigned)


__all__ = ["AlertsService", "FileClock", "ManualClock", "replay_state", "wall_clock"]
