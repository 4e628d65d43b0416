"""The golden vectors in tests/vectors/envelope-v1.json and envelope-v2.json: exact bytes,
digests and signatures. v1 is frozen: events signed under it must stay verifiable.

Digests, header bytes and signing input are recomputed here straight from docs/wire-format.md
(hashlib, struct, raw Ed25519), independently of broker.envelope.canonical, and the
implementation must reproduce every byte.
"""

from __future__ import annotations

import hashlib
import json
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from broker.envelope import (
    KeyRegistry,
    SigningKey,
    canonical,
    disclose,
    issue,
    verify_envelope,
    verify_forwarded,
)
from broker.envelope.keys import ROUTER_ROLES
from broker.schemas import SchemaRegistry

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "envelope-v1.json"
VECTORS_V2 = VECTORS.with_name("envelope-v2.json")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def micros(text: str) -> bytes:
    delta = datetime.fromisoformat(text) - EPOCH
    value = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return lp(struct.pack(">q", value))


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text())
    return data


def key(spec: dict[str, str], roles: tuple[str, ...] = ("issuer",)) -> SigningKey:
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(spec["seed"]))
    return SigningKey(spec["agency"], spec["key_id"], private, roles=roles)


def registry_of(vectors: dict[str, Any]) -> KeyRegistry:
    """The vectors' issuer key (role issuer) and router key (roles router, checkpoint)."""
    spec = vectors["input"]
    return KeyRegistry(
        [key(spec["issuer"]).public_key_info(), key(spec["router"], ROUTER_ROLES).public_key_info()]
    )


def test_digests_follow_the_spec(vectors: dict[str, Any]) -> None:
    expected = vectors["expected"]
    for item in expected["disclosures"]:
        salt = bytes.fromhex(item["salt"])
        assert salt == hashlib.sha256(b"salt:" + item["name"].encode()).digest()[:16]
        body = lp(salt) + lp(item["name"].encode()) + lp(bytes.fromhex(item["value"]))
        assert hashlib.sha256(body).hexdigest() == item["digest"]
    assert expected["sorted_digests"] == sorted(d["digest"] for d in expected["disclosures"])


def test_values_are_avro_encodings_of_the_inputs(vectors: dict[str, Any]) -> None:
    registry = SchemaRegistry.default()
    event = vectors["input"]["event"]
    values = registry.validate_fields(event["event_type"], event["fields"])
    for item in vectors["expected"]["disclosures"]:
        encoded = registry.encode_value(event["event_type"], item["name"], values[item["name"]])
        assert encoded.hex() == item["value"], item["name"]
    # e.g. risk_level "high": union branch 1 (zig-zag 0x02), enum index 3 (0x06).
    risk = next(d for d in vectors["expected"]["disclosures"] if d["name"] == "risk_level")
    assert risk["value"] == "0206"


def test_header_and_issuer_signature_follow_the_spec(vectors: dict[str, Any]) -> None:
    spec, expected = vectors["input"], vectors["expected"]
    event = spec["event"]
    header = b"".join(
        (
            lp(event["event_id"].encode()),
            lp(event["event_type"].encode()),
            lp(bytes.fromhex(expected["schema_fingerprint"])),
            lp(spec["issuer"]["agency"].encode()),
            lp(spec["issuer"]["key_id"].encode()),
            micros(spec["issued_at"]),
            micros(event["occurred_at"]),
            lp(event["subject"].encode()),
        )
    )
    assert header.hex() == expected["header_bytes"]
    digests = [bytes.fromhex(d) for d in expected["sorted_digests"]]
    signing_input = (
        lp(b"uk.safeguarding.envelope/v1 issuer")
        + lp(header)
        + struct.pack(">I", len(digests))
        + b"".join(lp(d) for d in digests)
    )
    assert signing_input.hex() == expected["issuer_signing_input"]
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(expected["issuer_public_key"]))
    public.verify(bytes.fromhex(expected["issuer_signature"]), signing_input)
    assert (
        SchemaRegistry.default().fingerprint(event["event_type"]).hex()
        == (expected["schema_fingerprint"])
    )


def test_router_signature_covers_the_router_input(vectors: dict[str, Any]) -> None:
    expected = vectors["expected"]
    router_input = bytes.fromhex(expected["router_signing_input"])
    assert router_input.startswith(lp(b"uk.safeguarding.envelope/v1 router"))
    assert lp(bytes.fromhex(expected["issuer_signature"])) in router_input
    assert router_input.endswith(micros(vectors["input"]["forward"]["forwarded_at"]))
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(expected["router_public_key"]))
    public.verify(bytes.fromhex(expected["router_signature"]), router_input)


