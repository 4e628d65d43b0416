"""Acceptance 2 (properties): tampering never yields different verified content; withheld values
never reach the recipient."""

from __future__ import annotations

import uuid
from typing import Any

from envelope_samples import ISSUER, NOW, RECIPIENT, ROUTER, sample_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.envelope import (
    KeyRegistry,
    SigningKey,
    VerificationError,
    disclose,
    issue,
    verify_forwarded,
)
from broker.schemas import SchemaRegistry

EVENT_TYPE = "child.missing.started"
FIELDS = list(SchemaRegistry.default().fields(EVENT_TYPE))
TEXT_FIELDS = [
    n
    for n, f in SchemaRegistry.default().fields(EVENT_TYPE).items()
    if f.kind == "string" and not f.allowed
]
SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _forwarded_bytes(
    issuer_key: SigningKey, router_key: SigningKey, fields: set[str], values: dict[str, Any]
) -> bytes:
    event = sample_event(EVENT_TYPE)
    event["fields"].update(values)
    envelope = issue(event, issuer=ISSUER, key=issuer_key, now=NOW)
    return disclose(
        envelope,
        fields,
        derived={"age_band": "13-15"},
        agreements=["dsa.police-missing@3"],
        recipient=RECIPIENT,
        router_key=router_key,
        now=NOW,
    ).to_bytes()


@SETTINGS
@given(data=st.data())
def test_flipping_any_byte_fails_or_changes_nothing(
    data: st.DataObject, issuer_key: SigningKey, router_key: SigningKey, keys: KeyRegistry
) -> None:
    fields = data.draw(st.sets(st.sampled_from(FIELDS)), label="fields")
    original = _forwarded_bytes(issuer_key, router_key, fields, {})
    expected = verify_forwarded(original, keys, router=ROUTER).to_json()
    position = data.draw(st.integers(0, len(original) - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")
    tampered = bytearray(original)
    tampered[position] ^= flip
    try:
        verified = verify_forwarded(bytes(tampered), keys, router=ROUTER)
    except VerificationError:
        return
    assert verified.to_json() == expected


@SETTINGS
@given(
    withheld=st.sets(st.sampled_from(TEXT_FIELDS), min_size=1),
    secret=st.text(min_size=4, max_size=40).filter(
        lambda s: s.strip() == s and len(s.strip()) >= 4
    ),
)
def test_recipient_never_sees_a_withheld_value(
    withheld: set[str],
    secret: str,
    issuer_key: SigningKey,
    router_key: SigningKey,
    keys: KeyRegistry,
) -> None:
    marker = f"{secret}-{uuid.uuid4().hex}"
    values = {name: f"{marker}-{name}" for name in withheld}
    shown = set(FIELDS) - withheld
    data = _forwarded_bytes(issuer_key, router_key, shown, values)
    for value in values.values():
        assert value.encode("utf-8") not in data
    assert marker.encode("utf-8") not in data
    verified = verify_forwarded(data, keys, router=ROUTER)
    assert set(verified.fields) == shown
    assert marker not in repr(verified.to_json())
