"""The routing decision for one ingress record: pure, no Kafka.

decode -> check the issuer owns the ingress topic -> verify signature and key validity -> schema
-> de-duplicate -> evaluate agreements -> one forwarded envelope per permitted recipient -> one
audit record. Anything unacceptable becomes a quarantine output with a stable reason code; this
function never raises on input. `RouterCore.route` returns every output and state change, and
the I/O shell writes them in one Kafka transaction (plus one chain snapshot per partition and
batch: `state.chain_snapshot`, and `state.window_batch` of the `RouteResult.seen` entries).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from broker.agreements import AgreementSet
from broker.audit.record import ConditionError as AuditConditionError
from broker.audit.record import DecisionRecord, Outcome, RecipientDecision
from broker.config import (
    TOPIC_AUDIT,
    TOPIC_QUARANTINE,
    TOPIC_ROUTER_STATE,
    agency_of_ingress,
    topic_feed,
)
from broker.envelope import Envelope, KeyRegistry, SigningKey, disclose
from broker.envelope.canonical import DIGEST_SIZE, feed_record_key
from broker.ingress import (
    BAD_ENCODING,
    DEFAULT_MAX_SKEW,
    DUPLICATE,
    INTERNAL_ERROR,
    WRONG_INGRESS,
    IngressCheck,
    check_ingress,
    deliverable,
    event_view,
    issued_subject,
    learn_relationships,
    record_time,
)
from broker.router.state import (
    PartitionState,
    encode_subject,
    subject_key,
)
from broker.schemas import SchemaRegistry

log = logging.getLogger(__name__)

# The ingress checks live in broker.ingress (shared with audit replay); re-exported here.
__all__ = [
    "BAD_ENCODING",
    "DUPLICATE",
    "INTERNAL_ERROR",
    "WRONG_INGRESS",
    "IngressCheck",
    "IngressRecord",
    "Output",
    "RouteResult",
    "RouterCore",
    "check_ingress",
    "event_view",
    "learn_relationships",
]


@dataclass(frozen=True)
class Output:
    """One Kafka record to produce in the routing transaction."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class RouteResult:
    """Everything one ingress record leads to: its audit record (outcome, issuer, type, reason
    code, recipients) and the Kafka records to produce."""

    record: DecisionRecord
    outputs: list[Output] = field(default_factory=list)
    issued_at: datetime | None = None
    # (issuer, event id, ingress offset, receipt ms) of an event first routed: to the changelog
    seen: tuple[str, str, int, int] | None = None

    @property
    def outcome(self) -> Outcome:
        return self.record.outcome


@dataclass(frozen=True)
class IngressRecord:
    topic: str
    partition: int
    offset: int
    value: bytes | None  # None: a tombstone, which no publisher sends
    # The Kafka record timestamp (ms since the epoch): when the broker received the event
    # (ingress topics use LogAppendTime). None: judge at the router's clock instead.
    timestamp: int | None = None


