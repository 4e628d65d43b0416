"""Thin wrappers over kafka-python: the only module that constructs Kafka clients.

Everything else asks `KafkaClients` for a producer, consumer or admin client so that connection
and security settings live in one place, and an unreachable cluster becomes one clear error.
A `KafkaClients` acts for one principal (an agency, the router, `auditor`, `stats`, `operator`):
on a secured cluster its clients authenticate with that principal's SCRAM credential.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import (
    AuthorizationError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
    TopicAlreadyExistsError,
)
from kafka.partitioner.default import DefaultPartitioner, murmur2

from broker.config import KafkaSettings
from broker.errors import BrokerError
from broker.kafka.logs import redact_kafka_logs

T = TypeVar("T")

log = logging.getLogger(__name__)

# What kafka-python raises when no bootstrap server answers.
_UNREACHABLE = (KafkaTimeoutError, KafkaConnectionError)


class KafkaUnavailable(BrokerError):
    """Kafka could not be reached or refused a request the broker needs."""


class KafkaAuthError(KafkaUnavailable):
    """Kafka refused the principal: a wrong or revoked credential, an untrusted certificate."""


class KafkaDenied(KafkaUnavailable):
    """Kafka authenticated the principal but its ACLs do not allow what was asked."""


class KafkaDeadline(KafkaUnavailable):
    """A call into the Kafka client did not finish within its deadline."""

    def __init__(self, call: str, seconds: float) -> None:
        super().__init__(
            f"Kafka did not finish {call} within {seconds:g} s: check that the cluster is up "
            "and its controller quorum and coordinators are available"
        )
        self.call = call


def denied(principal: str | None, exc: AuthorizationError, doing: str) -> KafkaDenied:
    """One line for an ACL refusal: who, what, and the fix (never a traceback)."""
    kind = {
        "TopicAuthorizationFailedError": "topic",
        "GroupAuthorizationFailedError": "consumer group",
        "TransactionalIdAuthorizationFailedError": "transactional id",
        "ClusterAuthorizationFailedError": "cluster",
    }.get(type(exc).__name__, "resource")
    return KafkaDenied(
        f"Kafka refused {principal or 'this client'} {doing} (no ACL allows it on that {kind}, "
        f"{type(exc).__name__}): this principal is not entitled to it; if it should be, the "
        "operator adds it to the agency registry and runs `broker acl apply`"
    )


class _BootstrapFailures(logging.Handler):
    """Remembers why kafka-python's bootstrap connections failed.

    Workaround for kafka-python 3.0.12: a failed SASL authentication or TLS handshake while
    bootstrapping is logged and retried until `bootstrap_timeout_ms`, then reported only as
    `KafkaTimeoutError: Unable to bootstrap`, the same error as an unreachable host. The
    manager logs the real exception as an argument of its warning, so this handler keeps the
    last one per bootstrap address and `KafkaClients.check` names it.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self._guard = threading.Lock()
        self.last: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            if isinstance(arg, (SaslAuthenticationFailedError, ssl.SSLError, AuthorizationError)):
                with self._guard:
                    self.last = arg

    def take(self) -> BaseException | None:
        with self._guard:
            last, self.last = self.last, None
            return last


# kafka-python's DEBUG lines print whole requests and responses: never their record bytes.
redact_kafka_logs()

_FAILURES = _BootstrapFailures()
logging.getLogger("kafka.net.manager").addHandler(_FAILURES)


def keep_bootstrap_failures() -> None:
    """Let `_BootstrapFailures` see the connection warnings while kafka-python is silenced."""
    manager = logging.getLogger("kafka.net.manager")
    manager.setLevel(logging.WARNING)
    manager.propagate = False


_CHECKED: set[tuple[str, str | None]] = set()
_CHECK_TIMEOUT_MS = 8000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False
    # message.timestamp.type=LogAppendTime: record timestamps are the broker's time of receipt.
    append_time: bool = False


