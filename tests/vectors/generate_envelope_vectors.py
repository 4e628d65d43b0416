"""Write `envelope-v1.json`: golden test vectors for the wire format (docs/wire-format.md).

Run `python tests/vectors/generate_envelope_vectors.py` only when the wire format deliberately
changes; `tests/unit/envelope/test_vectors.py` checks the implementation against the file.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.envelope import SigningKey, canonical, disclose, issue
from broker.schemas import SchemaRegistry

OUT = Path(__file__).with_name("envelope-v1.json")
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


def build(spec: dict[str, Any]) -> dict[str, Any]:
    """Compute every expected output from the inputs of `spec`."""
    issuer, router = signing_key(spec["issuer"]), signing_key(spec["router"])
    event = spec["event"]
    names = SchemaRegistry.default().fields(event["event_type"])
    envelope = issue(
        event,
        issuer=issuer.agency_id,
        key=issuer,
        now=datetime.fromisoformat(spec["issued_at"]),
        salts={name: salt_for(name) for name in names},
    )
    fwd = spec["forward"]
    forwarded = disclose(
        envelope,
        fwd["fields"],
        derived=fwd["derived"],
        agreements=fwd["agreements"],
        recipient=fwd["recipient"],
        router_key=router,
        now=datetime.fromisoformat(fwd["forwarded_at"]).astimezone(UTC),
    )
    header = envelope.header.to_bytes()
    return {
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
        "issuer_signing_input": canonical.issuer_signing_input(header, envelope.digests).hex(),
        "issuer_signature": envelope.signature.hex(),
        "envelope": envelope.to_bytes().hex(),
        "router_signing_input": canonical.router_signing_input(
            event_id=envelope.header.event_id,
            issuer=envelope.header.issuer,
            issuer_signature=envelope.signature,
            disclosed_digests=[d.digest() for d in forwarded.disclosures],
            derived=forwarded.derived.values,
            agreements=forwarded.derived.agreements,
            recipient=forwarded.derived.recipient,
            router=forwarded.derived.router,
            router_key_id=forwarded.derived.router_key_id,
            forwarded_at=forwarded.derived.forwarded_at,
        ).hex(),
        "router_signature": forwarded.derived.signature.hex(),
        "forwarded": forwarded.to_bytes().hex(),
    }


def main() -> None:
    document = {
        "description": "Golden vectors for the signed envelope wire format v1; "
        "see docs/wire-format.md. Salts: first 16 bytes of SHA-256('salt:' + field name).",
        "input": INPUT,
        "expected": build(INPUT),
    }
    OUT.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