class RouterCore:
    """The decision logic, configured with keys, agreements and the router's identity."""

    def __init__(
        self,
        *,
        keys: KeyRegistry,
        agreements: AgreementSet,
        router_key: SigningKey,
        agencies: Collection[str],
        pseudonym_key: Callable[[str], bytes],
        registry: SchemaRegistry | None = None,
        max_skew: timedelta = DEFAULT_MAX_SKEW,
    ) -> None:
        self.keys = keys
        self.max_skew = max_skew
        self.agreements = agreements
        self.router_key = router_key
        self.agencies = frozenset(agencies)
        # Derived once per recipient and kept: the secret is read from its file or environment
        # variable once, not for every forward (changing it needs a restart, as it re-keys
        # every feed).
        self.pseudonym_key = functools.cache(pseudonym_key)
        # Every forward's record key is keyed per recipient: a missing pseudonym secret stops the
        # router at start (its ConfigError names the fix) instead of quarantining every event.
        self.pseudonym_key(router_key.agency_id)
        self.registry = registry or SchemaRegistry.default()
        # (registry.keys, registry.agreements) positions of the view `keys` and `agreements`
        # stand at: recorded in every decision (the service sets it before each batch).
        self.registry_position: tuple[int, int] | None = None

    def _position(self, which: int) -> int | None:
        return None if self.registry_position is None else self.registry_position[which]

    def route(
        self, record: IngressRecord, state: PartitionState, *, now: datetime | None = None
    ) -> RouteResult:
        """Decide one record, updating `state` (rebuilt from the changelog if the transaction
        aborts).

        A fault in the router's own code quarantines the record (`internal_error`, with the
        exception's type only) instead of failing the batch: retrying could never succeed.
        """
        now = (now or datetime.now(UTC)).astimezone(UTC)
        try:
            return self._route(record, state, now)
        except Exception as exc:
            log.error(
                "internal error routing %s/%d@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                type(exc).__name__,
            )
            return self._quarantine(
                record, state, now, INTERNAL_ERROR, f"router fault {type(exc).__name__}", None
            )

    def _route(self, record: IngressRecord, state: PartitionState, now: datetime) -> RouteResult:
        # All fallible work comes before the first change to `state` (the audit append), but
        # for forgetting the events that left the de-duplication window at this record's time.
        received_at = record_time(record.timestamp) or now
        received_ms = int(received_at.timestamp() * 1000)
        state.seen.expire(received_ms)
        checked = check_ingress(
            record.value,
            topic=record.topic,
            agency=agency_of_ingress(record.topic),
            seen=state.seen,
            keys=self.keys,
            registry=self.registry,
            received_at=received_at,
            max_skew=self.max_skew,
        )
        envelope, verified = checked.envelope, checked.event
        if verified is None or envelope is None:
            reason = checked.reason or INTERNAL_ERROR
            return self._quarantine(record, state, now, reason, checked.detail, envelope)
        header = envelope.header
        subject = issued_subject(verified)

        context = state.context(subject)
        decision = self.agreements.decide(
            event_view(verified),
            now=now,
            context=context,
            pseudonym_key=self.pseudonym_key,
        )
        outputs: list[Output] = []
        decisions: list[RecipientDecision] = []
        for recipient, grant in decision.grants.items():
            if recipient not in self.agencies:
                log.warning("agreement names recipient %s, not in the registry", recipient)
                continue
            if not deliverable(grant.fields_shared, header.version):
                log.warning("v1 event not forwarded to %s, not granted the subject", recipient)
                continue
            forwarded = disclose(
                envelope,
                grant.fields_shared,
                derived=grant.derived,
                agreements=grant.agreements,
                recipient=recipient,
                router_key=self.router_key,
                now=now,
            )
            outputs.append(
                Output(
                    topic_feed(recipient),
                    feed_record_key(self.pseudonym_key(recipient), header.issuer, subject),
                    forwarded.to_bytes(self.registry),
                )
            )
            decisions.append(
                RecipientDecision(
                    recipient=recipient,
                    fields_forwarded=tuple(grant.fields_shared),
                    fields_withheld=tuple(grant.fields_withheld),
                    derived=tuple(grant.derived),
                    agreements=grant.agreements,
                )
            )
        outcome = Outcome.FORWARDED if decisions else Outcome.DENIED
        audit = state.chain.append(
            ingress_topic=record.topic,
            ingress_partition=record.partition,
            ingress_offset=record.offset,
            decided_at=now,
            outcome=outcome,
            event_id=header.event_id,
            issuer=header.issuer,
            event_type=header.event_type,
            subject=subject,
            occurred_at=header.occurred_at,
            reason=None if decisions else "no_agreement",
            digests=[d.hex() for d in envelope.digests],
            recipients=decisions,
            condition_errors=sorted(
                {
                    AuditConditionError(error.rule.agreement, error.stage)
                    for error in decision.errors
                }
            ),
            registry_keys=self._position(0),
            registry_agreements=self._position(1),
        )
        state.seen.add((header.issuer, header.event_id), record.offset, received_ms)
        outputs.append(self._audit_output(state, audit))
        updated = learn_relationships(context, header.event_type, verified.fields)
        if updated != context:
            state.subjects[subject] = updated
            outputs.append(
                Output(
                    TOPIC_ROUTER_STATE,
                    subject_key(state.chain.chain, subject),
                    encode_subject(updated),
                )
            )
        seen = (header.issuer, header.event_id, record.offset, received_ms)
        return RouteResult(audit, outputs, issued_at=header.issued_at, seen=seen)

    def _quarantine(
        self,
        record: IngressRecord,
        state: PartitionState,
        now: datetime,
        reason: str,
        detail: str,
        envelope: Envelope | None,
    ) -> RouteResult:
        """Keep the original bytes with the reason; record the decision in the audit chain.

        `detail` comes from messages that by construction name no personal value.
        """
        header = envelope.header if envelope is not None else None
        audit = state.chain.append(
            ingress_topic=record.topic,
            ingress_partition=record.partition,
            ingress_offset=record.offset,
            decided_at=now,
            outcome=Outcome.DUPLICATE if reason == DUPLICATE else Outcome.QUARANTINED,
            event_id=header.event_id if header else None,
            issuer=header.issuer if header else None,
            event_type=header.event_type if header else None,
            subject=envelope.subject if envelope is not None else None,
            occurred_at=header.occurred_at if header else None,
            reason=reason,
            digests=_audit_digests(envelope),
            registry_keys=self._position(0),
            registry_agreements=self._position(1),
        )
        meta = {
            "reason": reason,
            "detail": detail,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "quarantined_at": now.isoformat(),
        }
        quarantine = Output(
            TOPIC_QUARANTINE,
            f"{record.topic}/{record.partition}/{record.offset}".encode(),
            record.value,
            headers=(
                ("reason", reason.encode()),
                ("detail", json.dumps(meta).encode()),
            ),
        )
        return RouteResult(audit, [quarantine, self._audit_output(state, audit)])

    @staticmethod
    def _audit_output(state: PartitionState, audit: DecisionRecord) -> Output:
        return Output(TOPIC_AUDIT, state.chain.chain.encode(), audit.to_bytes())


def _audit_digests(envelope: Envelope | None) -> list[str]:
    """The digests of a rejected envelope as the audit record can hold them: a set of SHA-256
    values (a rejected envelope may repeat a digest or carry one of the wrong size)."""
    if envelope is None:
        return []
    return sorted({d.hex() for d in envelope.digests if len(d) == DIGEST_SIZE})
