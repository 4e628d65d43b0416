"""The routing service's Kafka loop: consume ingress, route, produce, commit, in transactions.

One Kafka transaction per polled batch holds the feed envelopes, quarantine records, audit
records, changelog updates and the consumer offsets, so `read_committed` readers see each ingress
record's effects exactly once. The transactional id is stable per instance (`router.instance_id`):
a restarted instance fences its predecessor and aborts whatever it left open. Partition state is
rebuilt from the compacted `router.state` changelog whenever partitions are assigned, and after a
transaction aborts; every changelog record is sealed with the router's MAC (`_send_state`) and
only sealed ones are applied (`state.apply_changelog`). Each transaction ends with a signed
checkpoint of every chain it appended to.

State stays bounded (docs/faults.md, "Bounded state"): the de-duplication window forgets old
event ids, and every `router.snapshot_every_records` records the router writes a snapshot of
each owned partition in a transaction that also commits the consumer offsets, whose metadata
names the snapshot's `router.state` offset; a new owner reads from there (`_recover`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata

from broker.agreements import load_agreements
from broker.audit.chain import chain_id
from broker.audit.checkpoint import Checkpoint
from broker.audit.record import Outcome
from broker.config import (
    TOPIC_AUDIT,
    TOPIC_CHECKPOINTS,
    TOPIC_QUARANTINE,
    TOPIC_REGISTRY_AGREEMENTS,
    TOPIC_REGISTRY_KEYS,
    TOPIC_ROUTER_STATE,
    BrokerConfig,
    RouterSettings,
    topic_feed,
    topic_ingress,
)
from broker.envelope import KeyRegistry, load_signing_key
from broker.envelope.keys import ROUTER_ROLES
from broker.kafka.client import (
    RETRY_BACKOFF_S,
    KafkaClients,
    KafkaDeadline,
    KafkaRecovery,
    KafkaUnavailable,
    TopicSpec,
    TransactionalProducer,
    committed_offsets,
    consumer_position,
    reached,
    rewind_to_committed,
)
from broker.kafka.client import describe as _describe
from broker.kafka.client import recoverable as _recoverable
from broker.kafka.credentials import principal_of
from broker.registry.live import CONFIRM_EVERY_S, LiveAgreements, LiveKeys, RegistryFollower
from broker.router.changelog import ChangelogSeal, Ignored
from broker.router.core import IngressRecord, RouterCore, RouteResult
from broker.router.metrics import RouterMetrics
from broker.router.state import (
    PartitionState,
    apply_changelog,
    chain_snapshot,
    checkpoint_key,
    snapshot_metadata,
    snapshot_offset,
    snapshot_records,
    window_batch,
)
from broker.runtime import tune_gc

log = logging.getLogger(__name__)

# Seconds without progress before the changelog replay re-checks where the topic ends.
CHANGELOG_STALL_S = 3.0
# How long subscribing waits for the ingress topics' partitions (`KafkaClients.subscribe`).
SUBSCRIBE_TIMEOUT_S = 30.0
# Ignored changelog records logged one by one at each replay (the rest only in the summary).
IGNORED_LOGGED = 5
# The recovery from Kafka failures is shared with the alerts service: `KafkaRecovery`, with
# its back-off (`RETRY_BACKOFF_S`) and credential grace (`AUTH_GRACE_S`), in broker.kafka.client.


def topic_specs(config: BrokerConfig) -> list[TopicSpec]:
    """Every topic the broker uses, with its partitioning."""
    partitions = config.kafka.topics.partitions
    # Ingress and feed records carry the broker's append time: the time of receipt that key
    # validity is judged at, which no producer can choose (docs/wire-format.md, "Time").
    specs = [TopicSpec(topic_ingress(a), partitions, append_time=True) for a in config.agency_ids]
    specs += [TopicSpec(topic_feed(a), partitions, append_time=True) for a in config.agency_ids]
    specs += [
        TopicSpec(TOPIC_AUDIT, partitions),
        TopicSpec(TOPIC_CHECKPOINTS, 1),
        TopicSpec(TOPIC_QUARANTINE, 1),
        TopicSpec(TOPIC_ROUTER_STATE, 1, compacted=True),
        # One partition each: a total order of registry records. Append time: a record's
        # timestamp (when its signer key is judged) is the broker's, not the publisher's.
        TopicSpec(TOPIC_REGISTRY_KEYS, 1, compacted=True, append_time=True),
        TopicSpec(TOPIC_REGISTRY_AGREEMENTS, 1, compacted=True, append_time=True),
    ]
    return specs


def build_core(config: BrokerConfig) -> RouterCore:
    """The pure routing logic configured from the deployment config."""
    keys = KeyRegistry.from_dir(config.keys_dir)
    env = config.router.passphrase_env
    passphrase = os.environ.get(env) if env else None
    router_key = load_signing_key(config.router.signing_key, passphrase)
    if not any(k.key_id == router_key.key_id for k in keys.keys(router_key.agency_id)):
        # Not published in keys_dir (yet): known with the roles the router signs with. A
        # published record is left as it is: its roles are what every verifier sees.
        keys.add(dataclasses.replace(router_key.public_key_info(), roles=ROUTER_ROLES))
    return RouterCore(
        keys=keys,
        agreements=load_agreements(config.agreements_dir),
        router_key=router_key,
        agencies=config.agency_ids,
        pseudonym_key=config.pseudonym_key,
        max_skew=timedelta(seconds=config.router.max_clock_skew_s),
    )


def producer_options(settings: RouterSettings) -> dict[str, Any]:
    """The routing producer's tuning (the benchmark's pass-through copy uses the same).

    Commit flushes whatever is pending, so lingering costs no latency; it makes fewer, larger
    produce requests and far fewer wake-ups of the client's sender thread per record. A linger
    as long as a second sends a transaction's records only at its commit (or when a batch of
    512 KiB fills): 10-15% less CPU per event than 20 ms in `broker bench router` (issue 19).

    A transaction begun right after the previous commit often finds the coordinator still
    writing that commit's markers: it answers CONCURRENT_TRANSACTIONS and the client retries
    after `retry_backoff_ms`, sleeping in its sender thread. kafka-python waits its default
    100 ms for every retry (the Java client uses 20 ms for this case), which put 100-350 ms
    on the slowest transactions; 20 ms brings them back in line with the rest.
    """
    return {
        "transaction_timeout_ms": settings.transaction_timeout_ms,
        "linger_ms": 1000,
        "batch_size": 512 * 1024,
        "retry_backoff_ms": 20,
        # kafka-python backs reconnections off up to 30 s by default: after a cluster restart
        # that alone kept the router idle for half a minute.
        "reconnect_backoff_max_ms": 1000,
    }


def consumer_options(settings: RouterSettings) -> dict[str, Any]:
    """The routing consumer's tuning (the benchmark's pass-through copy uses the same)."""
    return {
        "max_poll_records": settings.batch_max_records,
        "session_timeout_ms": 10000,
        "heartbeat_interval_ms": 2000,
        "reconnect_backoff_max_ms": 1000,
    }


@dataclass
class RouterStats:
    batches: int = 0
    records: int = 0
    forwarded: int = 0
    quarantined: int = 0
    skipped: int = 0  # ingress records below a partition's next offset: routed before
    snapshots: int = 0
    # router.state records read at the last rebuild of partition state, and where it began
    # (None: from the beginning, some partition had no snapshot)
    recovery_records: int = 0
    recovery_start: int | None = None


class RouterService:
    """Runs the consume-route-produce loop until `stop()` (or SIGTERM/SIGINT)."""

    def __init__(
        self,
        config: BrokerConfig,
        *,
        instance_id: str | None = None,
        adopt_unsealed_state: bool = False,
    ) -> None:
        self.config = config
        # The one-off upgrade from a router that did not seal its changelog (docs/audit.md).
        self.adopt_unsealed_state = adopt_unsealed_state
        self._adopted: dict[bytes, bytes] = {}
        self.instance_id = instance_id or config.router.instance_id
        self.clients = KafkaClients(config.kafka, principal_of(config.router.id))
        self.core = build_core(config)
        self.seal = ChangelogSeal.from_secret(config.pseudonym_secret)
        self.metrics = RouterMetrics(
            config.router.stuck_after_s,
            agencies=self.core.agencies,
            event_types=self.core.registry.event_types(),
        )
        self.metrics.watch_expiry(lambda: self.core.keys.keys(), config.kafka.ssl_cafile)
        self.states: dict[TopicPartition, PartitionState] = {}
        # Each owned partition's lag gauge, looked up once (`_update_lag` runs after every batch).
        self._lag_gauges: dict[TopicPartition, Any] = {}
        self.stats = RouterStats()
        self._stop = threading.Event()
        self.metrics_port: int | None = None
        self._assigned_at: float | None = None  # when partitions were last assigned
        # Assigned partitions whose state is not rebuilt yet: paused until it is, outside the
        # rebalance callback (a slow callback stalls the group and can get this member evicted).
        self._recovering: set[TopicPartition] = set()
        self._consumer: Any = None
        # Kafka failures: when the outage began, credential grace, back-off (shared code).
        self._outage = KafkaRecovery(
            self._stop,
            log,
            paused="routing paused: %s; abandoning the transactional producer and retrying "
            "with back-off (uncommitted work is aborted and routed again; nothing is lost)",
        )
        # Ingress records routed since the last snapshot, and whether one is due regardless
        # (partitions taken over without one).
        self._since_snapshot = 0
        self._snapshot_needed = False
        # Records per routing transaction: `batch_max_records`, less after failed transactions
        # (see `_abort`).
        self._batch_limit = config.router.batch_max_records
        # The live key registry: revocations and new keys reach `core.keys` between batches.
        # The live agreement registry likewise reaches `core.agreements`.
        self.live_keys: LiveKeys | None = None
        self.live_agreements: LiveAgreements | None = None
        self._follower: RegistryFollower | None = None
        self._registry_failing = False  # a registry read failed since the last success
        if config.registry is not None:
            self.live_keys = LiveKeys.from_config(config, self.core.keys)
            self.live_agreements = LiveAgreements.from_config(config, self.core.agreements)
            for view in (self.live_keys, self.live_agreements):
                view.on_ignored = lambda reason: self.metrics.registry_ignored.labels(reason).inc()

    @property
    def stop_bound_s(self) -> float:
        """At most this long from SIGTERM to exit: the open transaction, the final checkpoint,
        closing the consumer and the producer each wait at most `kafka_timeout_s`."""
        return 4 * self.config.router.kafka_timeout_s + 5

    def stop(self, *_: Any) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            if self._stop.is_set():
                return
            log.info(
                "signal %d: finishing (or abandoning) the open transaction, then stopping "
                "(within %.0f s)",
                signum,
                self.stop_bound_s,
            )
            self.stop()
            threading.Thread(target=self._stop_watchdog, name="stop-watchdog", daemon=True).start()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _stop_watchdog(self) -> None:
        """The last resort behind every deadline: exit if stopping takes longer than promised."""
        time.sleep(self.stop_bound_s)
        log.error(
            "the router did not stop within %.0f s of the signal: exiting without finishing "
            "(whatever it left open is aborted when it starts again)",
            self.stop_bound_s,
        )
        if log.isEnabledFor(logging.DEBUG):  # -v: where it was stuck, for a bug report
            faulthandler.dump_traceback(all_threads=True)
        logging.shutdown()
        os._exit(3)

    def run(self, *, idle_exit_s: float | None = None) -> RouterStats:
        """Route until stopped; with `idle_exit_s`, also stop after that long without input."""
        tune_gc()
        self._outage.at_start(
            "creating the topics", lambda: self.clients.ensure_topics(topic_specs(self.config))
        )
        if self.config.router.metrics_port is not None:
            host = self.config.router.metrics_host
            self.metrics_port = self.metrics.serve(self.config.router.metrics_port, host)
            log.info("metrics at http://%s:%d/metrics", host, self.metrics_port)
        settings = self.config.router
        if self.live_keys is not None:
            self._follower = RegistryFollower(
                self.clients,
                self.live_keys,
                self.live_agreements,
                timeout_s=min(settings.kafka_timeout_s, settings.registry_max_stale_s),
                # Confirmed several times within the bound, so one slow answer never holds.
                confirm_every_s=min(CONFIRM_EVERY_S, settings.registry_max_stale_s / 4),
            )
            try:
                read = self._follower.catch_up()
            except Exception as exc:  # fail closed: routing waits until it can be read
                self._registry_failed(exc)
            else:
                position = self._follower.position
                log.info(
                    "registry: %d record(s) read, up to registry.keys offset %d and "
                    "registry.agreements offset %d",
                    read,
                    position.keys,
                    position.agreements,
                )
            self._registry_gauges()
        producer = self.clients.bounded_transactional_producer(
            f"{settings.group_id}-{self.instance_id}",
            timeout_s=settings.kafka_timeout_s,
            **producer_options(settings),
        )
        # Not consumer.subscribe(): `KafkaClients.subscribe` also loads the partitions before
        # the first poll, without which a member can miss its first assignment for good.
        consumer = self._outage.connect(
            self.clients,
            producer,
            self._new_consumer,
            [topic_ingress(a) for a in self.config.agency_ids],
            listener=_Listener(self),
            subscribe_timeout_s=SUBSCRIBE_TIMEOUT_S,
        )
        last_input = 0.0
        try:
            while not self._stop.is_set():
                try:
                    self._follow_registry()
                    self._registry_held()  # says so in the log and /healthz even when idle
                    if not producer.ready and not self._restart_producer(producer, consumer):
                        continue  # Kafka still does not answer (or we are stopping)
                    if self._recovering:
                        self._recover(consumer)
                        self._reseal_adopted(producer)
                        self._final_checkpoints(producer)
                    if self._snapshot_due():
                        self._write_snapshots(producer, consumer)
                    polled = consumer.poll(
                        timeout_ms=settings.poll_timeout_ms, max_records=self._batch_limit
                    )
                    if polled:
                        self._route_batch(producer, consumer, polled)
                        last_input = time.monotonic()
                        self._update_lag(consumer)
                    elif not self._recovering:
                        self.metrics.progress.idle()
                        if idle_exit_s is not None and self._idle_for(last_input) > idle_exit_s:
                            break
                except Exception as exc:
                    if not self._retryable(exc):
                        raise
                    self._kafka_failed(producer, consumer, exc)
            if producer.ready:
                self._final_checkpoints(producer)
        finally:
            with contextlib.suppress(Exception):  # bounded; a dead cluster must not keep us
                consumer.close(autocommit=False, timeout_ms=int(settings.kafka_timeout_s * 1000))
            producer.close()
            if self._follower is not None:
                self._follower.close()
        return self.stats

    # -- Kafka failures ------------------------------------------------------------------------

    def _new_consumer(self) -> Any:
        """The routing consumer, made within the deadline (kafka-python's bootstrap has none
        against a frozen cluster); kept before it subscribes, for the rebalance listener."""
        settings = self.config.router
        self._consumer = self.clients.bounded_consumer(
            timeout_s=settings.kafka_timeout_s,
            what="connecting the routing consumer",
            group_id=settings.group_id,
            # Static membership: an instance restarted under its id (after a crash, a deploy)
            # takes its partitions back at once instead of waiting out the old session.
            group_instance_id=self.instance_id,
            **consumer_options(settings),
        )
        return self._consumer

    def _retryable(self, exc: BaseException) -> bool:
        """`_recoverable`, and a refused credential while Kafka is coming back from an outage
        (for `AUTH_GRACE_S` from the first refusal); see `KafkaRecovery.retryable`."""
        return self._outage.retryable(exc)

    def _kafka_failed(self, producer: TransactionalProducer, consumer: Any, exc: Exception) -> None:
        """Give up the producer and the owned partitions' state; the loop starts afresh.

        Logged once per outage (the first failure), not once per retry.
        """
        producer.abandon()
        self._rebuild_states(consumer)
        self._shrink_batch()
        self.metrics.progress.begin()
        if self._outage.failed(exc):
            self.metrics.progress.kafka_down_since = time.time()

    def _restart_producer(self, producer: TransactionalProducer, consumer: Any) -> bool:
        """One attempt at a fresh producer (fencing the abandoned one); on success, put every
        owned partition back at its committed offset. False (after a back-off) if it failed."""
        return self._outage.restart(producer, lambda: self._rewind_to_committed(consumer))

    def _rewind_to_committed(self, consumer: Any) -> None:
        """Seek every assigned partition to the group's committed offset (within the deadline);
        the changelog replay that follows gives the state that goes with them."""
        rewind_to_committed(consumer, self.config.router.kafka_timeout_s)

    def _sync_registry(self, polled: dict[Any, list[Any]]) -> None:
        """Before judging a batch: apply every registry record Kafka received before the
        batch's newest ingress record, so a key revoked (or an agreement version published)
        before an event arrived applies to that event, and record the position reached: the
        batch's decisions carry it, and replay rebuilds the registry there."""
        if self._follower is None:
            return
        stamps = [r.timestamp for records in polled.values() for r in records if r.timestamp]
        confirmed = self._follower.confirmed_at
        try:
            self._follower.sync_for(max(stamps, default=None))
        except Exception as exc:  # bounded by registry_max_stale_s: `_registry_held`
            self._registry_failed(exc)
        else:
            if self._follower.confirmed_at != confirmed:  # read to its end just now
                self._registry_ok()
        position = self._follower.position
        self.core.registry_position = (position.keys, position.agreements)
        self._registry_gauges()

    def _follow_registry(self) -> None:
        """Between batches: read the registry topics to their end (every 0.5 s), so a
        revocation or a new agreement version takes effect for the next batch, no restart."""
        if self._follower is None:
            return
        confirmed = self._follower.confirmed_at
        try:
            self._follower.poll()
        except Exception as exc:  # the next poll tries again; `_registry_held` bounds it
            self._registry_failed(exc)
        else:
            # Readable again only once read to its end (not when no read was due): else the
            # log would flip between "failed" and "readable" at every retry.
            if self._follower.confirmed_at != confirmed:
                self._registry_ok()
        self._registry_gauges()

    def _registry_failed(self, exc: Exception) -> None:
        if not self._registry_failing:
            log.warning(
                "reading the registry failed (%s); routing holds if it cannot be read for %.0f s",
                _describe(exc),
                self.config.router.registry_max_stale_s,
            )
        self._registry_failing = True

    def _registry_ok(self) -> None:
        if self._registry_failing:
            log.info("the registry is readable again")
        self._registry_failing = False

    def _registry_gauges(self) -> None:
        if self._follower is None:
            return
        position = self._follower.position
        self.metrics.registry_position.set(position.keys)
        self.metrics.registry_agreements_position.set(position.agreements)
        stale = self._follower.stale_for()
        self.metrics.registry_stale_seconds.set(stale if stale != float("inf") else -1)

    def _registry_held(self) -> bool:
        """Fail closed: True while the registry has not been read to its end for more than
        `router.registry_max_stale_s` (routing on could apply revoked keys or withdrawn
        agreements). Logged once when the hold begins and once when it ends; /healthz says
        `registry_unavailable` meanwhile."""
        if self._follower is None:
            return False
        stale = self._follower.stale_for()
        bound = self.config.router.registry_max_stale_s
        progress = self.metrics.progress
        if stale > bound:
            if progress.registry_hold_since is None:
                progress.registry_hold_since = time.time()
                log.warning(
                    "routing held: the registry (registry.keys, registry.agreements) has not "
                    "been read to its end for more than %.0f s; nothing is routed or committed "
                    "until it can be read again",
                    bound,
                )
            return True
        if progress.registry_hold_since is not None:
            log.info(
                "routing resumed: the registry is readable again after %.1f s held",
                time.time() - progress.registry_hold_since,
            )
            progress.registry_hold_since = None
        return False

    def _idle_for(self, last_input: float) -> float:
        """Seconds without input since the later of the last batch and the last assignment.

        Waiting to join the group is not idleness: after a crash the group waits for the dead
        member's session to expire before assigning its partitions again.
        """
        if self._assigned_at is None:
            return 0.0
        return time.monotonic() - max(last_input, self._assigned_at)

    # -- one transaction ---------------------------------------------------------------------

    def _route_batch(
        self, producer: TransactionalProducer, consumer: Any, polled: dict[Any, list[Any]]
    ) -> None:
        received = time.monotonic()
        for tp in [tp for tp in polled if tp not in self.states]:
            # Fetched just before the partition was paused for recovery: read it again later.
            consumer.seek(tp, polled.pop(tp)[0].offset)
        self._skip_routed(polled)
        if not polled:
            return
        self._sync_registry(polled)
        if self._registry_held():
            # Not judged under a registry we cannot vouch for: read again once it is readable.
            for tp, records in polled.items():
                consumer.seek(tp, records[0].offset)
            self._stop.wait(RETRY_BACKOFF_S[0])
            return
        results: list[RouteResult] = []
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        self.metrics.progress.begin()
        producer.begin()
        try:
            for tp, records in polled.items():
                state = self.states[tp]
                seen: list[tuple[str, str, int, int]] = []
                for record in records:
                    result = self.core.route(
                        IngressRecord(
                            tp.topic, tp.partition, record.offset, record.value, record.timestamp
                        ),
                        state,
                    )
                    for out in result.outputs:
                        if out.topic == TOPIC_ROUTER_STATE:  # the core's subject records
                            self._send_state(producer, out.key or b"", out.value or b"")
                            continue
                        producer.send(
                            out.topic, key=out.key, value=out.value, headers=list(out.headers)
                        )
                    if result.seen is not None:
                        seen.append(result.seen)
                    results.append(result)
                state.next_offset = records[-1].offset + 1
                self._send_state(producer, *window_batch(state, state.next_offset, seen))
                self._send_state(producer, *chain_snapshot(state))
                # The metadata keeps naming the partition's latest snapshot (a commit without
                # it would erase it).
                offsets[tp] = OffsetAndMetadata(
                    state.next_offset, snapshot_metadata(state.snapshot_at), -1
                )
            # Every transaction ends with a signed checkpoint of each chain it grew, so no
            # committed decision is ever outside a signature (no "unsigned tail" for a forged
            # record to hide in). One per chain per transaction of up to batch_max_records.
            self._send_checkpoints(producer)
            producer.send_offsets(offsets, consumer.group_metadata())
            producer.commit()
        except Exception as exc:
            self.metrics.transactions.labels("abort").inc()
            self._abort(producer, consumer, polled, exc)
            return
        self.metrics.transactions.labels("commit").inc()
        self.metrics.progress.committed()
        self._batch_limit = min(self.config.router.batch_max_records, 2 * self._batch_limit)
        down = self._outage.resumed()
        if down is not None:
            log.info("routing resumed: first transaction committed %.1f s after the failure", down)
            self.metrics.progress.kafka_down_since = None
        self._since_snapshot += len(results)
        self._count(results, received)

    def _skip_routed(self, polled: dict[Any, list[Any]]) -> None:
        """Drop records below their partition's next offset: routed and committed before (a
        consumer reset to an earlier offset, e.g. after its group's offsets expired, must not
        route them again, whatever the de-duplication window still holds)."""
        for tp in list(polled):
            start = self.states[tp].next_offset
            if start is None:
                continue
            records = polled[tp]
            kept = [r for r in records if r.offset >= start]
            if len(kept) == len(records):
                continue
            self.stats.skipped += len(records) - len(kept)
            log.warning(
                "%s partition %d: skipped %d record(s) below offset %d, routed before",
                tp.topic,
                tp.partition,
                len(records) - len(kept),
                start,
            )
            if kept:
                polled[tp] = kept
            else:
                del polled[tp]

    # -- snapshots -----------------------------------------------------------------------------

    def _snapshot_due(self) -> bool:
        every = self.config.router.snapshot_every_records
        if not every or not self.states or self._recovering:
            return False
        if self._snapshot_needed or self._since_snapshot >= every:
            return True
        slots = self.config.router.snapshot_every_batches
        return any(state.batches_since_snapshot >= slots for state in self.states.values())

    def _write_snapshots(self, producer: TransactionalProducer, consumer: Any) -> None:
        """One transaction: a snapshot of every owned partition, and the consumer offsets with
        metadata naming where each snapshot begins in `router.state`.

        The offsets committed are the ones already committed (the next offset to route), so
        the snapshot, the offsets and the metadata become visible together or not at all; a
        new owner that reads the metadata finds a committed snapshot there. A failure goes up
        to the loop, which abandons the producer and rebuilds the state (`_kafka_failed`).
        """
        for tp, state in self.states.items():
            if state.next_offset is None:  # never routed here: start where the consumer is
                state.next_offset = consumer.position(
                    tp, timeout_ms=int(self.config.router.kafka_timeout_s * 1000)
                )
        producer.begin()
        firsts: dict[TopicPartition, Any] = {}
        for tp, state in self.states.items():
            for part, (key, payload) in enumerate(snapshot_records(state)):
                future = self._send_state(producer, key, payload)
                if part == 0:
                    firsts[tp] = future
        at = {tp: producer.offset_of(future) for tp, future in firsts.items()}
        offsets = {
            tp: OffsetAndMetadata(state.next_offset, snapshot_metadata(at[tp]), -1)
            for tp, state in self.states.items()
        }
        producer.send_offsets(offsets, consumer.group_metadata())
        producer.commit()
        for tp, state in self.states.items():
            state.snapshot_at = at[tp]
        self._since_snapshot = 0
        self._snapshot_needed = False
        self.stats.snapshots += 1
        self.metrics.snapshots.inc()
        self.metrics.dedup_entries.set(sum(len(s.seen) for s in self.states.values()))
        log.debug("snapshot of %d partition(s) written", len(at))

    def _send_state(self, producer: Any, key: bytes, payload: bytes) -> Any:
        """Write one changelog record, sealed with the router's state MAC (the only way the
        router writes to `router.state`); returns the send's future."""
        return producer.send(TOPIC_ROUTER_STATE, key=key, value=self.seal.seal(key, payload))

    def _send_checkpoints(self, producer: Any) -> int:
        """Sign a checkpoint of every owned chain that grew since its last one (in the open
        transaction, so a checkpoint is visible exactly when the records it covers are)."""
        key = self.core.router_key
        now = datetime.now(UTC)
        count = 0
        for state in self.states.values():
            if state.uncheckpointed == 0:
                continue
            checkpoint = Checkpoint.for_chain(
                state.chain,
                previous=state.last_checkpoint,
                issued_at=now,
                private_key=key,
                agency=key.agency_id,
                key_id=key.key_id,
            )
            value = checkpoint.to_bytes()
            producer.send(TOPIC_CHECKPOINTS, key=state.chain.chain.encode(), value=value)
            self._send_state(producer, checkpoint_key(state.chain.chain), value)
            state.last_checkpoint = checkpoint
            count += 1
        return count

    def _final_checkpoints(self, producer: TransactionalProducer) -> None:
        """Cover everything routed with a signed checkpoint: at a clean stop, and after taking
        over partitions whose chains a router before per-transaction checkpoints left with an
        unsigned tail."""
        if not any(state.uncheckpointed for state in self.states.values()):
            return
        producer.begin()
        try:
            self._send_checkpoints(producer)
            producer.commit()
        except Exception as exc:
            log.warning(
                "final checkpoint failed (%s); the next run will write it",
                _describe(exc),
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            try:
                producer.abort()
            except Exception:
                producer.abandon()  # the next run's producer aborts what this one left open
            self._rebuild_states(self._consumer)

    def _reseal_adopted(self, producer: TransactionalProducer) -> None:
        """Write back, sealed and under the same keys, the unsealed records adopted at the
        replay, so that compaction replaces them and later starts need no adoption."""
        if not self._adopted:
            return
        adopted = self._adopted
        producer.begin()
        try:
            for key, payload in adopted.items():
                self._send_state(producer, key, payload)
            producer.commit()
        except Exception:
            # Kept for the next attempt; the run loop's fault handling abandons the producer
            # (aborting this transaction) and rebuilds the partitions' state.
            log.warning("writing the adopted state back sealed failed; will try again")
            raise
        self._adopted = {}
        log.warning("adopted and sealed %d unsealed %s record(s)", len(adopted), TOPIC_ROUTER_STATE)

    def _abort(
        self,
        producer: TransactionalProducer,
        consumer: Any,
        polled: dict[Any, list[Any]],
        exc: Exception,
    ) -> None:
        """Abort the failed transaction and route the batch again from rebuilt state.

        When the abort itself cannot be done in time (or the outcome of the commit is unknown:
        a deadline), the failure goes up to the loop, which abandons the producer, starts a
        fresh one and goes on from the committed offsets (`_kafka_failed`).
        """
        if isinstance(exc, KafkaDeadline) or not _recoverable(exc):
            if not _recoverable(exc):  # not Kafka's doing: leave nothing open, then stop
                with contextlib.suppress(Exception):
                    producer.abort()
            raise exc
        self._shrink_batch()
        log.warning(
            "routing transaction failed (%s); aborting and routing the batch again, at most %d "
            "record(s) a transaction until one commits",
            _describe(exc),
            self._batch_limit,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
        producer.abort()  # bounded; a failure goes up to the loop
        for tp, records in polled.items():
            consumer.seek(tp, records[0].offset)
        self._rebuild_states(consumer)

    def _shrink_batch(self) -> None:
        """Halve the records a transaction takes after a failed one (doubled back at each
        commit, up to `batch_max_records`): a batch that outlives the transaction timeout on a
        loaded machine is aborted by the coordinator, and routed again whole it would fail the
        same way for ever (seen with batches of 2,000 at load 13)."""
        self._batch_limit = max(1, self._batch_limit // 2)

    def _rebuild_states(self, consumer: Any) -> None:
        """Forget the state of every owned partition after an aborted transaction and rebuild it
        from the changelog, as on assignment (`_recover`).

        The aborted transaction may have advanced any owned partition's state (its chain, seen
        ids, subjects, or the last checkpoint); the changelog holds exactly what was committed.
        Rebuilding costs a replay, but only on an abort, where keeping a copy to restore would
        cost a copy of every polled partition's whole history on every batch.
        """
        owned = set(self.states)
        self.states.clear()
        self._recovering |= owned
        consumer.pause(*owned)

    def _count(self, results: Iterable[RouteResult], received: float) -> None:
        now = datetime.now(UTC)
        done = time.monotonic()
        m = self.metrics
        self.stats.batches += 1
        for result in results:
            record = result.record
            self.stats.records += 1
            m.routing_seconds.observe(done - received)
            # Header values of a record that failed verification are the sender's to choose:
            # labels take only known values (RouterMetrics.agency/event_type/reason).
            issuer, event_type = m.agency(record.issuer), m.event_type(record.event_type)
            if record.issuer and record.event_type:
                m.events_in.labels(issuer, event_type).inc()
            if record.outcome in (Outcome.QUARANTINED, Outcome.DUPLICATE):
                self.stats.quarantined += 1
                m.quarantined.labels(m.reason(record.reason)).inc()
            elif record.outcome == Outcome.DENIED:
                m.denied.labels(issuer, event_type).inc()
            for decision in record.recipients:
                self.stats.forwarded += 1
                m.forwarded.labels(m.agency(decision.recipient)).inc()
            if record.recipients and result.issued_at is not None:
                m.event_age_seconds.observe((now - result.issued_at).total_seconds())

    def _update_lag(self, consumer: Any) -> None:
        lag = 0
        for tp in self.states:
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                at = consumer_position(consumer, tp, timeout_ms=1000)
            except Exception:  # lag is best effort: it never stops routing
                continue
            if at is None:
                continue
            gauge = self._lag_gauges.get(tp)
            if gauge is None:
                gauge = self.metrics.consumer_lag.labels(tp.topic, str(tp.partition))
                self._lag_gauges[tp] = gauge
            gauge.set(max(0, highwater - at))
            lag += max(0, highwater - at)
        self.metrics.progress.lag = lag

    # -- partition ownership -----------------------------------------------------------------

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """Pause newly assigned partitions; the main loop rebuilds their state (`_recover`)."""
        new = {tp for tp in partitions if tp not in self.states}
        if new:
            self._recovering |= new
            if self._consumer is not None:
                self._consumer.pause(*new)
        self._assigned_at = time.monotonic()

    def _recover(self, consumer: Any) -> None:
        """Rebuild the state of the paused new partitions from the changelog, then resume."""
        log.info("rebuilding the state of %d new partition(s)", len(self._recovering))
        policy = self.config.router.dedup_policy
        new = {
            tp: PartitionState.new(chain_id(tp.topic, tp.partition), policy)
            for tp in self._recovering
        }
        by_chain = {state.chain.chain: state for state in new.values()}
        started = time.monotonic()
        committed = committed_offsets(consumer, list(new), self.config.router.kafka_timeout_s)
        for tp, state in new.items():
            meta = committed.get(tp)
            state.snapshot_at = snapshot_offset(meta.metadata) if meta is not None else None
        # From the earliest snapshot of the partitions taken over; from the beginning when any
        # has none (taken over from a router before snapshots, or never routed).
        # With snapshots off (`snapshot_every_records: 0`), always from the beginning.
        marks = [state.snapshot_at for state in new.values()]
        start = None if any(m is None for m in marks) else min(m for m in marks if m is not None)
        if not self.config.router.snapshot_every_records:
            start = None
        count = self._replay_changelog(by_chain, start=start)
        for tp, state in new.items():
            meta = committed.get(tp)
            if meta is not None and meta.offset >= 0:
                state.next_offset = meta.offset  # the group's word: what is routed
            state.assembling = None
        if start is None:
            self._snapshot_needed = True  # so that the next owner need not read it all again
        self.stats.recovery_records = count
        self.stats.recovery_start = start
        self.metrics.state_records_read.set(count)
        log.info(
            "recovered %d partition(s) from %d changelog records (from %s) in %.2f s",
            len(new),
            count,
            "the beginning" if start is None else f"the snapshot at offset {start}",
            time.monotonic() - started,
        )
        self.states.update(new)
        self._recovering.clear()
        consumer.resume(*new)
        self.metrics.partitions_owned.set(len(self.states))
        self._assigned_at = time.monotonic()

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._recovering.discard(tp)
            self.states.pop(tp, None)
            self._lag_gauges.pop(tp, None)
            with contextlib.suppress(KeyError):  # no lag reported yet for that partition
                self.metrics.consumer_lag.remove(tp.topic, str(tp.partition))
        self.metrics.partitions_owned.set(len(self.states))

    def _replay_changelog(self, states: dict[str, PartitionState], start: int | None = None) -> int:
        """Apply `router.state` from `start` (None: its beginning) to its end; the number of
        records read."""
        reader = self.clients.consumer(isolation_level="read_committed")
        try:
            partitions = [
                TopicPartition(TOPIC_ROUTER_STATE, p)
                for p in sorted(reader.partitions_for_topic(TOPIC_ROUTER_STATE) or [])
            ]
            if not partitions:  # no metadata (Kafka not answering): never recover from nothing
                raise KafkaUnavailable(f"no partitions of {TOPIC_ROUTER_STATE} known yet")
            reader.assign(partitions)
            if start is None or len(partitions) != 1:
                reader.seek_to_beginning(*partitions)
            else:
                reader.seek(partitions[0], start)
            ends = reader.end_offsets(partitions)
            log.info("replaying %s up to %s", TOPIC_ROUTER_STATE, ends)
            count = 0
            ignored = IgnoredRecords()
            adopt = self._adopted if self.adopt_unsealed_state else None
            pending = {tp for tp in partitions if ends[tp] > (start or 0)}
            progress_at = time.monotonic()
            stall_bound = 3 * self.config.router.kafka_timeout_s
            last_record_at = time.monotonic()
            while pending:
                if time.monotonic() - last_record_at > stall_bound or self._stop.is_set():
                    raise KafkaDeadline(f"replaying {TOPIC_ROUTER_STATE}", stall_bound)
                for records in reader.poll(timeout_ms=200).values():
                    for record in records:
                        reason = apply_changelog(
                            states,
                            record.key,
                            record.value,
                            self.seal,
                            adopt=adopt,
                            timestamp=record.timestamp,
                        )
                        if reason is not None:
                            ignored.add(reason, record.topic, record.partition, record.offset)
                        count += 1
                    progress_at = last_record_at = time.monotonic()
                for tp in list(pending):
                    if reached(reader, tp, ends[tp]):
                        pending.discard(tp)
                if pending and time.monotonic() - progress_at > CHANGELOG_STALL_S:
                    # No record for a while yet not at the end: the end may have moved back
                    # (an aborted transaction's tail) or the fetch may be stuck behind aborted
                    # records. Ask for the end again and fetch afresh from where we are.
                    ends = reader.end_offsets(partitions)
                    for tp in list(pending):
                        position = reader.position(tp)
                        if position >= ends[tp]:
                            pending.discard(tp)
                        else:
                            log.warning(
                                "%s partition %d: no progress at offset %d of %d; fetching again",
                                tp.topic,
                                tp.partition,
                                position,
                                ends[tp],
                            )
                            reader.seek(tp, position)
                    progress_at = time.monotonic()
            ignored.report(self.metrics)
            return count
        finally:
            reader.close(autocommit=False)


class IgnoredRecords:
    """Changelog records a replay did not apply: counted per reason in the metrics, the first
    few logged by topic, partition and offset, the rest in one summary line. Never a key or a
    value: keys hold subject references."""

    def __init__(self) -> None:
        self.by_reason: Counter[Ignored] = Counter()
        self.first: tuple[str, int, int] | None = None
        self.last: tuple[str, int, int] | None = None

    def add(self, reason: Ignored, topic: str, partition: int, offset: int) -> None:
        if sum(self.by_reason.values()) < IGNORED_LOGGED:
            log.warning(
                "%s partition %d offset %d: ignored, not applied (%s)",
                topic,
                partition,
                offset,
                reason.value,
            )
        self.by_reason[reason] += 1
        self.first = self.first or (topic, partition, offset)
        self.last = (topic, partition, offset)

    def report(self, metrics: RouterMetrics) -> None:
        for reason, n in self.by_reason.items():
            metrics.state_ignored.labels(reason.value).inc(n)
        total = sum(self.by_reason.values())
        if not total or self.first is None or self.last is None:
            return
        reasons = ", ".join(f"{r.value} {n}" for r, n in sorted(self.by_reason.items()))
        log.warning(
            "ignored %d %s record(s) the router did not write or cannot read (%s); first at "
            "partition %d offset %d, last at partition %d offset %d; none was applied",
            total,
            self.first[0],
            reasons,
            *self.first[1:],
            *self.last[1:],
        )
        if self.by_reason[Ignored.UNAUTHENTICATED]:
            log.warning(
                "%d %s record(s) carry no router seal: state written before sealing, or by "
                "someone else; see docs/audit.md (Router state) for an upgrade",
                self.by_reason[Ignored.UNAUTHENTICATED],
                self.first[0],
            )


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: RouterService) -> None:
        self.service = service

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.service.revoked(revoked)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.service.assigned(assigned)
