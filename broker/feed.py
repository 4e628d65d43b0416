"""The subscriber's side: read `feed.<agency>`, verify every event end to end, emit JSON.

An event is emitted only after the issuer's signature, every disclosure digest and the router's
signature over derived values have been checked (and, following a registry, that every agreement
it names is a version the registry holds for this agency); an event that fails is reported on
stderr (its offset and reason code, never its content) and never emitted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from broker.agreements import AgreementSet
from broker.config import BrokerConfig, load_config, topic_feed
from broker.envelope import KeyRegistry, VerificationError, VerifiedEvent, verify_forwarded
from broker.errors import BrokerError
from broker.ingress import record_time
from broker.kafka.client import KafkaClients, KafkaDenied, reached
from broker.kafka.credentials import principal_of
from broker.registry.live import POLL_INTERVAL_S, LiveAgreements, LiveKeys, RegistryFollower
from broker.schemas import SchemaRegistry


@dataclass(frozen=True)
class FeedItem:
    """One feed record: verified, or the reason it failed."""

    partition: int
    offset: int
    event: VerifiedEvent | None
    error: VerificationError | None = None


@dataclass(frozen=True)
class FeedVerifier:
    """The pure check of one feed record: issuer's part, then the derived section, which only
    a router-role key of the deployment's router (`config.router.id`) may have signed."""

    agency_id: str
    router_id: str
    keys: KeyRegistry
    registry: SchemaRegistry
    max_skew: timedelta
    # The live agreement registry (with a `registry` section): every agreement a forward names
    # must be a version it holds whose recipient is this agency (`unknown_agreement`).
    agreements: AgreementSet | None = None

    @classmethod
    def from_config(cls, config: BrokerConfig, agency_id: str) -> FeedVerifier:
        config.agency(agency_id)  # must be registered
        return cls(
            agency_id,
            config.router.id,
            KeyRegistry.from_dir(config.keys_dir),
            SchemaRegistry.default(),
            timedelta(seconds=config.router.max_clock_skew_s),
        )

    def verify(
        self, partition: int, offset: int, value: bytes, timestamp: int | None = None
    ) -> FeedItem:
        """Verify one record; `timestamp` is its Kafka timestamp (ms), the time of receipt."""
        try:
            event = verify_forwarded(
                value,
                self.keys,
                router=self.router_id,
                recipient=self.agency_id,
                received_at=record_time(timestamp),
                max_skew=self.max_skew,
                registry=self.registry,
            )
            self._check_agreements(event)
        except VerificationError as exc:
            return FeedItem(partition, offset, None, exc)
        return FeedItem(partition, offset, event)

    def _check_agreements(self, event: VerifiedEvent) -> None:
        if self.agreements is None:
            return
        for key in event.agreements:
            held = self.agreements.get(key)
            if held is None or held.agreement.recipient != self.agency_id:
                raise VerificationError(
                    "unknown_agreement",
                    f"event {event.header.event_id} names agreement {key}, which the registry "
                    f"does not hold for {self.agency_id}",
                )


