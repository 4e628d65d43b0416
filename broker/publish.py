"""The issuer's side: sign EVENTS.md JSON events and produce them to `ingress.<agency>`.

`Publisher` is the one publishing path: `broker publish` and every connector use it. A bad event
is reported (line number and reason, never a value) and the rest still goes through.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from kafka.errors import AuthorizationError

from broker.config import BrokerConfig, ConfigError, load_config, topic_ingress
from broker.envelope import SigningKey, issue, load_signing_key
from broker.errors import BrokerError
from broker.kafka.client import KafkaClients, KafkaUnavailable, TopicSpec, denied
from broker.kafka.credentials import principal_of
from broker.schemas import SchemaRegistry

FLUSH_EVERY = 2000
"""Events sent before waiting for Kafka's acknowledgements (bounds pending futures)."""


@dataclass
class PublishReport:
    """What happened to each input event."""

    published: Counter[str] = field(default_factory=Counter)  # per event type
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)
    event_ids: list[str] = field(default_factory=list)

    @property
    def total_published(self) -> int:
        return sum(self.published.values())


def agency_key(config: BrokerConfig, agency_id: str) -> SigningKey:
    """The agency's signing key from the config's registry entry."""
    agency = config.agency(agency_id)
    if agency.signing_key is None:
        raise ConfigError(
            f"{config.source}: agency {agency_id} has no signing_key: add the path of its "
            "private key (broker keys generate) to its entry"
        )
    passphrase = os.environ.get(agency.passphrase_env) if agency.passphrase_env else None
    return load_signing_key(agency.signing_key, passphrase)


class Publisher:
    """Signs events as one agency and produces them, keyed by subject, idempotently.

    The ingress record key is the issuer's raw subject reference, so one child's events stay in
    one partition and in order: ingress is read only by the router and auditors, who are
    entitled to the subject (docs/wire-format.md, "Who sees the subject").
    """

    def __init__(
        self, config: BrokerConfig, agency_id: str, *, key: SigningKey | None = None
    ) -> None:
        self.agency_id = agency_id
        self.topic = topic_ingress(agency_id)
        self.key = key or agency_key(config, agency_id)
        self.registry = SchemaRegistry.default()
        self.principal = principal_of(agency_id)
        clients = KafkaClients(config.kafka, self.principal)
        clients.ensure_topics(
            [TopicSpec(self.topic, config.kafka.topics.partitions, append_time=True)]
        )
        self.producer = clients.producer()
        self._pending: list[tuple[str, str, Any]] = []

    def publish(self, event: Mapping[str, Any], *, where: str = "event") -> str:
        """Sign and send one event; raises a `BrokerError` naming the problem when invalid."""
        envelope = issue(event, issuer=self.agency_id, key=self.key, registry=self.registry)
        header = envelope.header
        subject = envelope.subject or ""  # issue() always sets one
        try:
            future = self.producer.send(
                self.topic, key=subject.encode(), value=envelope.to_bytes(self.registry)
            )
        except AuthorizationError as exc:  # kafka-python repeats a refusal on the next send
            raise denied(self.principal, exc, f"writing to {self.topic}") from None
        self._pending.append((where, header.event_type, future))
        return header.event_id

    def publish_all(
        self,
        events: Iterable[tuple[str, Mapping[str, Any] | BrokerError]],
        *,
        flush_every: int = FLUSH_EVERY,
        on_flush: Callable[[], None] | None = None,
    ) -> PublishReport:
        """Publish `(where, event)` pairs; an error in place of an event is reported as such.

        Waits for Kafka every `flush_every` events, so memory stays bounded on large inputs.
        """
        report = PublishReport()
        for count, (where, event) in enumerate(events, start=1):
            if isinstance(event, BrokerError):
                report.rejected.append((where, str(event)))
            else:
                try:
                    report.event_ids.append(self.publish(event, where=where))
                except KafkaUnavailable:
                    raise
                except BrokerError as exc:  # invalid event: schema, format, key terms
                    report.rejected.append((where, str(exc)))
            if count % flush_every == 0:
                self.flush(report)
                if on_flush is not None:
                    on_flush()
        self.flush(report)
        if on_flush is not None:
            on_flush()
        return report

    def flush(self, report: PublishReport) -> None:
        """Wait until Kafka has acknowledged everything sent; record failures per event."""
        self.producer.flush()
        for where, event_type, future in self._pending:
            try:
                future.get(timeout=30)
            except AuthorizationError as exc:  # no record of this run can go: say so once
                self._pending.clear()
                raise denied(self.principal, exc, f"writing to {self.topic}") from None
            except Exception as exc:  # a Kafka failure for this record only
                report.rejected.append((where, f"Kafka did not accept it ({type(exc).__name__})"))
            else:
                report.published[event_type] += 1
        self._pending.clear()

    def close(self) -> None:
        self.producer.close()


def read_jsonl(stream: IO[str], name: str) -> Iterable[tuple[str, Mapping[str, Any] | BrokerError]]:
    """Events of a JSON-lines stream as `(name:line, event)`, or an error for a bad line."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            yield where, BrokerError(f"not valid JSON (column {exc.colno}): fix the line")
            continue
        if not isinstance(event, dict):
            yield where, BrokerError("not a JSON object: one event object per line")
            continue
        yield where, event


def print_report(report: PublishReport, out: IO[str] = sys.stderr) -> None:
    for where, reason in report.rejected:
        print(f"rejected {where}: {reason}", file=out)
    types = ", ".join(f"{n} {t}" for t, n in sorted(report.published.items())) or "none"
    print(
        f"published {report.total_published} event(s) ({types}); rejected {len(report.rejected)}",
        file=out,
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "publish", help="sign EVENTS.md JSON lines as an agency and publish them to its ingress"
    )
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--agency", required=True, help="issuing agency id, e.g. police.met")
    parser.add_argument("events", help="JSON-lines file of events, or - for standard input")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    publisher = Publisher(config, args.agency)
    try:
        if args.events == "-":
            report = publisher.publish_all(read_jsonl(sys.stdin, "stdin"))
        else:
            try:
                with open(args.events) as stream:
                    report = publisher.publish_all(read_jsonl(stream, args.events))
            except OSError as exc:
                raise BrokerError(f"cannot read {args.events} ({exc.strerror})") from None
    finally:
        publisher.close()
    print_report(report)
    return 1 if report.rejected else 0
