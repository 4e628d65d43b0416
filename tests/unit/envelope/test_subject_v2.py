"""Wire format v2: the subject as a salted disclosure the signed header commits to by digest.

The router can withhold the subject like any field and can neither alter nor add it; events
signed under v1 (the subject in the header) still verify.
"""

from __future__ import annotations

import dataclasses

import pytest
from envelope_samples import ISSUER, NOW, RECIPIENT, ROUTER, sample_event

from broker.envelope import (
    DisclosureError,
    Envelope,
    ForwardedEnvelope,
    Header,
    KeyRegistry,
    SigningKey,
    VerificationError,
    canonical,
    disclose,
    issue,
    verify_envelope,
    verify_forwarded,
)
from broker.ids import SUBJECT_FIELD
from broker.schemas import SchemaRegistry

SUBJECT = "subject-ref-"  # sample_event's subject with no tag


def forward(envelope: Envelope, key: SigningKey, fields: list[str]) -> ForwardedEnvelope:
    return disclose(
        envelope,
        fields,
        derived={"child_pseudonym": "p-1"},
        agreements=["dsa.test@1"],
        recipient=RECIPIENT,
        router_key=key,
        now=NOW,
    )


def code_of(action: object) -> str:
    with pytest.raises(VerificationError) as info:
        action()  # type: ignore[operator]
    return info.value.code


def test_v2_header_commits_to_the_subject_without_carrying_it(envelope: Envelope) -> None:
    assert envelope.version == 2 and envelope.header.subject is None
    assert envelope.subject_disclosure is not None
    assert envelope.header.subject_digest == envelope.subject_disclosure.digest()
    assert envelope.subject == SUBJECT
    assert SUBJECT.encode() not in envelope.header.to_bytes()
    name, _ = SchemaRegistry.default().decode(envelope.to_bytes())
    assert name == "uk.safeguarding.envelope.v2.Envelope"


def test_v2_subject_salts_are_fresh(issuer_key: SigningKey) -> None:
    first = issue(sample_event("child.care.ended"), issuer=ISSUER, key=issuer_key, now=NOW)
    second = issue(sample_event("child.care.ended"), issuer=ISSUER, key=issuer_key, now=NOW)
    assert first.subject == second.subject
    # The same child in two events: nothing in the headers links them.
    assert first.header.subject_digest != second.header.subject_digest


def test_router_withholds_the_subject_unless_granted(
    envelope: Envelope, router_key: SigningKey, keys: KeyRegistry
) -> None:
    withheld = forward(envelope, router_key, ["risk_level"])
    data = withheld.to_bytes()
    assert SUBJECT.encode() not in data
    received = verify_forwarded(data, keys, router=ROUTER, recipient=RECIPIENT)
    assert received.subject is None and received.to_json()["subject"] is None
    granted = verify_forwarded(
        forward(envelope, router_key, ["risk_level", SUBJECT_FIELD]), keys, router=ROUTER
    )
    assert granted.subject == SUBJECT and granted.to_json()["subject"] == SUBJECT
    assert set(granted.fields) == {"risk_level"}


def test_altered_subject_in_issued_envelope(envelope: Envelope, keys: KeyRegistry) -> None:
    assert envelope.subject_disclosure is not None
    other = envelope.subject_disclosure._replace(value="another-child")
    changed = dataclasses.replace(envelope, subject_disclosure=other)
    assert code_of(lambda: verify_envelope(changed, keys)) == "digest_mismatch"


def test_altered_subject_in_forward(
    envelope: Envelope, router_key: SigningKey, keys: KeyRegistry
) -> None:
    forwarded = forward(envelope, router_key, [SUBJECT_FIELD])
    assert forwarded.subject_disclosure is not None
    other = forwarded.subject_disclosure._replace(value="another-child")
    changed = dataclasses.replace(forwarded, subject_disclosure=other)
    assert code_of(lambda: verify_forwarded(changed, keys, router=ROUTER)) == "digest_mismatch"