class KafkaClients:
    """Factory of kafka-python clients for one cluster."""

    def __init__(self, settings: KafkaSettings, principal: str | None = None) -> None:
        self.settings = settings
        self.principal = principal
        self._options = settings.client_options(principal)
        self.check()

    def check(self) -> None:
        """Once per process and principal: connect and authenticate, or fail in one line.

        Without this a wrong password would surface 30 s later as "unreachable".
        """
        key = (self.settings.bootstrap_servers, self.principal)
        if not self.settings.secured or key in _CHECKED:
            return
        _FAILURES.take()
        try:
            admin = KafkaAdminClient(**self._options, bootstrap_timeout_ms=_CHECK_TIMEOUT_MS)
        except _UNREACHABLE as exc:
            raise self._unreachable(exc) from None
        admin.close()
        _CHECKED.add(key)

    def _unreachable(self, exc: Exception) -> KafkaUnavailable:
        cause = _FAILURES.take()
        if cause is None and self.settings.secured:
            cause = self._probe_tls()
        who = self.principal or "this client"
        if isinstance(cause, SaslAuthenticationFailedError):
            return KafkaAuthError(
                f"Kafka at {self.settings.bootstrap_servers} refused the credential of {who} "
                f"(SCRAM authentication failed: wrong, revoked or never issued): ask the "
                f"operator to issue it again (`broker kafka credentials issue {who} --config "
                f"CONFIG`) and put the new {who}.json in {self.settings.credentials_dir}"
            )
        if isinstance(cause, ssl.SSLError):
            return KafkaAuthError(
                f"TLS with Kafka at {self.settings.bootstrap_servers} failed for {who} "
                f"({type(cause).__name__}: {getattr(cause, 'reason', None) or 'handshake'}): "
                "kafka.ssl_cafile must be the CA certificate of that cluster "
                "(for the local Kafka, <data_dir>/client/ca.pem), and the certificate current"
            )
        return KafkaUnavailable(
            f"Kafka is unreachable at {self.settings.bootstrap_servers} "
            f"({type(exc).__name__}): start it (`broker kafka start`) or correct "
            "kafka.bootstrap_servers in the config"
        )

    def _probe_tls(self) -> BaseException | None:
        """Why a secured bootstrap failed when kafka-python's warnings did not say.

        The broker answers a failed SCRAM exchange with an error and closes the connection;
        kafka-python 3.0.12 often sees the close before it reads the answer and logs only
        `KafkaConnectionError`, and it reports a certificate it does not trust the same way.
        So: if a TLS handshake with the configured CA succeeds, the broker is up and trusted
        and it was the credential it refused; if the handshake fails, that is the cause.
        """
        for server in self.settings.bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            try:
                context = ssl.create_default_context(cafile=str(self.settings.ssl_cafile))
                with (
                    socket.create_connection((host, int(port)), timeout=3) as raw,
                    context.wrap_socket(raw, server_hostname=host),
                ):
                    refused: BaseException = SaslAuthenticationFailedError(
                        "the broker closed the connection"
                    )
                    return refused
            except ssl.SSLError as exc:
                return exc
            except (OSError, ValueError):
                continue  # not listening (or not an address): try the next server
        return None

    def producer(self, **overrides: Any) -> KafkaProducer:
        options: dict[str, Any] = {
            **self._options,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 5,
            "partitioner": CachedHashPartitioner(),
            # kafka-python's own client metrics: never read (the services export their own),
            # recorded on every request and batch (docs/performance.md).
            "metrics_enabled": False,
            **overrides,
        }
        try:
            return KafkaProducer(**options)
        except _UNREACHABLE as exc:
            raise self._unreachable(exc) from None

    def bounded_consumer(
        self, *topics: str, timeout_s: float, what: str, **overrides: Any
    ) -> KafkaConsumer:
        """A consumer whose making waits at most `timeout_s` (`within_deadline`): a frozen
        cluster accepts connections without answering, and kafka-python's bootstrap then
        blocks past its own timeout (the frozen-cluster fault test). `what` names the wait in
        the `KafkaDeadline` raised."""
        return within_deadline(
            lambda: self.consumer(
                *topics, bootstrap_timeout_ms=int(timeout_s * 1000), **overrides
            ),
            timeout_s,
            what,
            discard=lambda consumer: consumer.close(autocommit=False, timeout_ms=0),
        )

    def bounded_transactional_producer(
        self,
        transactional_id: str,
        *,
        timeout_s: float,
        clear_stuck_flush: bool = True,
        **overrides: Any,
    ) -> TransactionalProducer:
        """A transactional producer none of whose calls waits longer than `timeout_s`.

        The only transactional producer there is: a bare kafka-python one sends every record
        on its own after its first commit (see `TransactionalProducer`); `clear_stuck_flush`
        is False only in `broker bench router`, to measure what that costs."""
        return TransactionalProducer(
            self,
            transactional_id,
            timeout_s=timeout_s,
            clear_stuck_flush=clear_stuck_flush,
            **overrides,
        )

    def consumer(self, *topics: str, **overrides: Any) -> KafkaConsumer:
        options: dict[str, Any] = {
            **self._options,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "isolation_level": "read_committed",
            "metrics_enabled": False,  # as the producer's
            **overrides,
        }
        try:
            return KafkaConsumer(*topics, **options)
        except _UNREACHABLE as exc:
            raise self._unreachable(exc) from None

    def subscribe(
        self,
        consumer: KafkaConsumer,
        topics: Iterable[str],
        *,
        listener: Any = None,
        timeout_s: float = 30.0,
    ) -> None:
        """Subscribe a group consumer to `topics`, then load their partitions before it polls.

        This works around a race in kafka-python 3.0.12's group join. A join runs as a task
        on the client's IO thread, and only a later `poll()` that still finds `need_rejoin()`
        true applies its assignment and turns heartbeats back on. A consumer that joins
        before it knows its topics' partitions (right after `subscribe()`, metadata lags
        the first JoinGroup by about 100 ms) is assigned nothing by the leader. The leader
        rejoins when the metadata arrives, but only because its assignment snapshot differs
        from the metadata, and the join task itself resets that snapshot. If the join ends
        while no `poll()` is waiting on it (likely with a short poll timeout or a busy
        machine), later polls see no rejoin needed. The member then never takes its
        assignment and never heartbeats again. The coordinator evicts it after
        `session_timeout_ms` and it stays idle for good. With the partitions known before
        the first poll, the first assignment is complete and that rejoin never happens.
        A later change of partitions (some added to a subscribed topic) can still trigger
        it, because `need_rejoin()` ignores a join that is still in flight.
        """
        wanted = list(topics)
        consumer.subscribe(wanted, listener=listener)
        deadline = time.monotonic() + timeout_s
        while True:
            # topics() always sends a metadata request; the group coordinator snapshots the
            # subscribed topics' partitions from the response it gets.
            consumer.topics()
            missing = [t for t in wanted if not consumer.partitions_for_topic(t)]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise KafkaUnavailable(
                    f"no partition metadata for {', '.join(missing)} after {timeout_s:.0f} s"
                )
            time.sleep(0.2)

    def explain_missing(self, topic: str, doing: str = "reading") -> BrokerError:
        """Why a consumer sees no partitions of `topic`: it does not exist, or this principal
        may not see it. (Kafka answers both with the same error to a principal that may not
        describe the topic, so that its existence is not revealed; the message says so.)"""
        with self.admin() as admin:
            (described,) = admin.describe_topics([topic])
        code = described.get("error_code", 0) if isinstance(described, dict) else 0
        if code == 29:  # TOPIC_AUTHORIZATION_FAILED
            return KafkaDenied(
                f"Kafka refused {self.principal or 'this client'} {doing} {topic} (no ACL "
                "allows it; Kafka does not say whether the topic exists): this principal is not "
                "entitled to it; if it should be, the operator adds it to the agency registry "
                "and runs `broker acl apply`"
            )
        return KafkaUnavailable(
            f"topic {topic} does not exist: check the name (and the config's Kafka cluster)"
        )

    @contextmanager
    def admin(self) -> Iterator[KafkaAdminClient]:
        try:
            client = KafkaAdminClient(**self._options)
        except _UNREACHABLE as exc:
            raise self._unreachable(exc) from None
        try:
            yield client
        finally:
            client.close()

    def ensure_topics(self, specs: Iterable[TopicSpec]) -> list[str]:
        """Create the topics that are missing (when the config allows it); return those made."""
        wanted = {spec.name: spec for spec in specs}
        with self.admin() as admin:
            existing = set(admin.list_topics())
            missing = [spec for name, spec in wanted.items() if name not in existing]
            if not missing:
                return []
            if not self.settings.topics.create:
                raise KafkaUnavailable(
                    "topics missing and kafka.topics.create is false: create "
                    + ", ".join(spec.name for spec in missing)
                )
            new = [
                NewTopic(
                    spec.name,
                    spec.partitions,
                    self.settings.topics.replication_factor,
                    topic_configs={
                        **({"cleanup.policy": "compact"} if spec.compacted else {}),
                        **({"message.timestamp.type": "LogAppendTime"} if spec.append_time else {}),
                    },
                )
                for spec in missing
            ]
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                # Another process (a second router instance, say) created them meanwhile.
                admin.wait_for_topics([spec.name for spec in missing], timeout_ms=30000)
                return []
            except AuthorizationError:
                raise KafkaDenied(
                    f"topics missing and {self.principal or 'this client'} may not create "
                    "topics: " + ", ".join(spec.name for spec in missing) + ": the operator "
                    "creates them with `broker acl apply --config CONFIG`"
                ) from None
            except KafkaError as exc:
                raise KafkaUnavailable(
                    f"could not create topics ({type(exc).__name__}): check the broker's "
                    "permissions and kafka.topics settings"
                ) from None
            admin.wait_for_topics([spec.name for spec in missing], timeout_ms=30000)
            log.info("created topics %s", ", ".join(spec.name for spec in missing))
            return [spec.name for spec in missing]


