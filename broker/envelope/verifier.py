"""The verifier role (the router at ingress, a subscriber on its feed).

Each check is explicit and raises `VerificationError` with its own reason code; the order is
cheap structural checks first, then the signature, then the disclosures against the digests.

Keys are taken by role: an issued envelope only with an issuer key of its issuer, a derived
section only with a router key of the ONE router the caller trusts (`router`). Key validity is
judged at `received_at`, the time the broker received the record (its Kafka timestamp), when the
caller has it; a signer-chosen time more than `max_skew` away from it is refused (`clock_skew`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from broker.envelope import canonical
from broker.envelope.errors import VerificationError
from broker.envelope.keys import ROLE_ISSUER, ROLE_ROUTER, KeyRegistry
from broker.envelope.model import (
    Disclosure,
    Envelope,
    ForwardedEnvelope,
    Header,
    SubjectDisclosure,
    VerifiedEvent,
    decode_disclosed,
    writer_for,
)
from broker.personal import PersonalDict
from broker.schemas import SchemaRegistry, WriterSchema

DEFAULT_MAX_SKEW = timedelta(seconds=300)


def check_skew(
    signed_at: datetime, received_at: datetime, max_skew: timedelta, what: str
) -> None:
    """Refuse a signer-chosen time further than `max_skew` from the time of receipt."""
    if abs(signed_at - received_at) > max_skew:
        raise VerificationError(
            "clock_skew",
            f"{what} is {abs(signed_at - received_at).total_seconds():.0f} s from the time "
            f"received (at most {max_skew.total_seconds():.0f} s allowed)",
        )


def verify_envelope(
    envelope: Envelope | bytes,
    keys: KeyRegistry,
    *,
    received_at: datetime | None = None,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
    registry: SchemaRegistry | None = None,
) -> VerifiedEvent:
    """Verify an issued envelope, which must carry a disclosure for every digest.

    `received_at` (the router: the ingress record's timestamp) is when the issuer's key must
    be valid, and `issued_at` must lie within `max_skew` of it. Without it (offline checks of a
    message with no receipt time) the key is judged at `issued_at`.
    """
    registry = registry or SchemaRegistry.default()
    if isinstance(envelope, bytes | bytearray | memoryview):
        envelope = Envelope.from_bytes(bytes(envelope), registry)
    header = envelope.header
    if received_at is not None:
        check_skew(header.issued_at, received_at, max_skew, f"event {header.event_id} issued_at")
    values, _ = _verify_issued(
        header,
        envelope.digests,
        envelope.disclosures,
        envelope.signature,
        keys,
        registry,
        complete=True,
        key_time=header.issued_at if received_at is None else received_at,
        disclosure_digests=envelope.disclosure_digests(),
    )
    subject = _check_subject(envelope.header, envelope.subject_disclosure, complete=True)
    return VerifiedEvent(envelope.header, values, PersonalDict(), disclosed_subject=subject)


def verify_forwarded(
    forwarded: ForwardedEnvelope | bytes,
    keys: KeyRegistry,
    *,
    router: str,
    recipient: str | None = None,
    received_at: datetime | None = None,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
    registry: SchemaRegistry | None = None,
) -> VerifiedEvent:
    """Verify a forwarded envelope: the issuer's part, then the router's section.

    Only a router key of `router` (the deployment's configured router id) can sign the derived
    section (`wrong_router`, `wrong_role`). With `recipient`, a forward made out to any other
    agency is refused (`wrong_recipient`). With `received_at` (the feed record's timestamp),
    the router's key is judged then and `forwarded_at` must lie within `max_skew` of it.

    The issuer's key is judged at `issued_at`: the router's signature covers the issuer's, and
    the router forwarded the event only after judging that key at the time it received it and
    checking `issued_at` against that time.
    """
    registry = registry or SchemaRegistry.default()
    if isinstance(forwarded, bytes | bytearray | memoryview):
        forwarded = ForwardedEnvelope.from_bytes(bytes(forwarded), registry)
    header, derived = forwarded.header, forwarded.derived
    if received_at is not None:
        check_skew(
            derived.forwarded_at, received_at, max_skew, f"event {header.event_id} forwarded_at"
        )
    values, disclosed = _verify_issued(
        header,
        forwarded.digests,
        forwarded.disclosures,
        forwarded.signature,
        keys,
        registry,
        complete=False,
        key_time=header.issued_at,
    )
    subject = _check_subject(header, forwarded.subject_disclosure, complete=False)
    if recipient is not None and derived.recipient != recipient:
        raise VerificationError(
            "wrong_recipient", f"forward is for {derived.recipient}, not {recipient}"
        )
    if derived.router != router:
        raise VerificationError(
            "wrong_router", f"derived section names router {derived.router}, not {router}"
        )
    router_key = keys.lookup(
        derived.router,
        derived.router_key_id,
        derived.forwarded_at if received_at is None else received_at,
        role=ROLE_ROUTER,
    )
    signed = canonical.router_signing_input(
        event_id=header.event_id,
        issuer=header.issuer,
        issuer_signature=forwarded.signature,
        disclosed_digests=disclosed,
        derived=derived.values,
        agreements=derived.agreements,
        recipient=derived.recipient,
        router=derived.router,
        router_key_id=derived.router_key_id,
        forwarded_at=derived.forwarded_at,
        version=header.version,
        subject_digest=None if subject is None else header.subject_digest,
    )
    if not router_key.verify(derived.signature, signed):
        raise VerificationError(
            "bad_derived_signature", f"router signature of event {header.event_id} does not verify"
        )
    return VerifiedEvent(
        header,
        values,
        derived.values,
        derived.agreements,
        derived.recipient,
        derived.router,
        subject,
    )


def _verify_issued(
    header: Header,
    digests: tuple[bytes, ...],
    disclosures: tuple[Disclosure, ...],
    signature: bytes,
    keys: KeyRegistry,
    registry: SchemaRegistry,
    *,
    complete: bool,
    key_time: datetime,
    disclosure_digests: Sequence[bytes] | None = None,
) -> tuple[PersonalDict, set[bytes]]:
    """Check the issuer's part; return the decoded disclosed values and their digests.

    `disclosure_digests`: the digest of each disclosure, when the caller has them already."""
    event_id = header.event_id
    writer = writer_for(header, registry)
    key = keys.lookup(header.issuer, header.key_id, key_time, role=ROLE_ISSUER)
    digest_set = set(digests)
    if len(digest_set) != len(digests):
        raise VerificationError("duplicate_digest", f"event {event_id}: a digest is repeated")
    if len(digests) != writer.field_count:
        raise VerificationError(
            "schema_violation",
            f"event {event_id}: {len(digests)} digests for {writer.field_count} schema fields",
        )
    signed = canonical.issuer_signing_input(header.to_bytes(), digests, version=header.version)
    if not key.verify(signature, signed):
        raise VerificationError("bad_signature", f"event {event_id}: issuer signature invalid")
    if disclosure_digests is None:
        disclosure_digests = canonical.disclosure_digests(disclosures)
    return _check_disclosures(
        header, writer, digest_set, disclosures, disclosure_digests, complete
    )


def _check_subject(
    header: Header, disclosure: SubjectDisclosure | None, *, complete: bool
) -> str | None:
    """v2: the subject disclosure, when carried, must match the signed `subject_digest`; an
    issued envelope must carry it. Returns the subject disclosed (None when withheld or v1)."""
    if header.version == 1:
        if disclosure is not None:
            raise VerificationError(
                "schema_violation", f"event {header.event_id}: v1 header with a subject disclosure"
            )
        return None
    if disclosure is None:
        if complete:
            raise VerificationError(
                "schema_violation", f"event {header.event_id}: issued envelope lacks its subject"
            )
        return None
    if disclosure.digest() != header.subject_digest:
        raise VerificationError(
            "digest_mismatch", f"event {header.event_id}: subject matches no signed digest"
        )
    return disclosure.value


def _check_disclosures(
    header: Header,
    writer: WriterSchema,
    digest_set: set[bytes],
    disclosures: tuple[Disclosure, ...],
    disclosure_digests: Sequence[bytes],
    complete: bool,
) -> tuple[PersonalDict, set[bytes]]:
    event_id = header.event_id
    seen: set[bytes] = set()
    names: set[str] = set()
    for disclosure, digest in zip(disclosures, disclosure_digests, strict=True):
        if digest in seen:
            raise VerificationError(
                "duplicate_digest", f"event {event_id}: disclosure '{disclosure.name}' repeated"
            )
        if digest not in digest_set:
            raise VerificationError(
                "digest_mismatch",
                f"event {event_id}: disclosure '{disclosure.name}' matches no signed digest",
            )
        seen.add(digest)
        if disclosure.name in names:
            raise VerificationError(
                "schema_violation", f"event {event_id}: field '{disclosure.name}' disclosed twice"
            )
        names.add(disclosure.name)
    values = decode_disclosed(header, writer, disclosures)
    if complete and len(seen) != len(digest_set):
        raise VerificationError(
            "schema_violation", f"event {event_id}: issued envelope lacks some disclosures"
        )
    return values, seen