def test_implementation_reproduces_every_byte(vectors: dict[str, Any]) -> None:
    spec, expected = vectors["input"], vectors["expected"]
    names = SchemaRegistry.default().fields(spec["event"]["event_type"])
    salts = {n: hashlib.sha256(b"salt:" + n.encode()).digest()[:16] for n in names}
    issuer = key(spec["issuer"])
    envelope = issue(
        spec["event"],
        issuer=issuer.agency_id,
        key=issuer,
        now=datetime.fromisoformat(spec["issued_at"]),
        salts=salts,
        version=1,
    )
    assert envelope.header.to_bytes().hex() == expected["header_bytes"]
    assert (
        canonical.issuer_signing_input(envelope.header.to_bytes(), envelope.digests).hex()
        == (expected["issuer_signing_input"])
    )
    assert envelope.to_bytes().hex() == expected["envelope"]
    fwd = spec["forward"]
    forwarded = disclose(
        envelope,
        [*fwd["fields"], "subject"],  # a v1 header shows the subject: forwarded only with it
        derived=fwd["derived"],
        agreements=fwd["agreements"],
        recipient=fwd["recipient"],
        router_key=key(spec["router"]),
        now=datetime.fromisoformat(fwd["forwarded_at"]),
    )
    assert forwarded.derived.signature.hex() == expected["router_signature"]
    assert forwarded.to_bytes().hex() == expected["forwarded"]


def test_vector_bytes_verify(vectors: dict[str, Any]) -> None:
    keys = registry_of(vectors)
    spec, expected = vectors["input"], vectors["expected"]
    verified = verify_envelope(bytes.fromhex(expected["envelope"]), keys).to_json()
    assert {k: v for k, v in verified["fields"].items() if v is not None} == spec["event"]["fields"]
    router = spec["router"]["agency"]
    received = verify_forwarded(bytes.fromhex(expected["forwarded"]), keys, router=router).to_json()
    assert set(received["fields"]) == set(spec["forward"]["fields"])
    assert received["derived"] == spec["forward"]["derived"]
    assert received["agreements"] == spec["forward"]["agreements"]
    assert received["subject"] == spec["event"]["subject"]  # v1: every recipient sees it


# Wire format v2: the subject as a salted disclosure committed to in the header.


@pytest.fixture(scope="module")
def vectors_v2() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS_V2.read_text())
    return data


def test_v2_subject_digest_follows_the_spec(vectors_v2: dict[str, Any]) -> None:
    spec, expected = vectors_v2["input"], vectors_v2["expected"]
    salt = bytes.fromhex(expected["subject_salt"])
    assert salt == hashlib.sha256(b"salt:$subject").digest()[:16]
    body = lp(salt) + lp(b"$subject") + lp(spec["event"]["subject"].encode())
    assert hashlib.sha256(body).hexdigest() == expected["subject_digest"]


def test_v2_header_and_issuer_signature_follow_the_spec(vectors_v2: dict[str, Any]) -> None:
    spec, expected = vectors_v2["input"], vectors_v2["expected"]
    event = spec["event"]
    header = b"".join(
        (
            lp(event["event_id"].encode()),
            lp(event["event_type"].encode()),
            lp(bytes.fromhex(expected["schema_fingerprint"])),
            lp(spec["issuer"]["agency"].encode()),
            lp(spec["issuer"]["key_id"].encode()),
            micros(spec["issued_at"]),
            micros(event["occurred_at"]),
            lp(bytes.fromhex(expected["subject_digest"])),
        )
    )
    assert header.hex() == expected["header_bytes"]
    assert event["subject"].encode().hex() not in expected["header_bytes"]
    digests = [bytes.fromhex(d) for d in expected["sorted_digests"]]
    signing_input = (
        lp(b"uk.safeguarding.envelope/v2 issuer")
        + lp(header)
        + struct.pack(">I", len(digests))
        + b"".join(lp(d) for d in digests)
    )
    assert signing_input.hex() == expected["issuer_signing_input"]
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(expected["issuer_public_key"]))
    public.verify(bytes.fromhex(expected["issuer_signature"]), signing_input)