class TransactionalProducer:
    """A transactional producer whose every call has a deadline, and that can be renewed.

    Workaround for kafka-python 3.0.12: its `send_offsets_to_transaction`, `commit_transaction`
    and `abort_transaction` wait on the coordinator's answer with no timeout, so one request in
    flight to a coordinator that died blocks the caller for ever. Here the same steps are taken
    (the transaction manager's request, then a wake-up of the sender thread, exactly as
    `KafkaProducer` does) but the result is awaited with a deadline; `init_transactions`,
    metadata waits and full buffers are bounded by `max_block_ms` set to the same deadline.

    When a deadline passes (or the producer fails), `renew()` abandons the producer without
    waiting for it and starts a fresh one with the same transactional id: its
    `init_transactions` fences the old one and has the coordinator abort whatever that left
    open, so nothing of the abandoned transaction ever becomes visible to `read_committed`
    readers.

    Second workaround for kafka-python 3.0.12 (the Java client's KAFKA-12870): while a commit
    or abort waits for batches still in the record accumulator, the sender thread calls the
    accumulator's `begin_flush()` and nothing ever ends that flush, so from the first commit
    on every batch counts as "flushing": each record goes out in a produce request of its own
    as soon as it is sent and `linger_ms` is ignored. After each commit or abort this class
    takes back the flush the sender began (`_end_stuck_flush`); the accumulator internals it
    touches are checked when the producer is created, so a kafka-python that changed them
    fails at start rather than silently. docs/performance.md has the whole story.
    """

    def __init__(
        self,
        clients: KafkaClients,
        transactional_id: str,
        *,
        timeout_s: float,
        clear_stuck_flush: bool = True,
        **options: Any,
    ) -> None:
        self._clients = clients
        self.transactional_id = transactional_id
        self.timeout_s = timeout_s
        self.clear_stuck_flush = clear_stuck_flush
        deadline_ms = int(timeout_s * 1000)
        self._options = {
            **options,
            "max_block_ms": deadline_ms,
            "bootstrap_timeout_ms": deadline_ms,
            "request_timeout_ms": min(deadline_ms, 30000),
        }
        self._producer: KafkaProducer | None = None
        self.renewals = 0

    @property
    def ready(self) -> bool:
        return self._producer is not None

    def start(self) -> None:
        """Connect and initialise transactions (fencing any earlier producer of this id).

        Bounded by the deadline (`within_deadline`); a producer that comes up after it is
        abandoned.
        """
        if self._producer is not None:
            return
        self._producer = within_deadline(
            self._create,
            self.timeout_s,
            "connecting and initialising transactions",
            discard=_abandon,
        )

    def _create(self) -> KafkaProducer:
        producer = self._clients.producer(transactional_id=self.transactional_id, **self._options)
        try:
            flushes_in_progress(producer)  # the internals the flush workaround needs are there
            producer.init_transactions()  # bounded by max_block_ms
        except KafkaTimeoutError:
            _abandon(producer)
            raise KafkaDeadline("initialising transactions", self.timeout_s) from None
        except BaseException:
            _abandon(producer)
            raise
        return producer

    def renew(self) -> None:
        """Abandon the current producer without waiting for it, then start a fresh one."""
        self.abandon()
        self.renewals += 1
        self.start()

    def abandon(self) -> None:
        """Drop the producer at once; it is closed in the background (never waited for)."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            threading.Thread(
                target=_abandon, args=(producer,), name="kafka-producer-abandon", daemon=True
            ).start()

    def _live(self) -> KafkaProducer:
        if self._producer is None:
            raise KafkaUnavailable("the transactional producer is not started")
        return self._producer

    def begin(self) -> None:
        self._live().begin_transaction()

    def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, headers: Any = None
    ) -> Any:
        """Append a record to the open transaction (waits at most the deadline for metadata
        or buffer space); delivery failures surface at `commit`."""
        try:
            return self._live().send(topic, value=value, key=key, headers=headers)
        except KafkaTimeoutError:
            raise KafkaDeadline(f"accepting a record for {topic}", self.timeout_s) from None

    def offset_of(self, future: Any) -> int:
        """The offset a record sent in the open transaction was written at (waits at most the
        deadline for its delivery).

        The record's batch is made ready at once, as `flush()` does: waking the sender alone
        sends nothing before `linger_ms` (the router's is 1 s), so every snapshot, which needs
        its first part's offset, used to stall the router for a second. The flush is taken
        back when the record is written, so the count stays balanced (see the stuck-flush
        workaround below)."""
        producer = self._live()
        counter = flushes_in_progress(producer)
        producer._accumulator.begin_flush()
        try:
            producer._sender.wakeup()
            return int(future.get(timeout=self.timeout_s).offset)
        except KafkaTimeoutError:
            raise KafkaDeadline("writing a record", self.timeout_s) from None
        finally:
            counter.decrement()

    def send_offsets(self, offsets: Any, group_metadata: Any) -> None:
        producer = self._live()
        manager = producer._transaction_manager
        self._await(
            manager.send_offsets_to_transaction(offsets, group_metadata),
            producer,
            "adding the consumed offsets to the transaction",
        )

    def commit(self) -> None:
        self._end_transaction(commit=True)

    def abort(self) -> None:
        self._end_transaction(commit=False)

    def _end_transaction(self, *, commit: bool) -> None:
        producer = self._live()
        manager = producer._transaction_manager
        counter = flushes_in_progress(producer)
        before = counter.get()
        result = manager.begin_commit() if commit else manager.begin_abort()
        try:
            self._await(result, producer, "the commit" if commit else "the abort")
        finally:
            if result.is_done and self.clear_stuck_flush:
                _end_stuck_flush(counter, before)

    def _await(self, result: Any, producer: KafkaProducer, call: str) -> None:
        producer._sender.wakeup()
        if not result.wait(timeout_ms=self.timeout_s * 1000):  # raises the call's error
            raise KafkaDeadline(call, self.timeout_s)

    def close(self) -> None:
        """Close, waiting at most the deadline for what is in flight."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                producer.close(timeout=self.timeout_s)
            except KafkaError:
                _abandon(producer)



def within_deadline(
    make: Callable[[], T], seconds: float, what: str, *, discard: Callable[[T], None]
) -> T:
    """`make()` run in a helper thread, awaited for at most `seconds` (plus a second).

    kafka-python 3.0.12 checks a bootstrap's deadline only between attempts, and its TLS
    handshake has none: one attempt against a broker that accepts connections but never
    answers (a frozen process) blocks the constructor for as long as the broker stays frozen.
    Past the deadline this raises `KafkaDeadline`; a client that comes up later is handed to
    `discard` by the helper thread, and one that never comes up leaves only that thread.
    """
    guard = threading.Lock()
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def create() -> None:
        try:
            made = make()
        except BaseException as exc:
            with guard:
                outcome["error"] = exc
                done.set()
            return
        with guard:
            late = outcome.get("abandoned", False)
            outcome["made"] = made
            done.set()
        if late:
            discard(made)

    threading.Thread(target=create, name="kafka-client-start", daemon=True).start()
    done.wait(seconds + 1.0)
    with guard:
        if not done.is_set():
            outcome["abandoned"] = True
            raise KafkaDeadline(what, seconds)
    if "error" in outcome:
        raise outcome["error"]
    made: T = outcome["made"]
    return made

def _abandon(producer: KafkaProducer) -> None:
    """Close a producer without waiting for anything it has in flight.

    `KafkaProducer.close(timeout=0)` first flushes, which raises when batches are pending, and
    then never stops the sender thread; so stop the sender first (it fails the pending batches
    and closes its connections), then close.
    """
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
        sender.join(1.0)
    try:
        producer.close(timeout=0)
    except Exception as exc:  # already failed: nothing of it is used again
        log.debug("abandoned producer did not close cleanly: %s", exc)


# Waits between attempts to get going again while Kafka does not answer (then the last, again).
RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 3.0)
# A broker that has just started may refuse a SCRAM login until it has replayed the metadata
# holding the credentials. During an outage a refused credential is therefore retried for this
# long (from the first refusal) before a service stops with the one-line credential error.
AUTH_GRACE_S = 60.0


