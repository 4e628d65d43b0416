"""Write `envelope-v1.json` and `envelope-v2.json`: golden test vectors for the wire format
(docs/wire-format.md).

Run `python tests/vectors/generate_envelope_vectors.py` only when the wire format deliberately
changes; `tests/unit/envelope/test_vectors.py` checks the implementation against the files. The
v1 file must come out byte-identical: v1 is frozen (events signed under it stay verifiable).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.envelope import ForwardedEnvelope, SigningKey, canonical, disclose, issue
from broker.schemas import SchemaRegistry

OUT = Path(__file__).with_name("envelope-v1.json")
OUT_V2 = Path(__file__).with_name("envelope-v2.json")
ISSUER_SEED = hashlib.sha256(b"test vector issuer key").digest()
ROUTER_SEED = hashlib.sha256(b"test vector router key").digest()
INPUT: dict[str, Any] = {
    "issuer": {"agency": "council.E09000033", "key_id": "vector-k1", "seed": ISSUER_SEED.hex()},
    "router": {"agency": "router.main", "key_id": "vector-r1", "seed": ROUTER_SEED.hex()},
    "issued_at": "2026-11-24T18:06:00Z",
    "event": {
        "event_type": "child.missing.started",
        "event_id": "7b1f3f4e-2c2a-4a57-9d7e-0f6c1c3b9a10",
        "subject": "C-000123",
        "occurred_at": "2026-11-24T18:05:00Z",
        "fields": {
            "la_child_id": "C-000123",
            "first_name": "Alex",
            "dob": "2011-09-09",
            "age_band": "13-15",
            "sex": "f",
            "trafficking_concern": True,
            "exploitation_concerns": ["trafficking", "cce"],
            "missing_type": "M",
            "missing_since": "2026-11-24T17:30:00Z",
            "risk_level": "high",
            "clothing": "Grey hooded top",
        },
    },
    "forward": {
        "fields": ["missing_type", "risk_level", "age_band", "trafficking_concern"],
        "derived": {"child_pseudonym": "p-5e2d", "placement_out_of_area": True},
        "agreements": ["dsa.police-missing@3"],
        "recipient": "police.met",
        "forwarded_at": "2026-11-24T18:06:01Z",
    },
}
# v2: the same event; the police are granted the subject (`subject` in the forwarded names), the
# statistics collection is not (its forward carries only the subject's digest, in the header).
INPUT_V2: dict[str, Any] = {
    **{k: v for k, v in INPUT.items() if k != "forward"},
    "forward": {
        **INPUT["forward"],
        "fields": [*INPUT["forward"]["fields"], "subject"],
    },
    "forward_withheld": {
        "fields": ["age_band", "missing_type"],
        "derived": {"child_pseudonym": "p-9c41"},
        "agreements": ["dsa.national-collection.trafficked-children@1"],
        "recipient": "stats.national",
        "forwarded_at": "2026-11-24T18:06:02Z",
    },
}


def salt_for(name: str) -> bytes:
    """The fixed salt of a field in these vectors (never do this outside test vectors)."""
    return hashlib.sha256(b"salt:" + name.encode()).digest()[:16]


def signing_key(spec: dict[str, str]) -> SigningKey:
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(spec["seed"]))
    return SigningKey(spec["agency"], spec["key_id"], private)


def public_hex(key: SigningKey) -> str:
    raw = key.public_key_info().public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return raw.hex()


def build(spec: dict[str, Any], version: int = 1) -> dict[str, Any]:
    """Compute every expected output from the inputs of `spec`."""
    issuer, router = signing_key(spec["issuer"]), signing_key(spec["router"])
    event = spec["event"]
    names = [*SchemaRegistry.default().fields(event["event_type"]), canonical.SUBJECT_NAME]
    envelope = issue(
        event,
        issuer=issuer.agency_id,
        key=issuer,
        now=datetime.fromisoformat(spec["issued_at"]),
        salts={name: salt_for(name) for name in names},
        version=version,
    )

    def forward(fwd: dict[str, Any]) -> ForwardedEnvelope:
        # A v1 envelope shows its subject to every recipient: it is forwarded only with it.
        fields = fwd["fields"] if version == 2 else [*fwd["fields"], "subject"]
        return disclose(
            envelope,
            fields,
            derived=fwd["derived"],
            agreements=fwd["agreements"],
            recipient=fwd["recipient"],
            router_key=router,
            now=datetime.fromisoformat(fwd["forwarded_at"]).astimezone(UTC),
        )

    forwarded = forward(spec["forward"])
    header = envelope.header.to_bytes()
    expected = {
        "issuer_public_key": public_hex(issuer),
        "router_public_key": public_hex(router),
        "schema_fingerprint": envelope.header.schema_fingerprint.hex(),
        "disclosures": [
            {
                "name": d.name,
                "salt": d.salt.hex(),
                "value": d.value.hex(),
                "digest": d.digest().hex(),
            }
            for d in envelope.disclosures
        ],
        "sorted_digests": [d.hex() for d in envelope.digests],
        "header_bytes": header.hex(),
        "issuer_signing_input": canonical.issuer_signing_input(
            header, envelope.digests, version=version
        ).hex(),
        "issuer_signature": envelope.signature.hex(),
        "envelope": envelope.to_bytes().hex(),
        "router_signing_input": router_input(forwarded).hex(),
        "router_signature": forwarded.derived.signature.hex(),
        "forwarded": forwarded.to_bytes().hex(),
    }
    if version == 2:
        subject = envelope.subject_disclosure
        assert subject is not None
        expected["subject_salt"] = subject.salt.hex()
        expected["subject_digest"] = subject.digest().hex()
        withheld = forward(spec["forward_withheld"])
        expected["router_signing_input_withheld"] = router_input(withheld).hex()
        expected["router_signature_withheld"] = withheld.derived.signature.hex()
        expected["forwarded_withheld"] = withheld.to_bytes().hex()
    return expected


def router_input(forwarded: ForwardedEnvelope) -> bytes:
    """The router's signing input of a forward, rebuilt from its parts."""
    subject = forwarded.subject_disclosure
    return canonical.router_signing_input(
        event_id=forwarded.header.event_id,
        issuer=forwarded.header.issuer,
        issuer_signature=forwarded.signature,
        disclosed_digests=[d.digest() for d in forwarded.disclosures],
        derived=forwarded.derived.values,
        agreements=forwarded.derived.agreements,
        recipient=forwarded.derived.recipient,
        router=forwarded.derived.router,
        router_key_id=forwarded.derived.router_key_id,
        forwarded_at=forwarded.derived.forwarded_at,
        version=forwarded.version,
        subject_digest=None if subject is None else subject.digest(),
    )


def main() -> None:
    document = {
        "description": "Golden vectors for the signed envelope wire format v1; "
        "see docs/wire-format.md. Salts: first 16 bytes of SHA-256('salt:' + field name).",
        "input": INPUT,
        "expected": build(INPUT),
    }
    OUT.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    document_v2 = {
        "description": "Golden vectors for the signed envelope wire format v2 (the subject as a "
        "salted disclosure); see docs/wire-format.md. Salts: first 16 bytes of SHA-256('salt:' + "
        "field name), the subject's with the name '$subject'. `forward` is granted the subject, "
        "`forward_withheld` is not.",
        "input": INPUT_V2,
        "expected": build(INPUT_V2, version=2),
    }
    OUT_V2.write_text(json.dumps(document_v2, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
