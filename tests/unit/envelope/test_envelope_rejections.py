"""Acceptance 2: each rejection has its own test, asserting its reason code.

Each test breaks exactly one thing; with the matching check removed, verification would either
succeed or fail with a different code, so the test would fail.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from envelope_samples import ISSUER, KEYS_FROM, NOW, RECIPIENT, ROUTER, sample_event

from broker.envelope import (
    Disclosure,
    Envelope,
    ForwardedEnvelope,
    KeyRegistry,
    SigningKey,
    VerificationError,
    canonical,
    disclose,
    generate_key,
    issue,
    load_signing_key,
    signing_key_from_pem,
    verify_envelope,
    verify_forwarded,
)
from broker.schemas import SchemaRegistry


def verify_fwd(data: Any, keys: KeyRegistry, **options: Any) -> Any:
    """`verify_forwarded` trusting the samples' router."""
    return verify_forwarded(data, keys, router=ROUTER, **options)


def resign(envelope: Envelope, key: SigningKey, **changes: object) -> Envelope:
    """An envelope with `changes`, validly signed by `key`: a misbehaving issuer."""
    changed = dataclasses.replace(envelope, **changes)  # type: ignore[arg-type]
    signature = key.sign(
        canonical.issuer_signing_input(
            changed.header.to_bytes(), changed.digests, version=changed.header.version
        )
    )
    return dataclasses.replace(changed, signature=signature)


def forward(envelope: Envelope, router_key: SigningKey, fields: list[str]) -> ForwardedEnvelope:
    return disclose(
        envelope,
        fields,
        derived={"age_band": "13-15"},
        agreements=["dsa.police-missing@3"],
        recipient=RECIPIENT,
        router_key=router_key,
        now=NOW,
    )


def code_of(action: object) -> str:
    with pytest.raises(VerificationError) as info:
        action()  # type: ignore[operator]
    return info.value.code


# The baseline: unmodified envelopes verify.


def test_baseline_verifies(
    envelope: Envelope, forwarded: ForwardedEnvelope, keys: KeyRegistry
) -> None:
    assert verify_envelope(envelope, keys).event_id == envelope.header.event_id
    assert set(verify_fwd(forwarded, keys).fields) == {
        "missing_type",
        "risk_level",
        "clothing",
    }


# Digests and disclosures.


def test_duplicate_digest_in_signed_list(
    envelope: Envelope, issuer_key: SigningKey, keys: KeyRegistry
) -> None:
    digests = (*envelope.digests[:-1], envelope.digests[0])
    forged = resign(envelope, issuer_key, digests=tuple(sorted(digests)))
    assert code_of(lambda: verify_envelope(forged, keys)) == "duplicate_digest"


def test_duplicate_disclosure(forwarded: ForwardedEnvelope, keys: KeyRegistry) -> None:
    twice = dataclasses.replace(
        forwarded, disclosures=(*forwarded.disclosures, forwarded.disclosures[0])
    )
    assert code_of(lambda: verify_fwd(twice, keys)) == "duplicate_digest"


def test_disclosure_with_altered_value(forwarded: ForwardedEnvelope, keys: KeyRegistry) -> None:
    first, *rest = forwarded.disclosures
    altered = first._replace(
        value=SchemaRegistry.default().encode_value(
            "child.missing.started", first.name, "M" if first.name == "missing_type" else None
        ),
    )
    changed = dataclasses.replace(forwarded, disclosures=(altered, *rest))
    assert changed.disclosures[0].value != first.value
    assert code_of(lambda: verify_fwd(changed, keys)) == "digest_mismatch"


def test_disclosure_added_by_router(
    envelope: Envelope, router_key: SigningKey, keys: KeyRegistry
) -> None:
    added = Disclosure(os.urandom(16), "first_name", b"\x02\x06Eve")
    forwarded = forward(envelope, router_key, ["missing_type"])
    changed = dataclasses.replace(forwarded, disclosures=(*forwarded.disclosures, added))
    assert code_of(lambda: verify_fwd(changed, keys)) == "digest_mismatch"