def recoverable(exc: BaseException) -> bool:
    """Whether a service loop should wait for Kafka and go on after `exc` (else it stops).

    Refusals (credentials, ACLs) and this instance being replaced in its group (another process
    runs with the same instance id) do not go away by retrying; nor does a bug.
    """
    from kafka.errors import FencedInstanceIdError

    if isinstance(exc, (KafkaDenied, KafkaAuthError, AuthorizationError, FencedInstanceIdError)):
        return False
    return isinstance(exc, (KafkaError, KafkaUnavailable, OSError))


def describe(exc: BaseException) -> str:
    """One line for a log: the error's message, else its type."""
    if isinstance(exc, KafkaUnavailable):
        return str(exc)
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if text.startswith(name):  # kafka-python's messages often begin with their type
        return text
    return f"{name}: {text}" if text else name


def rewind_to_committed(consumer: KafkaConsumer, bound_s: float) -> None:
    """Seek every assigned partition to the group's committed offset, all within `bound_s`.

    After a deadline the fate of the open transaction is unknown (the commit may have
    reached the coordinator). A fresh producer's initialisation completes it either way,
    and the committed offsets (read as `read_committed`: stable) then say where to go on.
    """
    partitions = list(consumer.assignment())
    committed = committed_offsets(consumer, partitions, bound_s)
    for tp in partitions:
        if tp in committed:
            consumer.seek(tp, committed[tp].offset)
        else:
            consumer.seek_to_beginning(tp)


