"""What the router and audit replay both do with one ingress record, so they cannot drift apart.

`check_ingress` is the sequence of checks before any decision (decode, the issuer owns the
topic, clock skew, signature and key judged at the time of receipt, de-duplication);
`event_view` is what agreement conditions see; `learn_relationships` the per-subject state an
event creates. It sits below `broker.router` and `broker.audit`: the auditor's tools never import
the router.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from broker.agreements import EventView, SubjectContext
from broker.envelope import Envelope, KeyRegistry, VerificationError, VerifiedEvent
from broker.envelope.verifier import DEFAULT_MAX_SKEW, verify_envelope
from broker.ids import SUBJECT_FIELD
from broker.schemas import SchemaRegistry

# Reason codes of the ingress checks of its own (the envelope layer supplies the others).
WRONG_INGRESS = "wrong_ingress"
DUPLICATE = "duplicate"
INTERNAL_ERROR = "internal_error"
BAD_ENCODING = "bad_encoding"

__all__ = [
    "BAD_ENCODING",
    "DEFAULT_MAX_SKEW",
    "DUPLICATE",
    "INTERNAL_ERROR",
    "WRONG_INGRESS",
    "IngressCheck",
    "check_ingress",
    "deliverable",
    "event_view",
    "issued_subject",
    "learn_relationships",
    "record_time",
]


@dataclass(frozen=True, slots=True)
class IngressCheck:
    """An ingress record after the checks that come before any decision: an event to decide,
    or the quarantine reason code (and a detail naming no value) of the check it failed."""

    envelope: Envelope | None
    event: VerifiedEvent | None
    reason: str | None = None
    detail: str = ""


def record_time(timestamp_ms: int | None) -> datetime | None:
    """A Kafka record timestamp (ms since the epoch) as a UTC time; None when it has none."""
    if timestamp_ms is None or timestamp_ms < 0:
        return None
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)


def check_ingress(
    value: bytes | None,
    *,
    topic: str,
    agency: str | None,
    seen: Collection[tuple[str, str]],
    keys: KeyRegistry,
    registry: SchemaRegistry,
    received_at: datetime | None,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> IngressCheck:
    """Decode, check the issuer owns the ingress `topic` (of `agency`; None for a topic that is
    no ingress topic), verify with the issuer's key as it stood at `received_at` (the record's
    Kafka timestamp) refusing an `issued_at` more than `max_skew` from it, de-duplicate
    against `seen` (issuer, event id) pairs.

    The router and audit replay both call this with the same record timestamp, so a replay
    re-checks exactly what the router checked. `received_at` None (only for rebuilding state
    from a record without a timestamp) judges the key at `issued_at`."""
    if value is None:  # a tombstone: no bytes at all
        return IngressCheck(None, None, BAD_ENCODING, "record has no value")
    try:
        envelope = Envelope.from_bytes(value, registry)
    except VerificationError as exc:
        return IngressCheck(None, None, exc.code, str(exc))
    header = envelope.header
    if header.issuer != agency:
        # The issuer named by an unverified header is the sender's to choose: not repeated.
        detail = f"event issued by another agency than the topic's owner arrived on {topic}"
        return IngressCheck(envelope, None, WRONG_INGRESS, detail)
    try:
        event = verify_envelope(
            envelope, keys, received_at=received_at, max_skew=max_skew, registry=registry
        )
    except VerificationError as exc:
        return IngressCheck(envelope, None, exc.code, _unverified(str(exc), envelope))
    if (header.issuer, header.event_id) in seen:
        detail = f"event {header.event_id} of {header.issuer} was already routed"
        return IngressCheck(envelope, None, DUPLICATE, detail)
    return IngressCheck(envelope, event)


def _unverified(detail: str, envelope: Envelope) -> str:
    """`detail` without the header strings of an envelope that failed verification: event id,
    key id, event type and subject are whatever the sender wrote (a forger can write a child's
    name there), and quarantine details must hold no personal value. The quarantined record
    keeps the original bytes for an investigator."""
    header = envelope.header
    chosen = {
        "event_id": header.event_id,
        "key_id": header.key_id,
        "event_type": header.event_type,
        "subject": header.subject or "",
    }
    for name, value in sorted(chosen.items(), key=lambda item: -len(item[1])):
        if len(value) >= 3:
            detail = detail.replace(value, f"<{name}>")
    return detail


def issued_subject(event: VerifiedEvent) -> str:
    """The subject of a verified issued event (every issued envelope carries one)."""
    if event.subject is None:
        raise ValueError("a verified issued event has no subject")
    return event.subject


def deliverable(fields_shared: Collection[str], version: int) -> bool:
    """Whether a grant can be delivered without showing the subject to a recipient not granted
    it: always in wire format v2 (the subject disclosure is withheld); in v1, whose signed header
    shows the subject, only if the subject is granted (router and audit replay alike)."""
    return version >= 2 or SUBJECT_FIELD in fields_shared


def event_view(event: VerifiedEvent) -> EventView:
    """What agreement conditions see of a verified event (router and audit replay alike)."""
    header = event.header
    return EventView(
        event_id=header.event_id,
        event_type=header.event_type,
        issuer=header.issuer,
        subject=issued_subject(event),
        occurred_at=header.occurred_at,
        fields=event.fields,
    )


def learn_relationships(
    context: SubjectContext, event_type: str, fields: dict[str, object]
) -> SubjectContext:
    """Relationships an event creates for later events about the same subject."""
    if event_type == "guardian.appointed" and isinstance(fields.get("guardian_service"), str):
        service = str(fields["guardian_service"])
        return SubjectContext(context.guardians | {service}, context.nrm_referrers)
    if event_type == "nrm.referral.submitted" and isinstance(fields.get("first_responder"), str):
        referrer = str(fields["first_responder"])
        return SubjectContext(context.guardians, context.nrm_referrers | {referrer})
    return context