def test_names_swapped_between_disclosures(forwarded: ForwardedEnvelope, keys: KeyRegistry) -> None:
    a, b, *rest = forwarded.disclosures
    swapped = (a._replace(name=b.name), b._replace(name=a.name), *rest)
    changed = dataclasses.replace(forwarded, disclosures=swapped)
    assert code_of(lambda: verify_fwd(changed, keys)) == "digest_mismatch"


def test_values_swapped_between_disclosures(envelope: Envelope, keys: KeyRegistry) -> None:
    by_name = {d.name: d for d in envelope.disclosures}
    a, b = by_name["clothing"], by_name["associates"]
    swapped = [
        a._replace(value=b.value) if d is a else b._replace(value=a.value) if d is b else d
        for d in envelope.disclosures
    ]
    changed = dataclasses.replace(envelope, disclosures=tuple(swapped))
    assert code_of(lambda: verify_envelope(changed, keys)) == "digest_mismatch"


# The header and the issuer's signature.


@pytest.mark.parametrize(
    "change",
    [
        {"event_id": "another-event"},
        {"subject_digest": bytes(32)},
        {"occurred_at": NOW - timedelta(days=1)},
        {"issued_at": NOW - timedelta(seconds=1)},
    ],
)
def test_altered_header(envelope: Envelope, keys: KeyRegistry, change: dict[str, object]) -> None:
    header = dataclasses.replace(envelope.header, **change)  # type: ignore[arg-type]
    changed = dataclasses.replace(envelope, header=header)
    assert code_of(lambda: verify_envelope(changed, keys)) == "bad_signature"


def test_altered_header_in_forward(forwarded: ForwardedEnvelope, keys: KeyRegistry) -> None:
    header = dataclasses.replace(forwarded.header, subject_digest=bytes(32))
    changed = dataclasses.replace(forwarded, header=header)
    assert code_of(lambda: verify_fwd(changed, keys)) == "bad_signature"


def test_altered_digest_list(envelope: Envelope, keys: KeyRegistry) -> None:
    digests = tuple(sorted((*envelope.digests[1:], os.urandom(32))))
    changed = dataclasses.replace(envelope, digests=digests)
    assert code_of(lambda: verify_envelope(changed, keys)) == "bad_signature"


def test_signature_by_another_key(
    envelope: Envelope, router_key: SigningKey, keys: KeyRegistry
) -> None:
    signed = canonical.issuer_signing_input(envelope.header.to_bytes(), envelope.digests, version=2)
    changed = dataclasses.replace(envelope, signature=router_key.sign(signed))
    assert code_of(lambda: verify_envelope(changed, keys)) == "bad_signature"


# Keys.


def test_unknown_key(envelope: Envelope, keys: KeyRegistry) -> None:
    assert code_of(lambda: verify_envelope(envelope, KeyRegistry())) == "unknown_key"
    header = dataclasses.replace(envelope.header, key_id="k-unknown")
    changed = dataclasses.replace(envelope, header=header)
    assert code_of(lambda: verify_envelope(changed, keys)) == "unknown_key"


def test_revoked_key(envelope: Envelope, keys: KeyRegistry) -> None:
    keys.revoke(ISSUER, "k1", NOW - timedelta(hours=1))
    assert code_of(lambda: verify_envelope(envelope, keys)) == "revoked_key"


def test_revocation_after_issue_keeps_earlier_events(envelope: Envelope, keys: KeyRegistry) -> None:
    keys.revoke(ISSUER, "k1", NOW + timedelta(hours=1))
    assert verify_envelope(envelope, keys).issuer == ISSUER


