"""Shared fixtures: a real local Kafka started once per test session by the project's tooling.

Set `BROKER_TEST_BOOTSTRAP=host:port` to run the integration tests against a broker that is
already running instead (it must allow topic creation and transactions).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real single-node Kafka for the whole session."""
    external = os.environ.get("BROKER_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    from broker.kafka.local import LocalKafka

    kafka = LocalKafka(tmp_path_factory.mktemp("kafka"), nodes=1)
    took = kafka.start()
    print(f"\n[local Kafka ready in {took:.1f} s at {kafka.bootstrap_servers}]")
    try:
        yield kafka.bootstrap_servers
    finally:
        kafka.stop()


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Create topics private to one test; they are deleted afterwards."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    created: list[str] = []

    def create(prefix: str = "t", *, partitions: int = 1, replication: int = 1) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        admin.create_topics([NewTopic(name, partitions, replication)])
        admin.wait_for_topics([name])
        created.append(name)
        return name

    try:
        yield create
    finally:
        if created:
            admin.delete_topics(created, raise_errors=False)
        admin.close()
