"""Write `envelope-v1-negative.json`: messages a verifier must refuse, each with its reason code.

Built from the golden vectors (`envelope-v1.json`: same keys, event and forward), each case breaks
one rule of docs/wire-format.md; where the break would otherwise also break a signature, the
message is re-signed with the key its signer would have, so that only the named check can refuse
it. A few valid cases (reason null) come first: they prove the keys and options are set up right.
Run `python tests/vectors/generate_envelope_negative_vectors.py` only when the cases change;
`tests/unit/envelope/test_negative_vectors.py` runs every case.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastavro import parse_schema, schemaless_writer

from broker.envelope import (
    Disclosure,
    Envelope,
    ForwardedEnvelope,
    SigningKey,
    canonical,
    disclose,
    issue,
)
from broker.envelope.keys import ROLE_ISSUER, ROLE_ROUTER, ROUTER_ROLES
from broker.ids import SUBJECT_FIELD
from broker.personal import PersonalDict
from broker.schemas import SchemaRegistry

HERE = Path(__file__).parent
OUT = HERE / "envelope-v1-negative.json"
GOLDEN = json.loads((HERE / "envelope-v1.json").read_text())
INPUT = GOLDEN["input"]
ROUTER_ID = INPUT["router"]["agency"]
RECEIVED = "2026-11-24T18:06:00.500000Z"  # the ingress record's timestamp (issued 18:06:00)
FEED_RECEIVED = "2026-11-24T18:06:01.200000Z"  # the feed record's (forwarded 18:06:01)


def _seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@dataclasses.dataclass
class Key:
    agency: str
    key_id: str
    seed: bytes
    roles: tuple[str, ...]
    revoked_at: str | None = None
    roles_in_file: bool = True  # False: a key file written before roles existed

    @property
    def signing(self) -> SigningKey:
        private = Ed25519PrivateKey.from_private_bytes(self.seed)
        return SigningKey(self.agency, self.key_id, private, roles=self.roles)

    def to_json(self) -> dict[str, Any]:
        """The key's `.pub.json` form."""
        info = self.signing.public_key_info()
        if self.revoked_at is not None:
            info = dataclasses.replace(info, revoked_at=_time(self.revoked_at))
        record = info.to_json()
        if not self.roles_in_file:
            del record["roles"]
        return record


ISSUER = Key(INPUT["issuer"]["agency"], INPUT["issuer"]["key_id"],
             bytes.fromhex(INPUT["issuer"]["seed"]), (ROLE_ISSUER,))  # fmt: skip
ROUTER = Key(ROUTER_ID, INPUT["router"]["key_id"], bytes.fromhex(INPUT["router"]["seed"]),
             ROUTER_ROLES)  # fmt: skip
REVOKED = Key(ISSUER.agency, "vector-k2-revoked", _seed("negative vector revoked issuer key"),
              (ROLE_ISSUER,), revoked_at="2026-11-24T18:05:59Z")  # fmt: skip
POLICE = Key("police.met", "vector-p1", _seed("negative vector police key"), (ROLE_ISSUER,))
OTHER_ROUTER = Key("router.other", "vector-o1", _seed("negative vector other router key"),
                   (ROLE_ROUTER,))  # fmt: skip
LEGACY_ROUTER = Key(ROUTER_ID, "vector-r0-legacy", _seed("negative vector legacy router key"),
                    (ROLE_ISSUER,), roles_in_file=False)  # fmt: skip
KEYS = [ISSUER, ROUTER, REVOKED, POLICE, OTHER_ROUTER, LEGACY_ROUTER]


def _salts() -> dict[str, bytes]:
    names = SchemaRegistry.default().fields(INPUT["event"]["event_type"])
    return {n: hashlib.sha256(b"salt:" + n.encode()).digest()[:16] for n in names}


def golden_envelope(key: Key = ISSUER, issued_at: str = INPUT["issued_at"],
                    issuer: str | None = None) -> Envelope:  # fmt: skip
    return issue(INPUT["event"], issuer=issuer or key.agency, key=key.signing,
                 now=_time(issued_at), salts=_salts(), version=1)  # fmt: skip


