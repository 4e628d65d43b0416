"""Acceptance 3: personal values never appear in exception messages or reprs."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from envelope_samples import ISSUER, NOW, ROUTER, sample_event

from broker.envelope import (
    Envelope,
    ForwardedEnvelope,
    KeyRegistry,
    SigningKey,
    VerificationError,
    issue,
    verify_envelope,
    verify_forwarded,
)
from broker.personal import REDACTED, Personal, PersonalDict
from broker.schemas import FieldValueError, SchemaRegistry

SECRETS = ("secret-", "subject-ref", "2011-09", "Philomena")


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {text[:200]!r}"


def test_envelope_reprs_hide_values(
    envelope: Envelope, forwarded: ForwardedEnvelope, keys: KeyRegistry
) -> None:
    verified_in = verify_envelope(envelope, keys)
    verified_out = verify_forwarded(forwarded, keys, router=ROUTER)
    things: list[object] = [
        envelope,
        envelope.header,
        *envelope.disclosures,
        forwarded,
        forwarded.derived,
        verified_in,
        verified_out,
        verified_in.fields,
        envelope.field_values(),
        forwarded.field_values(),
    ]
    for thing in things:
        _assert_clean(repr(thing))
        _assert_clean(str(thing))
        _assert_clean(f"{thing}")
    # The names are there, so the reprs stay useful.
    assert "clothing" in repr(envelope) and "clothing" in repr(verified_in.fields)
    # ...and the values are still reachable on purpose.
    assert verified_in.fields["clothing"] == "secret-clothing-"


def test_personal_wrapper() -> None:
    value = Personal("Alex Example")
    assert str(value) == REDACTED and "Alex" not in repr(value) and f"{value:>20}" == REDACTED
    assert value.reveal() == "Alex Example"
    assert value == Personal("Alex Example") and hash(value) == hash(Personal("Alex Example"))
    with pytest.raises(TypeError):
        pickle.dumps(value)


def test_personal_dict_is_a_dict_that_prints_names_only() -> None:
    fields = PersonalDict(first_name="Alex", dob="2011-09-09")
    assert isinstance(fields, dict) and fields["first_name"] == "Alex"
    assert "Alex" not in repr(fields) and "2011" not in str(fields)
    assert "first_name" in repr(fields)
    assert "Alex" not in repr(fields.copy()) and isinstance(fields.copy(), PersonalDict)


def test_signing_key_repr_hides_the_key(issuer_key: SigningKey) -> None:
    text = repr(issuer_key)
    assert ISSUER in text and "PRIVATE" not in text and "_private" not in text
    with pytest.raises(TypeError):
        pickle.dumps(issuer_key)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dob", "secret-not-a-date"),
        ("first_name", ["secret-list"]),
        ("missing_since", "secret-2011-09-09"),
        ("age_band", "secret-band"),
        ("risk_level", "secret-risk"),
    ],
)
def test_validation_errors_never_quote_the_value(field: str, value: object) -> None:
    event = sample_event("child.missing.started")
    event["fields"][field] = value
    with pytest.raises(FieldValueError) as info:
        SchemaRegistry.default().validate_fields(event["event_type"], event["fields"])
    _assert_clean(str(info.value))
    _assert_clean(repr(info.value))


def test_issue_errors_never_quote_values(issuer_key: SigningKey) -> None:
    from broker.envelope import EventFormatError

    for broken in (
        {"occurred_at": "secret-time"},
        {"event_id": ["secret-id"]},
        {"subject": 12},
        {"extra_key": "secret-extra"},
    ):
        event = {**sample_event("child.care.ended"), **broken}
        with pytest.raises(EventFormatError) as info:
            issue(event, issuer=ISSUER, key=issuer_key, now=NOW)
        _assert_clean(str(info.value))


def test_verification_errors_never_quote_values(
    envelope: Envelope, forwarded: ForwardedEnvelope, issuer_key: SigningKey, keys: KeyRegistry
) -> None:
    broken: list[Envelope | bytes] = [
        dataclasses.replace(envelope, disclosures=envelope.disclosures[1:]),
        dataclasses.replace(
            envelope, header=dataclasses.replace(envelope.header, subject_digest=bytes(32))
        ),
        dataclasses.replace(
            envelope,
            subject_disclosure=envelope.subject_disclosure._replace(value="subject-ref-other"),
        ),
        dataclasses.replace(
            envelope,
            disclosures=tuple(d._replace(value=d.value + b"\x00") for d in envelope.disclosures),
        ),
        envelope.to_bytes()[:-40],
    ]
    for item in broken:
        with pytest.raises(VerificationError) as info:
            verify_envelope(item, keys)
        _assert_clean(str(info.value))
        assert info.value.__cause__ is None
    swapped = dataclasses.replace(
        forwarded,
        disclosures=tuple(d._replace(name="clothing") for d in forwarded.disclosures),
    )
    with pytest.raises(VerificationError) as info:
        verify_forwarded(swapped, keys, router=ROUTER)
    _assert_clean(str(info.value))
