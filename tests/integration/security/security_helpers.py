"""Helpers of the security acceptance tests (issue 12): act as one principal, record the outcome.

An `Actor` holds one principal's producer, consumer and admin client (made through
`KafkaClients`, as every command does) and performs one operation at a time. `attempt` turns
the result into exactly one of ALLOW (the operation succeeded), DENY (Kafka answered with an
authorization error) or `other: <error>` (anything else: a timeout, a wrong error), so that a
test can demand allow-or-deny and nothing else.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, NewTopic, OffsetSpec
from kafka.admin._acls import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
)
from kafka.errors import (
    AuthorizationError,
    NoError,
    PolicyViolationError,
    RetriableError,
    for_code,
)
from kafka.structs import OffsetAndMetadata

from broker.config import KafkaSettings
from broker.kafka.client import KafkaClients

ALLOW = "allow"
DENY = "deny"
# Authorised, then refused by the broker's rules (DeleteRecords on a compacted topic).
POLICY = "authorised, refused by policy"
# How long an operation may take before its outcome counts as a hang (neither allow nor deny).
OPERATION_TIMEOUT_S = 10.0
# A record written by these tests: recognisable, and meaningless to every reader.
MARK_KEY = b"security-test/junk"
MARK_VALUE = b"junk written by the security acceptance tests"


class Hung(Exception):
    """An operation neither succeeded nor was refused in time."""


def attempt(action: Callable[[], object]) -> str:
    """ALLOW, DENY, or `other: <error>` for anything that is neither."""
    try:
        action()
    except AuthorizationError:
        return DENY
    except PolicyViolationError:
        return POLICY
    except Exception as exc:  # any other outcome is reported, not raised
        return f"other: {type(exc).__name__}: {str(exc)[:160]}"
    return ALLOW


def raise_errors(errors: Any) -> None:
    """Raise the first error class or instance among a response's per-resource results."""
    if isinstance(errors, dict):
        for value in errors.values():
            raise_errors(value)
    elif isinstance(errors, (list, tuple)):
        for value in errors:
            raise_errors(value)
    elif isinstance(errors, type) and issubclass(errors, Exception) and errors is not NoError:
        raise errors()
    elif isinstance(errors, Exception):
        raise errors