def golden_forward(envelope: Envelope | None = None, key: Key = ROUTER,
                   derived: dict[str, Any] | None = None) -> ForwardedEnvelope:  # fmt: skip
    fwd = INPUT["forward"]
    return disclose(
        envelope or golden_envelope(),
        [*fwd["fields"], SUBJECT_FIELD],  # v1: forwarded only with its subject
        derived=fwd["derived"] if derived is None else derived,
        agreements=fwd["agreements"],
        recipient=fwd["recipient"],
        router_key=key.signing,
        now=_time(fwd["forwarded_at"]),
    )


def resign(envelope: Envelope, key: Key = ISSUER) -> Envelope:
    """The envelope signed again as it stands (the issuer vouching for whatever it holds)."""
    digests = tuple(sorted(canonical.disclosure_digests(envelope.disclosures)))
    changed = dataclasses.replace(envelope, digests=digests)
    signature = key.signing.sign(
        canonical.issuer_signing_input(changed.header.to_bytes(), changed.digests)
    )
    return dataclasses.replace(changed, signature=signature)


def with_value(envelope: Envelope, name: str, change: Callable[[bytes], bytes]) -> Envelope:
    """The envelope with one disclosure value's bytes changed, re-signed by the issuer."""
    disclosures = tuple(
        Disclosure(d.salt, d.name, change(d.value)) if d.name == name else d
        for d in envelope.disclosures
    )
    return resign(dataclasses.replace(envelope, disclosures=disclosures))


def resign_derived(forwarded: ForwardedEnvelope, key: Key = ROUTER, **changes: Any) -> bytes:
    """The forward with its derived section changed and signed by `key` as its router."""
    derived = dataclasses.replace(
        forwarded.derived, router=key.agency, router_key_id=key.key_id, **changes
    )
    signature = key.signing.sign(forwarded.router_signing_input(derived))
    signed = dataclasses.replace(derived, signature=signature)
    return dataclasses.replace(forwarded, derived=signed).to_bytes()


def header_length(envelope: Envelope) -> int:
    """Bytes of the Avro-encoded header: the digests array starts after them (and the
    10-byte single-object prefix)."""
    schema = SchemaRegistry.default().schema("uk.safeguarding.envelope.Envelope")
    header = dict(schema["fields"][0]["type"])
    header["namespace"] = "uk.safeguarding.envelope"
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(header), envelope.header.to_record())
    return len(out.getvalue())


def avro_long(value: int) -> bytes:
    """Avro's encoding of a long (zig-zag varint), by fastavro."""
    out = io.BytesIO()
    schemaless_writer(out, parse_schema({"type": "record", "name": "L",
                      "fields": [{"name": "v", "type": "long"}]}), {"v": value})  # fmt: skip
    return out.getvalue()


def first_difference(a: bytes, b: bytes) -> int:
    return next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)


