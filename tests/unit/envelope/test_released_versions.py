"""Envelopes issued under a released payload schema still verify, disclose and read."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from envelope_samples import ISSUER, NOW, RECIPIENT, ROUTER, sample_value

from broker.envelope import (
    Envelope,
    ForwardedEnvelope,
    KeyRegistry,
    SigningKey,
    VerificationError,
    disclose,
    issue,
    verify_envelope,
    verify_forwarded,
)
from broker.schemas import SchemaRegistry
from broker.schemas.registry import default_released_dir, default_schema_dir

PLACEMENT = "child.placement.changed"
ADDED_SINCE_V1 = {"legal_status", "reason_new_episode"}


@pytest.fixture(scope="module")
def v1() -> SchemaRegistry:
    """A registry that knows only the first release: an issuer that was never upgraded (so it
    also signs wire format v1)."""
    return SchemaRegistry.from_dir(default_released_dir() / "v1")


def _v1_event(v1: SchemaRegistry) -> dict[str, Any]:
    fields = v1.fields(PLACEMENT)
    return {
        "event_type": PLACEMENT,
        "subject": "subject-ref-v1",
        "occurred_at": "2026-11-24T18:05:00Z",
        "fields": {name: sample_value(info, "v1") for name, info in fields.items()},
    }


@pytest.fixture()
def old_envelope(v1: SchemaRegistry, issuer_key: SigningKey) -> Envelope:
    return issue(_v1_event(v1), issuer=ISSUER, key=issuer_key, now=NOW, registry=v1, version=1)


def test_old_envelope_names_the_released_schema(old_envelope: Envelope, v1: SchemaRegistry) -> None:
    current = SchemaRegistry.default()
    assert old_envelope.header.schema_fingerprint == v1.fingerprint(PLACEMENT)
    assert old_envelope.header.schema_fingerprint != current.fingerprint(PLACEMENT)
    assert len(old_envelope.digests) == len(current.fields(PLACEMENT)) - len(ADDED_SINCE_V1)


def test_old_envelope_verifies_with_the_current_registry(
    old_envelope: Envelope, v1: SchemaRegistry, keys: KeyRegistry
) -> None:
    event = verify_envelope(old_envelope.to_bytes(v1), keys)
    expected = v1.validate_fields(PLACEMENT, _v1_event(v1)["fields"])
    assert dict(event.fields) == expected
    assert not ADDED_SINCE_V1 & set(event.fields)
    assert dict(Envelope.from_bytes(old_envelope.to_bytes(v1)).field_values()) == expected


def test_old_envelope_failed_before_released_versions_were_loaded(
    old_envelope: Envelope, keys: KeyRegistry
) -> None:
    current_only = SchemaRegistry.from_dir(default_schema_dir())
    with pytest.raises(VerificationError) as caught:
        verify_envelope(old_envelope, keys, registry=current_only)
    assert caught.value.code == "unknown_schema"


def test_old_envelope_forwards_and_reads_new_fields_as_null(
    old_envelope: Envelope, keys: KeyRegistry, router_key: SigningKey
) -> None:
    shared = ["placement_type", "reason", "age_band"]
    forwarded = disclose(
        Envelope.from_bytes(old_envelope.to_bytes()),
        [*shared, "subject"],  # a v1 envelope shows its subject: only to a recipient granted it
        derived={"child_pseudonym": "p-1"},
        agreements=["dsa.national-statistics@1"],
        recipient=RECIPIENT,
        router_key=router_key,
        now=NOW,
    )
    data = forwarded.to_bytes()
    event = verify_forwarded(data, keys, router=ROUTER, recipient=RECIPIENT)
    assert set(event.fields) == set(shared)
    assert set(ForwardedEnvelope.from_bytes(data).field_values()) == set(shared)
    fields = event.to_json()["fields"]
    assert fields["placement_type"] == event.fields["placement_type"]
    # Fields the issuer's version did not have are null; withheld ones stay absent.
    assert {name: fields[name] for name in ADDED_SINCE_V1} == dict.fromkeys(ADDED_SINCE_V1)
    assert set(fields) == set(shared) | ADDED_SINCE_V1


def test_current_envelope_reads_its_new_fields(
    issuer_key: SigningKey, keys: KeyRegistry, v1: SchemaRegistry
) -> None:
    event = _v1_event(v1)
    event["fields"]["legal_status"] = "C2"
    envelope = issue(event, issuer=ISSUER, key=issuer_key, now=NOW)
    verified = verify_envelope(envelope.to_bytes(), keys)
    assert verified.fields["legal_status"] == "C2"
    assert verified.to_json()["fields"]["legal_status"] == "C2"
    assert verified.to_json()["fields"]["reason_new_episode"] is None  # issued as null


def test_digest_count_is_the_writer_versions(old_envelope: Envelope, keys: KeyRegistry) -> None:
    # Claiming the current schema for a v1 envelope: too few digests for it, refused before
    # the signature (which would fail too) is even checked.
    current = SchemaRegistry.default().fingerprint(PLACEMENT)
    relabelled = replace(
        old_envelope, header=replace(old_envelope.header, schema_fingerprint=current)
    )
    with pytest.raises(VerificationError) as caught:
        verify_envelope(relabelled, keys)
    assert caught.value.code == "schema_violation"


def test_unknown_payload_fingerprint_is_unknown_schema(
    old_envelope: Envelope, keys: KeyRegistry
) -> None:
    unknown = replace(
        old_envelope, header=replace(old_envelope.header, schema_fingerprint=bytes(8))
    )
    with pytest.raises(VerificationError) as caught:
        verify_envelope(unknown, keys)
    assert caught.value.code == "unknown_schema"
    with pytest.raises(VerificationError) as caught:
        unknown.field_values()
    assert caught.value.code == "unknown_schema"


def test_router_routes_an_old_placement_event(tmp_path: Path, v1: SchemaRegistry) -> None:
    from broker.agreements import load_agreements
    from broker.audit.record import Outcome
    from broker.config import load_config
    from broker.envelope import load_signing_key
    from broker.router.core import IngressRecord, RouterCore
    from broker.router.state import PartitionState
    from broker.scaffold import write_deployment

    config = load_config(write_deployment(tmp_path / "dep", bootstrap_servers="127.0.0.1:9"))
    keys = KeyRegistry.from_dir(config.keys_dir)
    core = RouterCore(
        keys=keys,
        agreements=load_agreements(config.agreements_dir),
        router_key=load_signing_key(config.router.signing_key),
        agencies=config.agency_ids,
        pseudonym_key=config.pseudonym_key,
    )
    signing_key = config.agency(ISSUER).signing_key
    assert signing_key is not None
    event = _v1_event(v1)
    value = issue(event, issuer=ISSUER, key=load_signing_key(signing_key), registry=v1).to_bytes()
    result = core.route(
        IngressRecord(f"ingress.{ISSUER}", 0, 0, value), PartitionState.new(f"ingress.{ISSUER}/0")
    )
    assert result.outcome == Outcome.FORWARDED
    (stats,) = [o.value for o in result.outputs if o.topic == "feed.stats.national"]
    assert stats is not None
    received = verify_forwarded(stats, keys, router=ROUTER, recipient="stats.national")
    assert received.fields["placement_type"] == event["fields"]["placement_type"]
    fields = received.to_json()["fields"]
    assert fields["legal_status"] is None and fields["reason_new_episode"] is None
