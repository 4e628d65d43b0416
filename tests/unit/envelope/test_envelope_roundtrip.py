"""Acceptance 1: for every event type, issue -> disclose a random subset -> verify."""

from __future__ import annotations

import random

import pytest
from envelope_samples import ISSUER, NOW, RECIPIENT, ROUTER, sample_event

from broker.envelope import (
    Envelope,
    ForwardedEnvelope,
    KeyRegistry,
    SigningKey,
    disclose,
    issue,
    verify_envelope,
    verify_forwarded,
)
from broker.ids import SUBJECT_FIELD
from broker.schemas import SchemaRegistry

EVENT_TYPES = SchemaRegistry.default().event_types()


@pytest.mark.parametrize("event_type", EVENT_TYPES)
@pytest.mark.parametrize("seed", range(5))
def test_issue_disclose_verify_every_event_type(
    event_type: str,
    seed: int,
    issuer_key: SigningKey,
    router_key: SigningKey,
    keys: KeyRegistry,
) -> None:
    registry = SchemaRegistry.default()
    event = sample_event(event_type, tag=str(seed))
    envelope = issue(event, issuer=ISSUER, key=issuer_key, now=NOW)
    names = list(registry.fields(event_type))
    assert [d.name for d in envelope.disclosures] == names

    on_ingress = verify_envelope(Envelope.from_bytes(envelope.to_bytes()), keys)
    assert on_ingress.to_json()["fields"] == event["fields"]
    assert on_ingress.subject == event["subject"]

    subset = random.Random(f"{event_type}{seed}").sample(names, k=seed * len(names) // 4)
    share_subject = seed % 2 == 0  # the subject is granted like a field, or withheld
    forwarded = disclose(
        envelope,
        [*subset, SUBJECT_FIELD] if share_subject else subset,
        derived={"age_band": "13-15", "count": seed},
        agreements=[f"dsa.test@{seed}"],
        recipient=RECIPIENT,
        router_key=router_key,
        now=NOW,
    )
    received = verify_forwarded(
        ForwardedEnvelope.from_bytes(forwarded.to_bytes()), keys, router=ROUTER, recipient=RECIPIENT
    )
    feed = received.to_json()
    assert feed == {
        "issuer": ISSUER,
        "event_id": envelope.header.event_id,
        "event_type": event_type,
        "subject": event["subject"] if share_subject else None,
        "occurred_at": "2026-11-24T18:05:00Z",
        "fields": {name: event["fields"][name] for name in names if name in subset},
        "derived": {"age_band": "13-15", "count": seed},
        "agreements": [f"dsa.test@{seed}"],
        "verified": True,
    }
    assert received.router == ROUTER and received.recipient == RECIPIENT


def test_event_id_is_generated_unless_given(issuer_key: SigningKey) -> None:
    event = sample_event("nrm.decision.made")
    first = issue(event, issuer=ISSUER, key=issuer_key, now=NOW)
    second = issue(event, issuer=ISSUER, key=issuer_key, now=NOW)
    assert first.header.event_id != second.header.event_id
    given = issue({**event, "event_id": "evt-1"}, issuer=ISSUER, key=issuer_key, now=NOW)
    assert given.header.event_id == "evt-1"


def test_salts_are_fresh_per_field_and_event(issuer_key: SigningKey) -> None:
    event = sample_event("child.care.ended")
    salts = [
        d.salt for _ in range(3) for d in issue(event, issuer=ISSUER, key=issuer_key).disclosures
    ]
    assert len(set(salts)) == len(salts)
    assert all(len(s) == 16 for s in salts)


def test_field_values_decodes_everything(envelope: Envelope) -> None:
    values = envelope.field_values()
    assert values["missing_type"] == "A"
    assert set(values) == set(SchemaRegistry.default().fields("child.missing.started"))


def test_null_fields_are_disclosed_too(issuer_key: SigningKey, keys: KeyRegistry) -> None:
    event = {
        "event_type": "child.care.ended",
        "subject": "s",
        "occurred_at": "2026-11-24T18:05:00Z",
        "fields": {"la_child_id": "C1", "reason": "E8"},
    }
    envelope = issue(event, issuer=ISSUER, key=issuer_key, now=NOW)
    assert len(envelope.digests) == len(SchemaRegistry.default().fields("child.care.ended"))
    fields = verify_envelope(envelope, keys).to_json()["fields"]
    assert fields["first_name"] is None and fields["reason"] == "E8"