def test_issued_envelope_without_its_subject(envelope: Envelope, keys: KeyRegistry) -> None:
    stripped = dataclasses.replace(envelope, subject_disclosure=None)
    assert code_of(lambda: verify_envelope(stripped, keys)) == "schema_violation"


def test_subject_added_to_a_forward_the_router_signed_without_it(
    envelope: Envelope, router_key: SigningKey, keys: KeyRegistry
) -> None:
    # Whoever holds the issued envelope cannot make a forward show more than the router signed.
    forwarded = forward(envelope, router_key, ["risk_level"])
    added = dataclasses.replace(forwarded, subject_disclosure=envelope.subject_disclosure)
    assert code_of(lambda: verify_forwarded(added, keys, router=ROUTER)) == "bad_derived_signature"


def test_subject_removed_from_a_forward_the_router_signed_with_it(
    envelope: Envelope, router_key: SigningKey, keys: KeyRegistry
) -> None:
    forwarded = forward(envelope, router_key, ["risk_level", SUBJECT_FIELD])
    removed = dataclasses.replace(forwarded, subject_disclosure=None)
    assert (
        code_of(lambda: verify_forwarded(removed, keys, router=ROUTER)) == "bad_derived_signature"
    )


def test_v1_signature_does_not_verify_as_v2(issuer_key: SigningKey, keys: KeyRegistry) -> None:
    event = sample_event("child.care.ended")
    v1 = issue(event, issuer=ISSUER, key=issuer_key, now=NOW, version=1)
    v2 = issue(event, issuer=ISSUER, key=issuer_key, now=NOW)
    # v2 envelope carrying a signature over the same header and digests under the v1 domain.
    signed_v1 = issuer_key.sign(canonical.issuer_signing_input(v2.header.to_bytes(), v2.digests))
    relabelled = dataclasses.replace(v2, signature=signed_v1)
    assert code_of(lambda: verify_envelope(relabelled, keys)) == "bad_signature"
    assert verify_envelope(v1, keys).subject == SUBJECT


def test_v1_events_still_verify_and_forward_only_with_their_subject(
    issuer_key: SigningKey, router_key: SigningKey, keys: KeyRegistry
) -> None:
    v1 = issue(sample_event("child.missing.started"), issuer=ISSUER, key=issuer_key, now=NOW,
               version=1)  # fmt: skip
    data = v1.to_bytes()
    name, _ = SchemaRegistry.default().decode(data)
    assert name == "uk.safeguarding.envelope.Envelope"
    assert v1.header.subject == SUBJECT and v1.subject_disclosure is None
    assert verify_envelope(data, keys).subject == SUBJECT
    with pytest.raises(DisclosureError, match="v1"):
        forward(v1, router_key, ["risk_level"])
    forwarded = forward(v1, router_key, ["risk_level", SUBJECT_FIELD]).to_bytes()
    name, _ = SchemaRegistry.default().decode(forwarded)
    assert name == "uk.safeguarding.envelope.ForwardedEnvelope"
    received = verify_forwarded(forwarded, keys, router=ROUTER, recipient=RECIPIENT)
    assert received.subject == SUBJECT and set(received.fields) == {"risk_level"}


def test_a_header_has_a_subject_or_its_digest_never_both(envelope: Envelope) -> None:
    with pytest.raises(VerificationError):
        dataclasses.replace(envelope.header, subject="x")
    with pytest.raises(VerificationError):
        dataclasses.replace(envelope.header, subject_digest=None)
    assert isinstance(envelope.header, Header)


def test_no_payload_schema_has_a_field_named_like_the_subject() -> None:
    registry = SchemaRegistry.default()
    for event_type in registry.event_types():
        assert SUBJECT_FIELD not in registry.fields(event_type), event_type


def test_subject_disclosure_text_form_shows_no_value(envelope: Envelope) -> None:
    assert envelope.subject_disclosure is not None
    assert SUBJECT not in repr(envelope.subject_disclosure)
    assert SUBJECT not in repr(envelope) and SUBJECT not in str(envelope.header)
