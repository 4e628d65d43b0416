"""The issuer's side: sign EVENTS.md JSON events and produce them to `ingress.<agency>`.

`Publisher` is the one publishing path: `broker publish` and every connector use it. A bad event
is reported (line number and reason, never a value) and the rest still goes through.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from kafka.errors import AuthorizationError, KafkaError, MessageSizeTooLargeError

from broker.config import BrokerConfig, ConfigError, load_config, topic_ingress
from broker.envelope import Envelope, SigningKey, issue, load_signing_key
from broker.errors import BrokerError
from broker.inbound import (
    DEFAULT_LIMITS,
    KAFKA_MAX_RECORD_BYTES,
    Limits,
    LineSource,
    Rejection,
    check_event,
    parse_line,
    read_lines,
)
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
    on_reject: Callable[[str, str], None] | None = None  # told of each rejection as it happens

    def reject(self, where: str, reason: str) -> None:
        self.rejected.append((where, reason))
        if self.on_reject is not None:
            self.on_reject(where, reason)

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


def sign_event(
    event: Mapping[str, Any], agency_id: str, key: SigningKey, registry: SchemaRegistry
) -> Envelope:
    """The checks and signing of every published event, before Kafka: the text rules of
    `broker.inbound` (so no connector, SSDA903, NRM or live, can publish what `broker publish`
    would refuse), then the schema and envelope checks of `issue`. Raises `BrokerError`."""
    problem = check_event(dict(event)) if isinstance(event, Mapping) else None
    if problem is not None:
        raise BrokerError(f"{problem.message} [{problem.code}]")
    return issue(event, issuer=agency_id, key=key, registry=registry)


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
        envelope = sign_event(event, self.agency_id, self.key, self.registry)
        header = envelope.header
        subject = envelope.subject or ""  # issue() always sets one
        value = envelope.to_bytes(self.registry)
        try:
            future = self.producer.send(self.topic, key=subject.encode(), value=value)
        except AuthorizationError as exc:  # kafka-python repeats a refusal on the next send
            raise denied(self.principal, exc, f"writing to {self.topic}") from None
        except MessageSizeTooLargeError:
            raise BrokerError(
                f"signed event of {len(value)} bytes is larger than Kafka takes per record "
                f"(at most {KAFKA_MAX_RECORD_BYTES} bytes): shorten its fields"
            ) from None
        except KafkaError as exc:  # refused for this record only
            raise BrokerError(f"Kafka did not accept it ({type(exc).__name__})") from None
        self._pending.append((where, header.event_type, future))
        return header.event_id

    def publish_all(
        self,
        events: Iterable[tuple[str, Mapping[str, Any] | BrokerError | Rejection]],
        *,
        flush_every: int = FLUSH_EVERY,
        on_flush: Callable[[], None] | None = None,
        report: PublishReport | None = None,
    ) -> PublishReport:
        """Publish `(where, event)` pairs; an error in place of an event is reported as such.

        Waits for Kafka every `flush_every` events, so memory stays bounded on large inputs.
        No bad event stops the run: only Kafka being unavailable or refusing the principal does.
        """
        report = report if report is not None else PublishReport()
        for count, (where, event) in enumerate(events, start=1):
            if isinstance(event, BrokerError | Rejection):
                report.reject(where, _reason(event))
            else:
                try:
                    report.event_ids.append(self.publish(event, where=where))
                except KafkaUnavailable:
                    raise
                except BrokerError as exc:  # invalid event: schema, format, key terms
                    report.reject(where, str(exc))
                except Exception as exc:  # a bug must not lose the lines after this one
                    report.reject(where, f"could not be signed ({type(exc).__name__}): report it")
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
                report.reject(where, f"Kafka did not accept it ({type(exc).__name__})")
            else:
                report.published[event_type] += 1
        self._pending.clear()

    def close(self) -> None:
        self.producer.close()


def _reason(problem: BrokerError | Rejection) -> str:
    if isinstance(problem, Rejection):
        return f"{problem.message} [{problem.code}]"
    return str(problem)


def read_jsonl(
    stream: LineSource, name: str, limits: Limits = DEFAULT_LIMITS
) -> Iterable[tuple[str, Mapping[str, Any] | Rejection]]:
    """Events of a binary JSON-lines stream as `(name:line, event)`, or a `Rejection` for a bad
    line (broker.inbound: size, UTF-8, JSON, text rules), line by line, in bounded memory."""
    for number, raw in read_lines(stream, limits):
        event = raw if isinstance(raw, Rejection) else parse_line(raw, number, limits)
        yield f"{name}:{number}", event


def print_rejection(where: str, reason: str, out: IO[str] | None = None) -> None:
    """One rejection, printed as it happens."""
    print(f"rejected {where}: {reason}", file=out or sys.stderr, flush=True)


def print_report(
    report: PublishReport, out: IO[str] = sys.stderr, *, rejections: bool = True
) -> None:
    """The summary; with `rejections`, each rejected line first (when not printed already)."""
    if rejections:
        for where, reason in report.rejected:
            print_rejection(where, reason, out)
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
    parser.add_argument(
        "events", nargs="+", help="JSON-lines file(s) of events, or - for standard input"
    )
    parser.add_argument(
        "--max-line-bytes",
        type=int,
        default=DEFAULT_LIMITS.max_line_bytes,
        help=f"longest line accepted, in bytes ({DEFAULT_LIMITS.max_line_bytes}; below "
        f"Kafka's {KAFKA_MAX_RECORD_BYTES} per record)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        limits = Limits(max_line_bytes=args.max_line_bytes)
    except ValueError as exc:
        raise BrokerError(f"--max-line-bytes: {exc}") from None
    config = load_config(args.config)
    publisher = Publisher(config, args.agency)
    report = PublishReport(on_reject=print_rejection)
    try:
        for name in args.events:
            if name == "-":
                publisher.publish_all(read_jsonl(sys.stdin.buffer, "stdin", limits), report=report)
                continue
            try:
                stream = open(name, "rb")  # noqa: SIM115 - closed below, errors told per file
            except OSError as exc:
                report.reject(name, f"cannot read it ({exc.strerror}): check the path")
                continue
            with stream:
                try:
                    publisher.publish_all(read_jsonl(stream, name, limits), report=report)
                except OSError as exc:  # a read error part-way (a directory, a device)
                    report.reject(name, f"cannot read it ({exc.strerror}): check the path")
    finally:
        publisher.close()
    print_report(report, rejections=False)
    return 1 if report.rejected else 0
