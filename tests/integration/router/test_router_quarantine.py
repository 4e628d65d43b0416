"""Acceptance 2: every reason code of the router's quarantine, from input that causes it.

Each bad record lands in `quarantine` with its original bytes and the reason code, gets an audit
decision of its own, and the good events published around it are still routed.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from router_helpers import (
    LAMBETH,
    MET,
    STATS,
    WESTMINSTER,
    Deployment,
    decisions,
    event,
    produce_raw,
    read_feed,
    read_quarantine,
    route_all,
    signed,
)

from broker.audit import Outcome
from broker.config import topic_ingress
from broker.envelope import (
    Disclosure,
    Envelope,
    SigningKey,
    generate_key,
    signing_key_from_pem,
)
from broker.envelope.canonical import issuer_signing_input

pytestmark = pytest.mark.integration


def _extra_key(
    dep: Deployment,
    tmp: Path,
    key_id: str,
    *,
    registered: bool,
    valid_until: datetime | None = None,
    revoked_at: datetime | None = None,
) -> SigningKey:
    """Another key of Westminster, registered (with the given terms) or not."""
    agency = dep.id(WESTMINSTER)
    start = datetime.now(UTC) - timedelta(days=2)
    private, public = generate_key(
        agency, tmp, key_id=key_id, valid_from=start, valid_until=valid_until
    )
    if registered:
        info = json.loads(public.read_text())
        if revoked_at is not None:
            info["revoked_at"] = revoked_at.isoformat().replace("+00:00", "Z")
        (dep.keys_dir / public.name).write_text(json.dumps(info))
    # Without its terms, so that the issuing side does not refuse to sign.
    return signing_key_from_pem(private.read_bytes(), agency, key_id)


def _resign(
    envelope: Envelope,
    key: SigningKey,
    *,
    disclosures: tuple[Disclosure, ...] | None = None,
    digests: tuple[bytes, ...] | None = None,
) -> Envelope:
    """An envelope with other disclosures/digests, properly signed by `key`."""
    disclosures = disclosures if disclosures is not None else envelope.disclosures
    if digests is None:
        digests = tuple(sorted(d.digest() for d in disclosures))
    header = dataclasses.replace(envelope.header, key_id=key.key_id)
    signature = key.sign(issuer_signing_input(header.to_bytes(), digests, version=header.version))
    return Envelope(header, digests, disclosures, signature, envelope.subject_disclosure)


def test_each_reason_code_quarantines_the_original_bytes(
    deployment: Deployment, tmp_path: Path
) -> None:
    dep = deployment
    now = datetime.now(UTC)
    revoked = _extra_key(dep, tmp_path, "revoked", registered=True, revoked_at=now - timedelta(1))
    expired = _extra_key(dep, tmp_path, "expired", registered=True, valid_until=now - timedelta(1))
    stranger = _extra_key(dep, tmp_path, "stranger", registered=False)
    key = dep.key(WESTMINSTER)

    def missing(tag: str) -> Envelope:
        evt = event("child.missing.started", "child-q", tag, missing_type="M")
        return signed(dep, WESTMINSTER, evt)

    goods = [missing(f"good{i}") for i in range(4)]
    base = missing("base")
    flipped = bytearray(base.signature)
    flipped[7] ^= 0x01
    bad_value = tuple(
        d._replace(value=b"\xff\xff\xff\xff") if d.name == "risk_level" else d
        for d in base.disclosures
    )
    resalted = tuple(
        d._replace(salt=os.urandom(16)) if d.name == "clothing" else d for d in base.disclosures
    )
    # The union branch index of risk_level written as a two-byte varint: same value, other bytes.
    long_index = tuple(
        d._replace(value=bytes([d.value[0] | 0x80, 0]) + d.value[1:]) if d.name == "risk_level"
        else d
        for d in base.disclosures
    )  # fmt: skip
    skewed = missing("skew")
    backdated = dataclasses.replace(
        skewed, header=dataclasses.replace(skewed.header, issued_at=now - timedelta(hours=1))
    )
    bad: dict[str, bytes | None] = {
        "bad_encoding": os.urandom(64),
        "unknown_schema": b"\xc3\x01" + b"\x5a" * 8 + base.to_bytes()[10:],
        "bad_signature": dataclasses.replace(base, signature=bytes(flipped)).to_bytes(),
        "unknown_key": _resign(missing("unknown"), stranger).to_bytes(),
        "revoked_key": _resign(missing("revoked"), revoked).to_bytes(),
        "key_not_valid": _resign(missing("expired"), expired).to_bytes(),
        # Signed by the right key, but a value that is not of the field's type.
        "schema_violation": _resign(missing("schema"), key, disclosures=bad_value).to_bytes(),
        # A disclosure the signed digests do not cover.
        "digest_mismatch": dataclasses.replace(base, disclosures=resalted).to_bytes(),
        "duplicate_digest": _resign(
            missing("dupdigest"), key, digests=(*base.digests, base.digests[0])
        ).to_bytes(),
        # Signed by the right key, but a value in a non-canonical encoding.
        "non_canonical": _resign(missing("noncanon"), key, disclosures=long_index).to_bytes(),
        # Signed by the right key, dated an hour before the broker received it.
        "clock_skew": _resign(backdated, key).to_bytes(),
    }
    stream: list[bytes | None] = [goods[0].to_bytes()]
    for value in bad.values():
        stream += [value, goods[1].to_bytes()] if value is bad["unknown_key"] else [value]
    stream += [
        goods[0].to_bytes(),  # the same envelope again: duplicate
        None,  # a tombstone is not an envelope
        goods[2].to_bytes(),
    ]
    subject = b"child-q"
    produce_raw(dep, topic_ingress(dep.id(WESTMINSTER)), [(subject, v) for v in stream])
    # Westminster's event on Lambeth's ingress, then a good Lambeth event after it.
    lambeth_good = signed(
        dep, LAMBETH, event("child.missing.started", "child-l", "lgood", missing_type="M")
    )
    produce_raw(
        dep,
        topic_ingress(dep.id(LAMBETH)),
        [(subject, goods[3].to_bytes()), (b"child-l", lambeth_good.to_bytes())],
    )
    route_all(dep, len(stream) + 2)

    quarantined = Counter(
        (dict(r.headers)["reason"].decode(), r.value) for r in read_quarantine(dep)
    )
    expected = Counter({(code, value): 1 for code, value in bad.items()})
    expected[("duplicate", goods[0].to_bytes())] += 1
    expected[("bad_encoding", None)] += 1
    expected[("wrong_ingress", goods[3].to_bytes())] += 1
    assert quarantined == expected

    for record in read_quarantine(dep):
        detail = json.loads(dict(record.headers)["detail"])
        assert detail["reason"] == dict(record.headers)["reason"].decode()
        assert detail["topic"] in (
            topic_ingress(dep.id(WESTMINSTER)),
            topic_ingress(dep.id(LAMBETH)),
        )

    # The good events around the bad ones were routed, each once.
    good_ids = {g.header.event_id for g in [*goods[:3], lambeth_good]}
    for recipient in (MET, STATS):
        items = read_feed(dep, recipient)
        assert all(item.event is not None for item in items)
        assert sorted(item.event.event_id for item in items if item.event) == sorted(good_ids)

    # One decision per ingress record; quarantines carry their reason code.
    records = decisions(dep)
    assert len(records) == len(stream) + 2
    reasons = Counter(r.reason for r in records if r.outcome != Outcome.FORWARDED)
    assert reasons == Counter(
        {**{code: 1 for code in bad}, "bad_encoding": 2, "duplicate": 1, "wrong_ingress": 1}
    )
    assert sum(1 for r in records if r.outcome == Outcome.DUPLICATE) == 1
