"""Shared fixtures: a real, secured local Kafka started once per test session by the project's
tooling (TLS, SCRAM-SHA-512 per principal, ACLs; see broker/kafka/local.py).

Set `BROKER_TEST_BOOTSTRAP=host:port` to run the integration tests against a broker that is
already running instead; with `BROKER_TEST_CA` (its CA certificate) and
`BROKER_TEST_CREDENTIALS` (a directory holding `operator.json`) it is used secured, else
plaintext (it must then allow topic creation and transactions).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.config import KafkaSettings
from broker.kafka.local import ClusterAccess


@pytest.fixture(scope="session")
def kafka_access(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterAccess]:
    """How to reach the session's secured single-node Kafka (address, CA, operator)."""
    external = os.environ.get("BROKER_TEST_BOOTSTRAP")
    if external:
        ca = os.environ.get("BROKER_TEST_CA")
        creds = os.environ.get("BROKER_TEST_CREDENTIALS")
        yield ClusterAccess(external, Path(ca) if ca else None, Path(creds) if creds else None)
        return
    from broker.kafka.local import LocalKafka

    kafka = LocalKafka(tmp_path_factory.mktemp("kafka"), nodes=1)
    took = kafka.start()
    print(f"\n[secured local Kafka ready in {took:.1f} s at {kafka.bootstrap_servers}]")
    try:
        yield kafka.access()
    finally:
        kafka.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_access: ClusterAccess) -> str:
    """The session Kafka's bootstrap servers (connect with `operator_options` to use it)."""
    return kafka_access.bootstrap_servers


@pytest.fixture(scope="session")
def bench_cluster_args(kafka_access: ClusterAccess) -> list[str]:
    """`broker bench` options naming the session Kafka (`--bootstrap`, and its CA and
    credentials when secured)."""
    args = ["--bootstrap", kafka_access.bootstrap_servers]
    if kafka_access.secured:
        args += ["--kafka-ca", str(kafka_access.ca_file)]
        args += ["--kafka-credentials", str(kafka_access.credentials_dir)]
    return args


@pytest.fixture(scope="session")
def operator_options(kafka_access: ClusterAccess) -> dict[str, Any]:
    """kafka-python options of the operator (a super user) on the session Kafka."""
    return kafka_access.operator_options()


@pytest.fixture(scope="session")
def operator_settings(kafka_access: ClusterAccess) -> KafkaSettings:
    """The session Kafka as config settings for `KafkaClients(settings, OPERATOR)`."""
    if not kafka_access.secured:
        return KafkaSettings(bootstrap_servers=kafka_access.bootstrap_servers)
    return KafkaSettings(
        bootstrap_servers=kafka_access.bootstrap_servers,
        security_protocol="SASL_SSL",
        ssl_cafile=kafka_access.ca_file,
        credentials_dir=kafka_access.credentials_dir,
    )


@pytest.fixture
def new_topic(operator_options: dict[str, Any]) -> Iterator[Callable[..., str]]:
    """Create topics private to one test (as the operator); they are deleted afterwards."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(**operator_options)
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
