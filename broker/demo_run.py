"""The demo scenario, run by `broker demo` (and `make demo`) against a local Kafka."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from broker.kafka.local import LocalKafka


def run_demo(*, bootstrap: str | None = None) -> int:
    """Start a private Kafka (unless given one), run the scenario, stop what was started."""
    if bootstrap is not None:
        return _scenario(bootstrap)
    with tempfile.TemporaryDirectory(prefix="broker-demo-") as tmp:
        kafka = LocalKafka(Path(tmp) / "kafka")
        took = kafka.start()
        print(f"Local Kafka ready in {took:.1f} s at {kafka.bootstrap_servers}")
        try:
            return _scenario(kafka.bootstrap_servers)
        finally:
            kafka.stop()
            print("Local Kafka stopped.")


def _scenario(bootstrap: str) -> int:
    """Smoke run: a topic, one aborted and one committed transaction, a read_committed read."""
    topic = f"demo-smoke-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.wait_for_topics([topic])
    admin.close()
    print(f"Created topic {topic}")

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"demo-{topic}", acks="all"
    )
    producer.init_transactions()
    producer.begin_transaction()
    producer.send(topic, b"never seen: aborted")
    producer.abort_transaction()
    producer.begin_transaction()
    for i in range(3):
        producer.send(topic, f"committed record {i}".encode())
    producer.commit_transaction()
    producer.close()
    print("Produced one aborted transaction (1 record) and one committed (3 records)")

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    consumer.assign([TopicPartition(topic, 0)])
    seen = [record.value.decode() for record in consumer]
    consumer.close()
    print(f"A read_committed consumer saw {len(seen)} records: {seen}")
    return 0 if len(seen) == 3 else 1