def committed_offsets(
    consumer: KafkaConsumer, partitions: list[Any], bound_s: float
) -> dict[Any, Any]:
    """The group's committed offset (with its metadata) of each of `partitions` that has one,
    in ONE request, within `bound_s`.

    `KafkaConsumer.committed` in kafka-python 3.0.12 asks for one partition per request, so
    rewinding after every Kafka failure cost a round trip per owned partition (0.54 s for 120
    partitions on a local Kafka, against 9 ms for one request of all 120): it asks the
    coordinator the same way `committed` does, for all of them at once.
    """
    if not partitions:
        return {}
    try:
        found = consumer._coordinator.fetch_committed_offsets(
            partitions, timeout_ms=int(bound_s * 1000)
        )
    except KafkaTimeoutError:
        raise KafkaDeadline("reading the committed offsets", bound_s) from None
    asked = set(partitions)
    return {tp: meta for tp, meta in found.items() if tp in asked and meta.offset >= 0}


def consumer_position(
    consumer: KafkaConsumer, tp: Any, timeout_ms: int | None = None
) -> int | None:
    """The offset of the next record `poll` returns for `tp`, for loops that ask after every poll.

    `KafkaConsumer.position` in kafka-python 3.0.12 refreshes committed offsets, resets and
    validates the positions of EVERY assigned partition before it answers for one, so asking
    for each of P partitions costs O(P²) (measured on a local Kafka: 79 µs a call with 3
    partitions assigned, 136 with 30, 434 with 120, so 52 ms for one sweep of 120 partitions
    after every batch). The position the consumer already holds is the same offset; only when
    it holds none yet (just assigned, or a seek to the beginning or end not yet done by a
    fetch) is `KafkaConsumer.position` asked, as before. docs/performance.md has the figures.
    """
    try:
        held = consumer._subscription.position(tp)
    except (AttributeError, KeyError):  # not assigned (its error), or other internals
        held = None
    if held is not None:
        return int(held.offset)
    return consumer.position(tp, timeout_ms=timeout_ms)  # type: ignore[no-any-return]


