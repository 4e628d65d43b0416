"""A private secured local Kafka for the operations tests (issue 18).

Private, not the session's: these tests stop a router against it, and `broker init` writes the
demo's agency ids, whose topics must not meet other tests' records.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from broker.kafka.local import LocalKafka


@pytest.fixture(scope="package")
def ops_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    kafka = LocalKafka(tmp_path_factory.mktemp("ops-kafka"), nodes=1)
    took = kafka.start(timeout=180)  # a loaded shared machine can take minutes
    print(f"\n[operations: secured local Kafka ready in {took:.1f} s at {kafka.bootstrap_servers}]")
    try:
        yield kafka
    finally:
        kafka.stop()