def test_key_used_before_its_validity(key_dir: Path, keys: KeyRegistry) -> None:
    # The bare PEM (without its .pub.json terms) lets the signer sign before valid_from.
    pem = (key_dir / f"{ISSUER}.k1.key.pem").read_bytes()
    unbounded = signing_key_from_pem(pem, ISSUER, "k1")
    early = issue(
        sample_event("nrm.decision.made"),
        issuer=ISSUER,
        key=unbounded,
        now=KEYS_FROM - timedelta(seconds=1),
    )
    assert code_of(lambda: verify_envelope(early, keys)) == "key_not_valid"


def test_key_used_after_its_validity(
    envelope: Envelope, issuer_key: SigningKey, keys: KeyRegistry
) -> None:
    info = dataclasses.replace(issuer_key.public_key_info(), valid_until=NOW - timedelta(days=1))
    keys.add(info)
    assert code_of(lambda: verify_envelope(envelope, keys)) == "key_not_valid"


def test_issuer_refuses_to_sign_outside_validity(issuer_key: SigningKey) -> None:
    from broker.envelope import KeyFileError

    with pytest.raises(KeyFileError, match="not valid"):
        issue(
            sample_event("nrm.decision.made"),
            issuer=ISSUER,
            key=issuer_key,
            now=KEYS_FROM - timedelta(days=1),
        )


def test_router_key_unknown(forwarded: ForwardedEnvelope, keys: KeyRegistry) -> None:
    only_issuer = KeyRegistry(keys.keys(ISSUER))
    assert code_of(lambda: verify_fwd(forwarded, only_issuer)) == "unknown_key"


# Schemas.


def test_unknown_schema_fingerprint(
    envelope: Envelope, issuer_key: SigningKey, keys: KeyRegistry
) -> None:
    header = dataclasses.replace(envelope.header, schema_fingerprint=bytes(8))
    forged = resign(envelope, issuer_key, header=header)
    assert code_of(lambda: verify_envelope(forged, keys)) == "unknown_schema"


def test_event_type_not_matching_schema(
    envelope: Envelope, issuer_key: SigningKey, keys: KeyRegistry
) -> None:
    header = dataclasses.replace(envelope.header, event_type="child.missing.ended")
    forged = resign(envelope, issuer_key, header=header)
    assert code_of(lambda: verify_envelope(forged, keys)) == "schema_violation"


def test_value_not_of_the_field_type(
    envelope: Envelope, issuer_key: SigningKey, keys: KeyRegistry
) -> None:
    bad = [d._replace(value=b"\x09") if d.name == "risk_level" else d for d in envelope.disclosures]
    forged = resign(
        envelope, issuer_key, disclosures=tuple(bad), digests=tuple(sorted(d.digest() for d in bad))
    )
    assert code_of(lambda: verify_envelope(forged, keys)) == "schema_violation"


def test_value_with_trailing_bytes(
    envelope: Envelope, issuer_key: SigningKey, keys: KeyRegistry
) -> None:
    bad = [
        d._replace(value=d.value + b"\x00") if d.name == "uasc" else d for d in envelope.disclosures
    ]
    forged = resign(
        envelope, issuer_key, disclosures=tuple(bad), digests=tuple(sorted(d.digest() for d in bad))
    )
    assert code_of(lambda: verify_envelope(forged, keys)) == "schema_violation"


def test_field_not_in_schema(envelope: Envelope, issuer_key: SigningKey, keys: KeyRegistry) -> None:
    bad = [d._replace(name="shoe_size") if d.name == "uasc" else d for d in envelope.disclosures]
    forged = resign(
        envelope, issuer_key, disclosures=tuple(bad), digests=tuple(sorted(d.digest() for d in bad))
    )
    assert code_of(lambda: verify_envelope(forged, keys)) == "schema_violation"