class FeedReader:
    """Reads one agency's feed with `read_committed` and verifies each record."""

    def __init__(
        self,
        config: BrokerConfig,
        agency_id: str,
        *,
        from_beginning: bool = False,
        group_id: str | None = None,
        principal: str | None = None,
    ) -> None:
        self.verifier = FeedVerifier.from_config(config, agency_id)
        self.agency_id = agency_id
        self.topic = topic_feed(agency_id)
        self.keys = self.verifier.keys
        self.registry = self.verifier.registry
        self.from_beginning = from_beginning
        self.group_id = group_id or f"feed-{agency_id}"
        self.principal = principal or principal_of(agency_id)
        clients = KafkaClients(config.kafka, self.principal)
        # The live registry: a revocation or a new agreement version reaches this reader
        # before it judges any record the broker received after it (`batches`).
        self.follower: RegistryFollower | None = None
        self.registry_max_stale_s = config.router.registry_max_stale_s
        if config.registry is not None:
            live = LiveKeys.from_config(config, self.verifier.keys)
            agreements = LiveAgreements.from_config(config)
            self.verifier = dataclasses.replace(self.verifier, agreements=agreements.agreements)
            self.follower = RegistryFollower(clients, live, agreements)
            self.follower.catch_up()
        self.consumer = clients.consumer(group_id=None if from_beginning else self.group_id)
        partitions = sorted(self.consumer.partitions_for_topic(self.topic) or [])
        if not partitions:
            why = clients.explain_missing(self.topic)
            if isinstance(why, KafkaDenied):
                self.consumer.close(autocommit=False)
                raise why
            raise BrokerError(
                f"topic {self.topic} does not exist yet: start the router (`broker route`), "
                "which creates every agency's feed"
            )
        self.partitions = [TopicPartition(self.topic, p) for p in partitions]
        self.consumer.assign(self.partitions)
        if from_beginning:
            self.consumer.seek_to_beginning(*self.partitions)

    def verify(
        self, partition: int, offset: int, value: bytes, timestamp: int | None = None
    ) -> FeedItem:
        """See `FeedVerifier.verify`."""
        return self.verifier.verify(partition, offset, value, timestamp)

    def _sync_registry(self, polled: dict[Any, list[Any]]) -> bool:
        """Before verifying a batch: apply what arrived on the registry (confirming it read
        to the end every few seconds). False after a slow answer (the batch is read again
        later); once the view has not been confirmed for `router.registry_max_stale_s`, fail
        closed (one clear error, nothing of the batch emitted or committed). A forward naming
        an agreement the view lacks is looked up again before it is refused (`batches`)."""
        if self.follower is None:
            return True
        try:
            self.follower.poll()
            return True
        except Exception as exc:
            if self.follower.stale_for() <= self.registry_max_stale_s:
                return False
            raise BrokerError(
                f"cannot read the registry (registry.keys, registry.agreements) as "
                f"{self.principal} ({type(exc).__name__}): no event is verified against a "
                "registry that may be stale; nothing was committed, run again when Kafka answers"
            ) from None

    def batches(self, *, follow: bool, poll_ms: int = 500) -> Iterator[list[FeedItem]]:
        """Verified batches in partition order; without `follow`, stop at the current end."""
        ends = None if follow else self.consumer.end_offsets(self.partitions)
        while True:
            polled = self.consumer.poll(timeout_ms=poll_ms)
            if not self._sync_registry(polled):
                for tp, records in polled.items():  # not judged yet: read again
                    self.consumer.seek(tp, records[0].offset)
                time.sleep(POLL_INTERVAL_S)
                continue
            batch = [
                self.verify(tp.partition, record.offset, record.value, record.timestamp)
                for tp, records in sorted(polled.items())
                for record in records
            ]
            if self.follower is not None and any(
                item.error is not None and item.error.code == "unknown_agreement" for item in batch
            ):
                # A version published a moment ago (clocks of two brokers): look once more.
                try:
                    self.follower.catch_up()
                except Exception:
                    if self.follower.stale_for() > self.registry_max_stale_s:
                        raise
                    for tp, records in polled.items():  # not judged yet: read again
                        self.consumer.seek(tp, records[0].offset)
                    continue
                batch = [
                    self.verify(tp.partition, record.offset, record.value, record.timestamp)
                    for tp, records in sorted(polled.items())
                    for record in records
                ]
            if batch:
                yield batch
            if ends is not None and all(
                reached(self.consumer, tp, ends[tp]) for tp in self.partitions
            ):
                return

    def commit(self, offsets: dict[int, int] | None = None) -> None:
        """Remember what was delivered (not when reading `--from-beginning`): everything polled,
        or only up to `offsets` (partition -> next offset to read)."""
        if self.from_beginning:
            return
        if offsets is None:
            self.consumer.commit()
        elif offsets:
            self.consumer.commit(
                {
                    TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1)
                    for p, o in offsets.items()
                }
            )

    def close(self) -> None:
        self.consumer.close(autocommit=False)
        if self.follower is not None:
            self.follower.close()


def emit_jsonl(
    reader: FeedReader, *, follow: bool, write: Callable[[dict[str, Any]], None]
) -> tuple[int, int]:
    """Write every verified event; return (emitted, failed)."""
    from broker.alerts.display import alerts_first, is_alert, plain

    emitted = failed = 0
    for batch in reader.batches(follow=follow):
        shown: list[dict[str, Any]] = []
        for item in batch:
            if item.event is None:
                failed += 1
                code = item.error.code if item.error else "unknown"
                print(
                    f"NOT VERIFIED {reader.topic}/{item.partition}@{item.offset}: {code}",
                    file=sys.stderr,
                )
                continue
            event = item.event.to_json(reader.registry)
            if is_alert(event):  # alerts first, each with one plain line (docs/alerts.md)
                event["alert"] = plain(event)
            shown.append(event)
        for event in alerts_first(shown):
            write(event)
            emitted += 1
        reader.commit()
    return emitted, failed


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "feed", help="print an agency's verified feed as EVENTS.md JSON lines"
    )
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--agency", required=True)
    parser.add_argument("--from-beginning", action="store_true", help="re-read the whole feed")
    parser.add_argument("--follow", action="store_true", help="keep waiting for new events")
    from connectors.subscriber import cli as delivery  # --to-file / --to-webhook

    delivery.add_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from connectors.subscriber import cli as delivery

    if delivery.wants_delivery(args):
        return delivery.run(args)
    config = load_config(args.config)
    reader = FeedReader(config, args.agency, from_beginning=args.from_beginning)

    def write(event: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(event, sort_keys=True) + "\n")
        sys.stdout.flush()

    try:
        emitted, failed = emit_jsonl(reader, follow=args.follow, write=write)
    finally:
        reader.close()
    print(f"{emitted} verified event(s); {failed} failed verification", file=sys.stderr)
    return 1 if failed else 0