def reached(consumer: KafkaConsumer, tp: Any, end: int) -> bool:
    """True once the consumer's position in `tp` is at `end` or past it (`consumer_position`)."""
    return (consumer_position(consumer, tp) or 0) >= end


class KafkaRecovery:
    """How a transactional service (the router, the alerts service) lives through Kafka
    failures: one place, so that every such service behaves the same (docs/faults.md).

    - `retryable`: a failure Kafka gets over (`recoverable`), or a refused credential while
      Kafka comes back from an outage, for `AUTH_GRACE_S` from the first refusal;
    - `failed`: the loop gave up its producer and state; logged once per outage (`paused`, a
      %-format of one argument: what failed), not once per retry;
    - `restart`: one attempt at a fresh producer (fencing the abandoned one) and rewinding the
      consumer to the committed offsets; after a failure, a back-off (`RETRY_BACKOFF_S`);
    - `resumed`: the first transaction committed after an outage ends it;
    - `at_start`: a call made before the loop, retried while Kafka fails it in a way that passes;
      `connect`: the producer, consumer and subscription a service starts with, each so.

    It logs through the service's own logger, so each service's log reads as its own.
    """

    def __init__(self, stop: threading.Event, logger: logging.Logger, *, paused: str) -> None:
        self._stop = stop
        self.log = logger
        self.paused = paused
        self.failed_at: float | None = None  # when Kafka last failed us; None while working
        self.auth_refused_since: float | None = None  # first refused login of this outage
        self.retries = 0

    def retryable(self, exc: BaseException) -> bool:
        """`recoverable`, and a refused credential while Kafka is coming back from an outage
        (for `AUTH_GRACE_S` from the first refusal: a restarting broker may not know the
        credentials yet); a refusal outside an outage, or longer, stops the service."""
        if recoverable(exc):
            return True
        if not isinstance(exc, KafkaAuthError) or self.failed_at is None:
            return False
        now = time.monotonic()
        if self.auth_refused_since is None:
            self.auth_refused_since = now
            self.log.warning(
                "Kafka refused the credential while coming back (%s); a restarting broker may "
                "not know it yet: retrying for %.0f s",
                describe(exc),
                AUTH_GRACE_S,
            )
        return now - self.auth_refused_since < AUTH_GRACE_S

    def failed(self, exc: BaseException) -> bool:
        """Note that Kafka failed the loop (it has abandoned its producer and state); True at
        the first failure of an outage, when it is logged."""
        if self._stop.is_set():
            self.log.debug("stopping after: %s", describe(exc))
            return False
        if self.failed_at is None:
            self.failed_at = time.monotonic()
            self.retries = 0
            self.log.warning(
                self.paused, describe(exc), exc_info=self.log.isEnabledFor(logging.DEBUG)
            )
            return True
        self.log.debug("still failing: %s", describe(exc))
        return False

    def restart(self, producer: TransactionalProducer, rewind: Callable[[], None]) -> bool:
        """One attempt at a fresh producer (fencing the abandoned one); on success, `rewind()`
        (every owned partition back at its committed offset). False (after a back-off) if it
        failed."""
        try:
            producer.renew()
            rewind()
        except Exception as exc:
            if not self.retryable(exc):
                raise
            producer.abandon()
            delay = RETRY_BACKOFF_S[min(self.retries, len(RETRY_BACKOFF_S) - 1)]
            self.retries += 1
            if self.retries == 2 and not self._stop.is_set():  # the first can fail on a move
                self.log.warning(
                    "Kafka is unavailable (%s): retrying every %.0f s or so until it answers",
                    describe(exc),
                    RETRY_BACKOFF_S[-1],
                )
            else:
                self.log.debug("retry %d failed: %s", self.retries, describe(exc))
            self._stop.wait(delay)
            return False
        if self.failed_at is not None:
            self.log.info(
                "Kafka answers again: fresh transactional producer ready %.1f s after the failure",
                time.monotonic() - self.failed_at,
            )
        return True

    def resumed(self) -> float | None:
        """A transaction was committed: the seconds since the outage began if this ends one
        (the caller says so in its log), else None."""
        if self.failed_at is None:
            return None
        down = time.monotonic() - self.failed_at
        self.failed_at = None
        self.auth_refused_since = None
        return down

    def connect(
        self,
        clients: KafkaClients,
        producer: TransactionalProducer,
        make_consumer: Callable[[], KafkaConsumer],
        topics: list[str],
        *,
        listener: Any,
        subscribe_timeout_s: float,
    ) -> KafkaConsumer:
        """Before the loop: initialise transactions, make the consumer (`make_consumer`,
        within a deadline) and subscribe it to `topics`, each step retried as `at_start` (a
        cluster just restarted or thawed may take a while to answer). The subscribed
        consumer."""
        self.at_start("initialising transactions", producer.start)
        consumer = self.at_start("connecting the consumer", make_consumer)
        self.at_start(
            f"subscribing to {', '.join(topics)}",
            lambda: clients.subscribe(
                consumer, topics, listener=listener, timeout_s=subscribe_timeout_s
            ),
        )
        return consumer

    def at_start(self, what: str, call: Callable[[], T]) -> T:
        """`call()`, retried with back-off while Kafka fails it in a way that passes (a node
        restarting when the service starts); logged once. Stopping ends the retries (raising)."""
        attempt = 0
        while True:
            try:
                return call()
            except Exception as exc:
                if not recoverable(exc) or self._stop.is_set():
                    raise
                if attempt == 0:
                    self.log.warning(
                        "%s failed (%s): retrying every %.0f s or so until Kafka answers",
                        what,
                        describe(exc),
                        RETRY_BACKOFF_S[-1],
                    )
                delay = RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)]
                attempt += 1
                if self._stop.wait(delay):
                    raise