def test_same_field_disclosed_twice_with_two_salts(
    envelope: Envelope, issuer_key: SigningKey, keys: KeyRegistry
) -> None:
    # The issuer signs two disclosures of one field in place of another field's.
    first = envelope.disclosures[0]
    twin = first._replace(salt=os.urandom(16))
    bad = (first, twin, *envelope.disclosures[2:])
    forged = resign(
        envelope, issuer_key, disclosures=bad, digests=tuple(sorted(d.digest() for d in bad))
    )
    with pytest.raises(VerificationError, match="disclosed twice") as info:
        verify_envelope(forged, keys)
    assert info.value.code == "schema_violation"


def test_digest_count_must_match_schema(
    envelope: Envelope, issuer_key: SigningKey, keys: KeyRegistry
) -> None:
    kept = envelope.disclosures[1:]
    forged = resign(
        envelope, issuer_key, disclosures=kept, digests=tuple(sorted(d.digest() for d in kept))
    )
    assert code_of(lambda: verify_envelope(forged, keys)) == "schema_violation"


def test_issued_envelope_must_carry_every_disclosure(envelope: Envelope, keys: KeyRegistry) -> None:
    partial = dataclasses.replace(envelope, disclosures=envelope.disclosures[1:])
    assert code_of(lambda: verify_envelope(partial, keys)) == "schema_violation"


# Encoding.


@pytest.mark.parametrize("data", [b"", b"\xc3\x01", b"{}", b"\xc3\x01" + bytes(20)])
def test_bad_encoding(data: bytes, keys: KeyRegistry) -> None:
    assert code_of(lambda: verify_envelope(data, keys)) in ("bad_encoding", "unknown_schema")
    assert code_of(lambda: verify_fwd(data, keys)) in ("bad_encoding", "unknown_schema")


def test_truncated_envelope(envelope: Envelope, keys: KeyRegistry) -> None:
    assert code_of(lambda: verify_envelope(envelope.to_bytes()[:-3], keys)) == "bad_encoding"


def test_envelope_is_not_a_forward(envelope: Envelope, keys: KeyRegistry) -> None:
    assert code_of(lambda: verify_fwd(envelope.to_bytes(), keys)) == "bad_encoding"


def test_unknown_message_fingerprint(envelope: Envelope, keys: KeyRegistry) -> None:
    data = envelope.to_bytes()
    assert (
        code_of(lambda: verify_envelope(data[:2] + bytes(8) + data[10:], keys)) == "unknown_schema"
    )


# The router's section.


@pytest.mark.parametrize(
    "change",
    [
        {"values": {"age_band": "16-17"}},
        {"values": {"age_band": "13-15", "extra": "added"}},
        {"values": {}},
        {"agreements": ("dsa.everything@1",)},
        {"recipient": "police.other"},
        {"forwarded_at": NOW + timedelta(seconds=1)},
    ],
)
def test_bad_derived_signature(
    envelope: Envelope, router_key: SigningKey, keys: KeyRegistry, change: dict[str, object]
) -> None:
    from broker.personal import PersonalDict

    forwarded = forward(envelope, router_key, ["missing_type"])
    if "values" in change:
        change = {"values": PersonalDict(change["values"])}  # type: ignore[call-overload]
    derived = dataclasses.replace(forwarded.derived, **change)  # type: ignore[arg-type]
    changed = dataclasses.replace(forwarded, derived=derived)
    assert code_of(lambda: verify_fwd(changed, keys)) == "bad_derived_signature"


def test_router_withholding_after_signing(
    envelope: Envelope, router_key: SigningKey, keys: KeyRegistry
) -> None:
    # Someone between router and recipient drops a disclosure the router forwarded.
    forwarded = forward(envelope, router_key, ["missing_type", "risk_level"])
    dropped = dataclasses.replace(forwarded, disclosures=forwarded.disclosures[:1])
    assert code_of(lambda: verify_fwd(dropped, keys)) == "bad_derived_signature"


