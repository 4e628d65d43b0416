"""Thin wrappers over kafka-python: the only module that constructs Kafka clients.

Everything else asks `KafkaClients` for a producer, consumer or admin client so that connection
and security settings live in one place, and an unreachable cluster becomes one clear error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
)

from broker.config import KafkaSettings
from broker.errors import BrokerError

log = logging.getLogger(__name__)

# What kafka-python raises when no bootstrap server answers.
_UNREACHABLE = (KafkaTimeoutError, KafkaConnectionError)


class KafkaUnavailable(BrokerError):
    """Kafka could not be reached or refused a request the broker needs."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False
    # message.timestamp.type=LogAppendTime: record timestamps are the broker's time of receipt.
    append_time: bool = False


class KafkaClients:
    """Factory of kafka-python clients for one cluster."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings

    def _unreachable(self, exc: Exception) -> KafkaUnavailable:
        return KafkaUnavailable(
            f"Kafka is unreachable at {self.settings.bootstrap_servers} "
            f"({type(exc).__name__}): start it (`broker kafka start`) or correct "
            "kafka.bootstrap_servers in the config"
        )

    def producer(self, **overrides: Any) -> KafkaProducer:
        options: dict[str, Any] = {
            **self.settings.client_options(),
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 5,
            **overrides,
        }
        try:
            return KafkaProducer(**options)
        except _UNREACHABLE as exc:
            raise self._unreachable(exc) from None

    def transactional_producer(self, transactional_id: str, **overrides: Any) -> KafkaProducer:
        producer = self.producer(transactional_id=transactional_id, **overrides)
        producer.init_transactions()
        return producer

    def consumer(self, *topics: str, **overrides: Any) -> KafkaConsumer:
        options: dict[str, Any] = {
            **self.settings.client_options(),
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "isolation_level": "read_committed",
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

    @contextmanager
    def admin(self) -> Iterator[KafkaAdminClient]:
        try:
            client = KafkaAdminClient(**self.settings.client_options())
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
            except KafkaError as exc:
                raise KafkaUnavailable(
                    f"could not create topics ({type(exc).__name__}): check the broker's "
                    "permissions and kafka.topics settings"
                ) from None
            admin.wait_for_topics([spec.name for spec in missing], timeout_ms=30000)
            log.info("created topics %s", ", ".join(spec.name for spec in missing))
            return [spec.name for spec in missing]