class KafkaClientChanged(BrokerError):
    """The installed kafka-python is not the one our workarounds were written for."""


def flushes_in_progress(producer: KafkaProducer) -> Any:
    """The record accumulator's count of flushes in progress (kafka-python 3.0.12 internals:
    `KafkaProducer._accumulator._flushes_in_progress`, an `AtomicInteger` read by
    `RecordAccumulator.flush_in_progress()`), checked to be what the flush workaround expects."""
    accumulator = getattr(producer, "_accumulator", None)
    counter = getattr(accumulator, "_flushes_in_progress", None)
    expected = callable(getattr(accumulator, "flush_in_progress", None)) and all(
        callable(getattr(counter, name, None)) for name in ("get", "decrement")
    )
    if not expected:
        raise KafkaClientChanged(
            f"kafka-python {_kafka_version()} has no record accumulator flush counter where "
            "3.0.12 has it: the workaround for its stuck flush (broker/kafka/client.py, "
            "docs/performance.md) must be checked against this version, or kafka-python "
            "pinned back to 3.0.12"
        )
    return counter


def _end_stuck_flush(counter: Any, before: int) -> None:
    """Take back the flush kafka-python's sender began while a commit or abort waited for
    pending batches (it begins at most one, and never ends it): the count goes back to what
    it was before the commit, never below."""
    while counter.get() > max(before, 0):
        counter.decrement()