def test_derived_section_replayed_onto_another_event(
    issuer_key: SigningKey, router_key: SigningKey, keys: KeyRegistry
) -> None:
    event = sample_event("child.missing.started")
    first = forward(
        issue(event, issuer=ISSUER, key=issuer_key, now=NOW), router_key, ["missing_type"]
    )
    other = issue(event, issuer=ISSUER, key=issuer_key, now=NOW)
    second = forward(other, router_key, ["missing_type"])
    replayed = dataclasses.replace(second, derived=first.derived)
    assert code_of(lambda: verify_fwd(replayed, keys)) == "bad_derived_signature"


def test_wrong_recipient(forwarded: ForwardedEnvelope, keys: KeyRegistry) -> None:
    assert (
        code_of(lambda: verify_fwd(forwarded, keys, recipient="nrm.sca")) == "wrong_recipient"
    )
    assert verify_fwd(forwarded, keys, recipient=RECIPIENT).recipient == RECIPIENT


def test_router_key_id_unknown(
    envelope: Envelope, router_key: SigningKey, keys: KeyRegistry, tmp_path: Path
) -> None:
    other = load_signing_key(generate_key(ROUTER, tmp_path, key_id="r2", valid_from=KEYS_FROM)[0])
    forwarded = forward(envelope, other, ["missing_type"])
    assert code_of(lambda: verify_fwd(forwarded, keys)) == "unknown_key"


def test_router_key_revoked(forwarded: ForwardedEnvelope, keys: KeyRegistry) -> None:
    keys.revoke(ROUTER, "r1", NOW - timedelta(minutes=1))
    assert code_of(lambda: verify_fwd(forwarded, keys)) == "revoked_key"


# Roles: a key verifies only the kind of signature its roles allow.


def test_derived_section_signed_by_an_issuer_key(
    envelope: Envelope, issuer_key: SigningKey, keys: KeyRegistry
) -> None:
    # The issuer's key is in the registry, but it is no router key: even naming itself as the
    # router the forward is refused, both by role and because it is not the configured router.
    forged = forward(envelope, issuer_key, ["missing_type"])
    assert code_of(lambda: verify_forwarded(forged, keys, router=ISSUER)) == "wrong_role"
    assert code_of(lambda: verify_fwd(forged, keys)) == "wrong_router"


def test_derived_section_of_another_router(
    envelope: Envelope, keys: KeyRegistry, tmp_path: Path
) -> None:
    # A router-role key of a router the recipient does not use is refused.
    other = load_signing_key(
        generate_key("router.other", tmp_path, key_id="r9", valid_from=KEYS_FROM,
                     roles=("router",))[0]
    )  # fmt: skip
    keys.add(other.public_key_info())
    forged = forward(envelope, other, ["missing_type"])
    assert verify_forwarded(forged, keys, router="router.other").router == "router.other"
    assert code_of(lambda: verify_fwd(forged, keys)) == "wrong_router"


def test_router_key_cannot_issue(router_key: SigningKey, keys: KeyRegistry) -> None:
    # The router's key signs a perfectly formed event in its own name: not an issuer key.
    forged = issue(sample_event("child.missing.started"), issuer=ROUTER, key=router_key, now=NOW)
    assert code_of(lambda: verify_envelope(forged, keys)) == "wrong_role"


def test_key_file_without_roles_is_an_issuer_key(
    envelope: Envelope, tmp_path: Path, keys: KeyRegistry
) -> None:
    import json

    from broker.envelope import load_public_key

    private, public = generate_key(
        ROUTER, tmp_path, key_id="legacy", valid_from=KEYS_FROM, roles=("router",)
    )
    data = json.loads(public.read_text())
    del data["roles"]  # a file written before roles existed
    public.write_text(json.dumps(data))
    info = load_public_key(public)
    assert info.roles == ("issuer",)
    keys.add(info)
    forged = forward(envelope, load_signing_key(private), ["missing_type"])
    assert code_of(lambda: verify_fwd(forged, keys)) == "wrong_role"
