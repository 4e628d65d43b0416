"""Thin wrappers over kafka-python: the only module that constructs Kafka clients.

Everything else asks `KafkaClients` for a producer, consumer or admin client so that connection
and security settings live in one place, and an unreachable cluster becomes one clear error.
"""

from __future__ import annotations

import logging
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
                    topic_configs=({"cleanup.policy": "compact"} if spec.compacted else {}),
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