def _kafka_version() -> str:
    import kafka

    return str(getattr(kafka, "__version__", "unknown"))


class CachedHashPartitioner(DefaultPartitioner):  # type: ignore[misc]
    """kafka-python's default partitioner (Java's murmur2 of the key), with the hash cached.

    kafka-python computes murmur2 in pure Python: about 35 us for a 40-byte key, paid on every
    record sent. The router sends each audit record under its chain's key and each forward
    under the child's feed key, so keys repeat: a hash is computed once per key while it stays
    among the most recent `CACHED_KEYS`. Partitions are exactly the default partitioner's
    (`tests/unit/kafka/test_partitioner.py`), so records keep their partitions across the change.
    """

    CACHED_KEYS = 16_384

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: Any,
        cluster: Any,
    ) -> int:
        if serialized_key is None or topic not in cluster.topics():
            return int(
                super().partition(topic, key, serialized_key, value, serialized_value, cluster)
            )
        partitions = sorted(cluster.partitions_for_topic(topic))
        return int(partitions[_key_hash(bytes(serialized_key)) % len(partitions)])


@lru_cache(maxsize=CachedHashPartitioner.CACHED_KEYS)
def _key_hash(key: bytes) -> int:
    """murmur2 of `key` as Java's partitioner uses it (positive)."""
    return int(murmur2(key)) & 0x7FFFFFFF