@pytest.mark.parametrize(
    ("suffix", "forward", "shows_subject"),
    [("", "forward", True), ("_withheld", "forward_withheld", False)],
)
def test_v2_router_input_follows_the_spec(
    vectors_v2: dict[str, Any], suffix: str, forward: str, shows_subject: bool
) -> None:
    spec, expected = vectors_v2["input"], vectors_v2["expected"]
    fwd = spec[forward]
    by_name = {d["name"]: bytes.fromhex(d["digest"]) for d in expected["disclosures"]}
    disclosed = sorted(by_name[n] for n in fwd["fields"] if n != "subject")
    subject = bytes.fromhex(expected["subject_digest"]) if shows_subject else b""
    derived = b"".join(
        lp(name.encode()) + lp(canonical.encode_derived_value(fwd["derived"][name]))
        for name in sorted(fwd["derived"])
    )
    router_input = b"".join(
        (
            lp(b"uk.safeguarding.envelope/v2 router"),
            lp(spec["event"]["event_id"].encode()),
            lp(spec["issuer"]["agency"].encode()),
            lp(bytes.fromhex(expected["issuer_signature"])),
            struct.pack(">I", len(disclosed)),
            b"".join(lp(d) for d in disclosed),
            lp(subject),
            struct.pack(">I", len(fwd["derived"])),
            derived,
            struct.pack(">I", len(fwd["agreements"])),
            b"".join(lp(a.encode()) for a in fwd["agreements"]),
            lp(fwd["recipient"].encode()),
            lp(spec["router"]["agency"].encode()),
            lp(spec["router"]["key_id"].encode()),
            micros(fwd["forwarded_at"]),
        )
    )
    assert router_input.hex() == expected[f"router_signing_input{suffix}"]
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(expected["router_public_key"]))
    public.verify(bytes.fromhex(expected[f"router_signature{suffix}"]), router_input)


def test_v2_implementation_reproduces_every_byte(vectors_v2: dict[str, Any]) -> None:
    spec, expected = vectors_v2["input"], vectors_v2["expected"]
    names = [*SchemaRegistry.default().fields(spec["event"]["event_type"]), "$subject"]
    salts = {n: hashlib.sha256(b"salt:" + n.encode()).digest()[:16] for n in names}
    issuer = key(spec["issuer"])
    envelope = issue(
        spec["event"],
        issuer=issuer.agency_id,
        key=issuer,
        now=datetime.fromisoformat(spec["issued_at"]),
        salts=salts,
    )
    assert envelope.header.to_bytes().hex() == expected["header_bytes"]
    assert envelope.signature.hex() == expected["issuer_signature"]
    assert envelope.to_bytes().hex() == expected["envelope"]
    for suffix, forward in (("", "forward"), ("_withheld", "forward_withheld")):
        fwd = spec[forward]
        forwarded = disclose(
            envelope,
            fwd["fields"],
            derived=fwd["derived"],
            agreements=fwd["agreements"],
            recipient=fwd["recipient"],
            router_key=key(spec["router"]),
            now=datetime.fromisoformat(fwd["forwarded_at"]),
        )
        assert forwarded.derived.signature.hex() == expected[f"router_signature{suffix}"]
        assert forwarded.to_bytes().hex() == expected[f"forwarded{suffix}"]


def test_v2_vector_bytes_verify_and_withhold_the_subject(vectors_v2: dict[str, Any]) -> None:
    keys = registry_of(vectors_v2)
    spec, expected = vectors_v2["input"], vectors_v2["expected"]
    subject = spec["event"]["subject"]
    assert verify_envelope(bytes.fromhex(expected["envelope"]), keys).subject == subject
    router = spec["router"]["agency"]
    granted = verify_forwarded(bytes.fromhex(expected["forwarded"]), keys, router=router)
    granted = granted.to_json()
    assert granted["subject"] == subject
    assert set(granted["fields"]) == set(spec["forward"]["fields"]) - {"subject"}
    raw = bytes.fromhex(expected["forwarded_withheld"])
    withheld = verify_forwarded(raw, keys, router=router, recipient="stats.national").to_json()
    assert withheld["subject"] is None
    assert set(withheld["fields"]) == set(spec["forward_withheld"]["fields"])
    assert subject.encode() not in raw


def test_router_signs_the_derived_bytes_it_sends(vectors: dict[str, Any]) -> None:
    # Each derived value's bytes in the signed router input are the very bytes in the message
    # (name, then the DerivedValue union encoding), and the message is canonical, so what a
    # recipient re-encodes from what it decoded is what the router signed.
    expected = vectors["expected"]
    message = bytes.fromhex(expected["forwarded"])
    signed = bytes.fromhex(expected["router_signing_input"])
    for name, value in vectors["input"]["forward"]["derived"].items():
        encoded = canonical.encode_derived_value(value)
        name_bytes = name.encode()
        avro_name = bytes([2 * len(name_bytes)]) + name_bytes  # Avro string, length < 64
        assert avro_name + encoded in message, name
        assert lp(name_bytes) + lp(encoded) in signed, name
    assert SchemaRegistry.default().encode(
        canonical.FORWARDED_SCHEMA, SchemaRegistry.default().decode(message)[1]
    ) == message