def cases() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def case(name: str, kind: str, data: bytes, reason: str | None, description: str,
             **options: Any) -> None:  # fmt: skip
        out.append({"name": name, "kind": kind, "hex": data.hex(), "reason": reason,
                    "description": description, **options})  # fmt: skip

    envelope = golden_envelope()
    good = envelope.to_bytes()
    forwarded = golden_forward()
    good_forward = forwarded.to_bytes()
    at_ingress = {"received_at": RECEIVED}
    at_feed = {"router": ROUTER_ID, "received_at": FEED_RECEIVED}

    # Valid controls.
    case("valid-envelope", "envelope", good, None, "the golden issued envelope", **at_ingress)
    case("valid-envelope-offline", "envelope", good, None,
         "no receipt time: the key is judged at issued_at")  # fmt: skip
    case("valid-forwarded", "forwarded", good_forward, None, "the golden forward", **at_feed)

    # 1. Decoding the message.
    case("truncated", "envelope", good[:-1], "bad_encoding", "last byte missing", **at_ingress)
    case("trailing-byte", "envelope", good + b"\x00", "bad_encoding",
         "a byte after the message body", **at_ingress)  # fmt: skip
    case("no-marker", "envelope", b"\xc3\x02" + good[2:], "bad_encoding",
         "not C3 01", **at_ingress)  # fmt: skip
    case("unknown-message-schema", "envelope", good[:2] + bytes(8) + good[10:], "unknown_schema",
         "message fingerprint of no schema", **at_ingress)  # fmt: skip
    case("issued-as-forwarded", "forwarded", good, "bad_encoding",
         "an Envelope where a ForwardedEnvelope is expected", **at_feed)  # fmt: skip
    at = 10 + header_length(envelope)
    count = good[at]  # zig-zag of the number of digests, one byte
    n = len(envelope.digests)
    assert count == 2 * n
    case("non-canonical-varint", "envelope", good[:at] + bytes([count | 0x80, 0]) + good[at + 1:],
         "non_canonical", "digest count as a two-byte varint", **at_ingress)  # fmt: skip
    first, rest = good[at + 1 : at + 33], good[at + 33 :]
    two_blocks = good[:at] + avro_long(1) + first + avro_long(n - 1) + rest
    case("two-array-blocks", "envelope", two_blocks, "non_canonical",
         "the digests array in two blocks", **at_ingress)  # fmt: skip
    case("negative-block-count", "envelope",
         good[:at] + avro_long(-n) + avro_long(32 * n) + good[at + 1 :], "non_canonical",
         "the digests block with a negative count and its byte size", **at_ingress)  # fmt: skip

    # 2-3. Schemas and keys.
    other_type = dataclasses.replace(envelope.header, event_type="child.missing.ended")
    case("type-does-not-match-schema", "envelope",
         resign(dataclasses.replace(envelope, header=other_type)).to_bytes(), "schema_violation",
         "header event_type differs from the payload schema's", **at_ingress)  # fmt: skip
    unknown_fp = dataclasses.replace(envelope.header, schema_fingerprint=bytes(8))
    case("unknown-payload-schema", "envelope",
         resign(dataclasses.replace(envelope, header=unknown_fp)).to_bytes(), "unknown_schema",
         "payload fingerprint of no schema", **at_ingress)  # fmt: skip
    unknown_id = dataclasses.replace(envelope.header, key_id="vector-k9")
    case("unknown-key", "envelope",
         resign(dataclasses.replace(envelope, header=unknown_id)).to_bytes(), "unknown_key",
         "no key vector-k9 of the issuer", **at_ingress)  # fmt: skip
    case("router-key-issues", "envelope",
         golden_envelope(ROUTER, issuer=ROUTER_ID).to_bytes(), "wrong_role",
         "signed by the router's key in its own name: not an issuer key", **at_ingress)  # fmt: skip
    case("revoked-key-backdated", "envelope",
         golden_envelope(REVOKED, issued_at="2026-11-24T18:05:30Z").to_bytes(), "revoked_key",
         "key revoked 18:05:59, event dated 18:05:30, received 18:06:00.5",
         **at_ingress)  # fmt: skip
    case("clock-skew-backdated", "envelope",
         golden_envelope(issued_at="2026-11-24T17:00:00Z").to_bytes(), "clock_skew",
         "issued_at an hour before receipt (at most 300 s allowed)", **at_ingress)  # fmt: skip
    case("clock-skew-postdated", "envelope",
         golden_envelope(issued_at="2026-11-24T18:11:01Z").to_bytes(), "clock_skew",
         "issued_at 301 s after receipt", **at_ingress)  # fmt: skip
    case("key-not-valid-yet", "envelope", good, "key_not_valid",
         "received before the key's valid_from", received_at="1969-12-31T23:59:00Z",
         max_skew_s=10**10)  # fmt: skip

    # 4-5. Digests and signature.
    case("duplicate-digest", "envelope",
         resign(dataclasses.replace(envelope, disclosures=envelope.disclosures + envelope.disclosures[:1])).to_bytes(),  # noqa: E501
         "duplicate_digest", "one disclosure twice", **at_ingress)  # fmt: skip
    bad_signature = bytearray(good)
    bad_signature[-1] ^= 1
    case("bad-signature", "envelope", bytes(bad_signature), "bad_signature",
         "last bit of the issuer signature flipped", **at_ingress)  # fmt: skip

    # 6. Disclosures.
    altered = dataclasses.replace(envelope, disclosures=(
        Disclosure(envelope.disclosures[0].salt, envelope.disclosures[0].name, b"\x00"),
        *envelope.disclosures[1:]))  # fmt: skip
    case("altered-disclosure", "envelope", altered.to_bytes(), "digest_mismatch",
         "a disclosure value changed after signing", **at_ingress)  # fmt: skip
    case("boolean-two", "envelope",
         with_value(envelope, "trafficking_concern", lambda v: v[:-1] + b"\x02").to_bytes(),
         "non_canonical", "trafficking_concern's boolean byte 02 (true is 01)",
         **at_ingress)  # fmt: skip
    case("long-union-index", "envelope",
         with_value(envelope, "risk_level", lambda v: bytes([v[0] | 0x80, 0]) + v[1:]).to_bytes(),
         "non_canonical", "risk_level's union index as a two-byte varint",
         **at_ingress)  # fmt: skip
    case("value-trailing-byte", "envelope",
         with_value(envelope, "risk_level", lambda v: v + b"\x00").to_bytes(),
         "schema_violation", "a byte after risk_level's value", **at_ingress)  # fmt: skip
    case("invalid-utf8", "envelope",
         with_value(envelope, "clothing", lambda v: v[:2] + b"\xff" + v[3:]).to_bytes(),
         "schema_violation", "clothing's text is not UTF-8", **at_ingress)  # fmt: skip
    case("union-index-out-of-range", "envelope",
         with_value(envelope, "risk_level", lambda v: b"\x08" + v[1:]).to_bytes(),
         "schema_violation", "risk_level's union branch 4 of 2", **at_ingress)  # fmt: skip

    # 7. The derived section.
    case("wrong-recipient", "forwarded", good_forward, "wrong_recipient",
         "expected for nrm.sca", recipient="nrm.sca", **at_feed)  # fmt: skip
    case("other-router", "forwarded", resign_derived(forwarded, OTHER_ROUTER), "wrong_router",
         "derived section by router.other, a router key but not the configured router",
         **at_feed)  # fmt: skip
    case("police-as-router", "forwarded",
         resign_derived(forwarded, POLICE, agreements=("dsa.made-up@1",), recipient="nrm.sca"),
         "wrong_router", "the police key signs a derived section naming a made-up agreement",
         **at_feed)  # fmt: skip
    case("legacy-key-as-router", "forwarded", resign_derived(forwarded, LEGACY_ROUTER),
         "wrong_role", "a router.main key file without roles: an issuer key only",
         **at_feed)  # fmt: skip
    changed = dataclasses.replace(forwarded.derived, agreements=("dsa.made-up@1",))
    case("changed-agreements", "forwarded",
         dataclasses.replace(forwarded, derived=changed).to_bytes(), "bad_derived_signature",
         "agreements changed after the router signed", **at_feed)  # fmt: skip
    unplaced = golden_forward(
        derived={**INPUT["forward"]["derived"], "placement_out_of_area": False}
    )
    at = first_difference(good_forward, unplaced.to_bytes())
    assert good_forward[at] == 1  # true
    case("derived-boolean-three", "forwarded", good_forward[:at] + b"\x03" + good_forward[at + 1:],
         "non_canonical", "placement_out_of_area's boolean byte 03 (true is 01)",
         **at_feed)  # fmt: skip
    nan = PersonalDict({"ratio": float("nan")})
    case("derived-nan", "forwarded", resign_derived(forwarded, ROUTER, values=nan),
         "non_canonical", "a derived double that is NaN", **at_feed)  # fmt: skip
    case("forward-clock-skew", "forwarded", good_forward, "clock_skew",
         "forwarded_at an hour from the feed record's timestamp", router=ROUTER_ID,
         received_at="2026-11-24T19:06:01Z")  # fmt: skip
    return out


def main() -> None:
    document = {
        "description": "Negative vectors for the signed envelope wire format v1 (see "
        "docs/wire-format.md, 'Conformance'): every case must be refused with its reason "
        "(null: must verify). Keys: Ed25519 public keys with roles and terms, as .pub.json "
        "files give them; verify 'envelope' cases as issued envelopes at ingress and "
        "'forwarded' ones as a recipient trusting the router 'router', judging keys at "
        "'received_at' (absent: at the signed time) with at most 'max_skew_s' (default 300) "
        "between it and the signed time, and checking 'recipient' when given.",
        "keys": [key.to_json() for key in KEYS],
        "cases": cases(),
    }
    OUT.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
