"""Forwards joined from the issued bytes are exactly fastavro's encoding of the same forward."""

from __future__ import annotations

from typing import Any

import pytest
from envelope_samples import ISSUER, NOW, RECIPIENT, ROUTER, sample_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.envelope import (
    Envelope,
    ForwardedEnvelope,
    KeyRegistry,
    SigningKey,
    disclose,
    issue,
    verify_forwarded,
)
from broker.envelope.wire import _long_size, avro_count, layout
from broker.ids import SUBJECT_FIELD
from broker.schemas import SchemaRegistry

EVENT_TYPE = "child.missing.started"
FIELDS = list(SchemaRegistry.default().fields(EVENT_TYPE))
SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_text = st.text(max_size=300)  # long enough for two-byte length varints, any code point


def _fastavro_bytes(forwarded: ForwardedEnvelope) -> bytes:
    registry = SchemaRegistry.default()
    return registry.encode("uk.safeguarding.envelope.v2.ForwardedEnvelope", forwarded.to_record())


def _received(issuer_key: SigningKey, values: dict[str, Any], subject: str) -> Envelope:
    """An issued envelope as the router has it: decoded from its bytes."""
    event = sample_event(EVENT_TYPE)
    event["fields"].update(values)
    event["subject"] = subject
    issued = issue(event, issuer=ISSUER, key=issuer_key, now=NOW)
    return Envelope.from_bytes(issued.to_bytes())


@SETTINGS
@given(
    fields=st.sets(st.sampled_from([*FIELDS, SUBJECT_FIELD])),
    clothing=_text,
    subject=st.text(min_size=1, max_size=200),
    derived=st.dictionaries(
        st.sampled_from(["age_band", "pseudonym", "hours", "flag", "names"]),
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _text
        | st.lists(_text, max_size=3),
        max_size=4,
    ),
    agreements=st.lists(st.sampled_from(["dsa.a@1", "dsa.police-missing@3"]), max_size=2),
)
def test_joined_forward_is_fastavros_encoding(
    issuer_key: SigningKey,
    router_key: SigningKey,
    fields: set[str],
    clothing: str,
    subject: str,
    derived: dict[str, Any],
    agreements: list[str],
) -> None:
    envelope = _received(issuer_key, {"clothing": clothing}, subject)
    assert envelope.issued_layout() is not None
    forwarded = disclose(
        envelope,
        fields,
        derived=derived,
        agreements=agreements,
        recipient=RECIPIENT,
        router_key=router_key,
        now=NOW,
    )
    joined = forwarded.to_bytes()
    assert joined == _fastavro_bytes(forwarded)
    assert ForwardedEnvelope.from_bytes(joined) == forwarded


def test_joined_forward_verifies(
    issuer_key: SigningKey, router_key: SigningKey, keys: KeyRegistry
) -> None:
    envelope = _received(issuer_key, {}, "subject-ref")
    forwarded = disclose(
        envelope,
        ["missing_type", SUBJECT_FIELD],
        derived={"age_band": "13-15"},
        agreements=["dsa.police-missing@3"],
        recipient=RECIPIENT,
        router_key=router_key,
        now=NOW,
    )
    verified = verify_forwarded(
        forwarded.to_bytes(), keys, router=ROUTER, recipient=RECIPIENT, received_at=NOW
    )
    assert set(verified.fields) == {"missing_type"}
    assert verified.disclosed_subject == "subject-ref"


def test_an_envelope_not_decoded_from_bytes_is_encoded_by_fastavro(
    issuer_key: SigningKey, router_key: SigningKey
) -> None:
    issued = issue(sample_event(EVENT_TYPE), issuer=ISSUER, key=issuer_key, now=NOW)
    assert issued.issued_layout() is None
    forwarded = disclose(
        issued, FIELDS[:3], derived=None, agreements=[], recipient=RECIPIENT,
        router_key=router_key, now=NOW,
    )  # fmt: skip
    assert forwarded.to_bytes() == _fastavro_bytes(forwarded)


def test_sizes_that_do_not_fit_the_bytes_give_no_layout(issuer_key: SigningKey) -> None:
    envelope = _received(issuer_key, {}, "subject-ref")
    data = envelope.to_bytes()
    subject = envelope.subject_disclosure
    assert subject is not None
    assert layout(data, envelope.disclosures, subject) is not None
    assert layout(data, envelope.disclosures[1:], subject) is None  # one disclosure short
    assert layout(data, envelope.disclosures, (subject.salt, subject.value + "x")) is None


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, b"\x00"), (1, b"\x02"), (63, b"\x7e"), (64, b"\x80\x01"), (8191, b"\xfe\x7f"),
     (8192, b"\x80\x80\x01")],
)  # fmt: skip
def test_avro_count_is_avros_long(n: int, encoded: bytes) -> None:
    assert avro_count(n) == encoded


def test_long_size_is_the_length_of_avro_count() -> None:
    for n in [*range(0, 20_000), 2**21 - 1, 2**21, 2**28, 2**40]:
        assert _long_size(n) == len(avro_count(n)), n

