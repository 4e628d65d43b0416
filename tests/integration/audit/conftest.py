"""A private Kafka and one routed scenario for the audit command tests.

The audit topics (`audit.decisions`, ...) and ingress topics have fixed names, so these tests use
a Kafka of their own: records routed by other tests with other keys would be findings here. Set
`BROKER_TEST_AUDIT_BOOTSTRAP` to use an already running, otherwise unused broker instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from broker.bench.audit import publish_and_route, scenario
from broker.config import BrokerConfig, load_config
from broker.kafka.local import ClusterAccess
from broker.kafka.operator import provision
from broker.scaffold import write_deployment


@dataclass(frozen=True)
class Deployment:
    config_path: Path
    config: BrokerConfig
    events: dict[str, list[dict[str, Any]]]
    tag: str
    routed: int


@pytest.fixture(scope="package")
def audit_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterAccess]:
    external = os.environ.get("BROKER_TEST_AUDIT_BOOTSTRAP")
    if external:
        yield ClusterAccess(external)
        return
    from broker.kafka.local import LocalKafka

    kafka = LocalKafka(tmp_path_factory.mktemp("audit-kafka"), nodes=1)
    kafka.start()
    try:
        yield kafka.access()
    finally:
        kafka.stop()


@pytest.fixture(scope="package")
def deployment(audit_kafka: ClusterAccess, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """Two councils, the Met and the NRM publish a realistic scenario; the router routes it.

    One event is published twice with the same event id, so the log also holds a `duplicate`
    decision; events of every type lead to forwarded and denied decisions.
    """
    directory = tmp_path_factory.mktemp("audit-deployment")
    path = write_deployment(
        directory, bootstrap_servers=audit_kafka, router={"checkpoint_interval_s": 1.0}
    )
    provision(load_config(path))  # credentials, topics and ACLs, as the operator
    tag = uuid.uuid4().hex[:6]
    events = scenario(8, tag=tag)
    again = dict(events["council.E09000033"][0], event_id=str(uuid.uuid4()))
    events["council.E09000033"][:1] = [again, again]
    made = publish_and_route(path, events, idle_exit_s=3.0)
    return Deployment(path, load_config(path), events, tag, made["routed"])
