"""A stand-in for `broker.publish.Publisher` without Kafka: real validation and signing
(`broker.publish.sign_event`), with the Kafka acknowledgement simulated."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from broker.envelope import generate_key, load_signing_key
from broker.kafka.client import KafkaUnavailable
from broker.publish import PublishReport, sign_event
from broker.schemas import SchemaRegistry

REGISTRY = SchemaRegistry.default()


class FakePublisher:
    def __init__(self, agency_id: str, directory: Path) -> None:
        self.agency_id = agency_id
        private, _ = generate_key(agency_id, directory)
        self.key = load_signing_key(private, None)
        self.published: list[str] = []  # event ids acknowledged
        self.nack: set[str] = set()  # event ids Kafka "refuses"
        self.unavailable = False
        self._pending: list[tuple[str, str, str]] = []

    def publish(self, event: Mapping[str, Any], *, where: str = "event") -> str:
        if self.unavailable:
            raise KafkaUnavailable("Kafka is unreachable")
        envelope = sign_event(event, self.agency_id, self.key, REGISTRY)  # Publisher's checks
        header = envelope.header
        self._pending.append((where, header.event_type, header.event_id))
        return header.event_id

    def flush(self, report: PublishReport) -> None:
        for where, event_type, event_id in self._pending:
            if event_id in self.nack:
                report.rejected.append((where, "Kafka did not accept it (KafkaTimeoutError)"))
            else:
                self.published.append(event_id)
                report.published[event_type] += 1
        self._pending.clear()


def missing_started(subject: str = "C1", **fields: Any) -> dict[str, Any]:
    return {
        "event_type": "child.missing.started",
        "subject": subject,
        "occurred_at": "2026-11-24T18:05:00Z",
        "fields": {
            "la_child_id": subject,
            "missing_type": "M",
            "missing_since": "2026-11-24T18:00:00Z",
            "risk_level": "high",
            **fields,
        },
    }