def with_coordinator_retries(action: Callable[[], Any], timeout_s: float = 15.0) -> Any:
    """Retry while the group coordinator is still loading (the first group of a fresh cluster
    makes Kafka create `__consumer_offsets`): a retriable error is not an outcome."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return action()
        except RetriableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class Actor:
    """One principal's clients on the cluster, reused for every operation it attempts."""

    def __init__(self, settings: KafkaSettings, principal: str, *, transactional_id: str | None):
        self.principal = principal
        self.clients = KafkaClients(settings, principal)
        self._stack = contextlib.ExitStack()
        self.admin: KafkaAdminClient = self._stack.enter_context(self.clients.admin())
        self._producer: KafkaProducer | None = None
        self._consumer: KafkaConsumer | None = None
        self._stack.callback(self._drop_clients)
        self.timings: list[tuple[float, str]] = []
        # A transactional producer writes what must stay invisible (aborted) to the shared
        # topics other tests read; only principals allowed transactions get one.
        self.transactional: KafkaProducer | None = None
        if transactional_id is not None:
            # A bare kafka-python one: what is probed is Kafka's authorisation of each call
            # (its flush bug, which `TransactionalProducer` works around, is of no concern here).
            self.transactional = self.clients.producer(
                transactional_id=transactional_id, max_block_ms=5000, linger_ms=0
            )
            self.transactional.init_transactions()
            self._stack.callback(self.transactional.close, timeout=2)

    def close(self) -> None:
        self._stack.close()

    # kafka-python keeps a topic it was refused in its metadata and raises that refusal again
    # on the next send or poll, whatever the topic: after a refusal the client is replaced.

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            # Not idempotent: each Produce request is authorised for its topic alone (an
            # idempotent producer of a principal that may write nowhere is refused earlier,
            # at InitProducerId, for the whole cluster).
            self._producer = self.clients.producer(
                max_block_ms=5000, linger_ms=0, enable_idempotence=False
            )
        return self._producer

    @property
    def consumer(self) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = self.clients.consumer(group_id=None, fetch_max_wait_ms=50)
        return self._consumer

    def _drop_clients(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=2)
            self._producer = None
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
            self._consumer = None

    def attempt(self, action: Callable[[], object]) -> str:
        """`attempt(action)`, with fresh clients for the next operation after a refusal."""
        began = time.monotonic()
        outcome = attempt(action)
        self.timings.append((time.monotonic() - began, f"{self.principal}: {action}"[:160]))
        if outcome != ALLOW:
            self._drop_clients()
        return outcome

    # -- topics ---------------------------------------------------------------------------------

    def produce(self, topic: str) -> None:
        self.producer.send(topic, key=MARK_KEY, value=MARK_VALUE).get(timeout=OPERATION_TIMEOUT_S)

    def produce_aborted(self, topic: str) -> None:
        """Write inside a transaction, then abort: authorised like any write, seen by no
        `read_committed` reader."""
        assert self.transactional is not None
        self.transactional.begin_transaction()
        try:
            future = self.transactional.send(topic, key=MARK_KEY, value=MARK_VALUE)
            future.get(timeout=OPERATION_TIMEOUT_S)
        finally:
            self.transactional.abort_transaction()

    def consume(self, topic: str) -> None:
        """Fetch from partition 0: done once a fetch response arrived (its high watermark is
        known), even if the partition is empty."""
        tp = TopicPartition(topic, 0)
        consumer = self.consumer
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        # ListOffsets: refused at once for a topic the principal may not even describe (a
        # consumer that only polls would wait on metadata that never authorises it).
        consumer.position(tp, timeout_ms=int(OPERATION_TIMEOUT_S * 1000))
        deadline = time.monotonic() + OPERATION_TIMEOUT_S
        while consumer.highwater(tp) is None:
            consumer.poll(timeout_ms=100)
            if time.monotonic() > deadline:
                raise Hung(f"no fetch response from {topic} in {OPERATION_TIMEOUT_S:.0f} s")
        consumer.assign([])

    def delete_records(self, topic: str, before: int, leader: int) -> None:
        """DeleteRecords sent to the partition's leader (so the broker, not the client's
        metadata, decides). `before` is the current start: authorised, nothing deleted."""
        result = self.admin.delete_records(
            {TopicPartition(topic, 0): before},
            timeout_ms=int(OPERATION_TIMEOUT_S * 1000),
            partition_leader_id=leader,
        )
        for info in result.values():
            code = info.get("error_code", 0) if isinstance(info, dict) else 0
            if code:
                raise for_code(code)()

    def alter_retention(self, topic: str) -> None:
        """Set retention.ms=1 (which would delete everything), validate-only: Kafka checks
        the ACL first, and an allowed call changes nothing."""
        result = self.admin.alter_configs(
            [ConfigResource("topic", topic, {"retention.ms": "1"})],
            validate_only=True,
            raise_on_unknown=False,
        )
        for by_name in result.values():
            for outcome in by_name.values():
                if outcome != "OK":
                    # kafka-python gives the error as text: "[Error 29] TopicAuthorization..."
                    code = re.match(r"\[Error (\d+)\]", str(outcome))
                    if code is None:
                        raise AssertionError(f"AlterConfigs answered {outcome!r}")
                    raise for_code(int(code.group(1)))()

    def create_topic(self, name: str) -> None:
        """CreateTopics, validate-only: authorised like a real creation, creates nothing."""
        self.admin.create_topics([NewTopic(name, 1, 1)], validate_only=True)

    # -- groups and transactions -------------------------------------------------------------

    def commit(self, group: str, topic: str, offset: int = 0) -> None:
        """Commit an offset of `topic` partition 0 into `group`."""
        self.commit_offsets(group, {TopicPartition(topic, 0): OffsetAndMetadata(offset, "", -1)})

    def commit_offsets(self, group: str, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        """OffsetCommit from outside the group, as the admin API's "alter offsets" sends it
        (a consumer of the group commits the same request)."""

        def alter() -> None:
            raise_errors(self.admin.alter_group_offsets(group, offsets))

        with_coordinator_retries(alter)

    def read_group_offsets(self, group: str) -> None:
        """OffsetFetch of the whole group: authorised on the group alone (the answer lists
        only the partitions of topics this principal may describe)."""
        with_coordinator_retries(lambda: self.admin.list_group_offsets({group: None}))

    def move_group_to_end(self, group: str, partitions: list[TopicPartition]) -> None:
        """The admin API's "reset offsets to latest" (ListOffsets, then the commit)."""
        result = self.admin.reset_group_offsets(group, dict.fromkeys(partitions, OffsetSpec.LATEST))
        raise_errors([outcome["error"] for outcome in result.values()])

    def init_transactions(self, transactional_id: str) -> None:
        producer = self.clients.producer(transactional_id=transactional_id, max_block_ms=5000)
        try:
            producer.init_transactions()
        finally:
            producer.close(timeout=2)

    # -- ACLs ---------------------------------------------------------------------------------

    def create_acl(self, acl: ACL) -> None:
        result = self.admin.create_acls([acl])
        raise_errors(result.get("failed") or [])

    def describe_acls(self) -> None:
        from broker.kafka.acl import any_filter

        _, error = self.admin.describe_acls(any_filter())
        raise_errors(error)


def harmless_acl(suffix: str) -> ACL:
    """An ACL for a principal that does not exist on a topic that does not exist."""
    return ACL(
        principal=f"User:nobody-{suffix}",
        host="*",
        operation=ACLOperation.READ,
        permission_type=ACLPermissionType.ALLOW,
        resource_pattern=ResourcePattern(
            ResourceType.TOPIC, f"security-test-{suffix}", ACLResourcePatternType.LITERAL
        ),
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def actors(
    settings: KafkaSettings, principals: dict[str, tuple[str, str | None]]
) -> Iterator[dict[str, Actor]]:
    """{role: Actor} for {role: (principal, transactional id or None)}; closed afterwards."""
    made: dict[str, Actor] = {}
    try:
        for role, (principal, transactional_id) in principals.items():
            made[role] = Actor(settings, principal, transactional_id=transactional_id)
        yield made
    finally:
        for actor in made.values():
            actor.close()
