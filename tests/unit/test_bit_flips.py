"""One meaning per byte string: no single-bit change of a real message is accepted.

Every bit of an issued envelope, a forwarded envelope with derived values (both the golden
vectors) and a signed checkpoint is flipped in turn; each variant must be refused with a reason
code (envelopes) or a finding (checkpoints). Before values had to be canonical Avro, 7 variants of
the forwarded vector passed: the derived boolean byte 01 read as true with any of bits 1-7 set.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.audit.chain import ChainState, chain_id
from broker.audit.checkpoint import Checkpoint, verify_checkpoints
from broker.audit.cli import key_lookup
from broker.audit.record import Outcome
from broker.envelope import KeyRegistry, SigningKey, VerificationError
from broker.envelope.keys import ROUTER_ROLES
from broker.envelope.verifier import verify_envelope, verify_forwarded

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "envelope-v1.json"


def _flips(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    for index in range(len(data)):
        for bit in range(8):
            variant = bytearray(data)
            variant[index] ^= 1 << bit
            yield index, bit, bytes(variant)


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text())
    return data


def _key(spec: dict[str, str], roles: tuple[str, ...] = ("issuer",)) -> SigningKey:
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(spec["seed"]))
    return SigningKey(spec["agency"], spec["key_id"], private, roles=roles)


def _accepted(data: bytes, verify: Callable[[bytes], object]) -> list[tuple[int, int]]:
    verify(data)  # the original verifies, so a refusal below is the flip's doing
    accepted = []
    for index, bit, variant in _flips(data):
        try:
            verify(variant)
        except VerificationError:
            continue
        accepted.append((index, bit))
    return accepted


def test_no_bit_flip_of_an_issued_or_forwarded_envelope_verifies(vectors: dict[str, Any]) -> None:
    spec, expected = vectors["input"], vectors["expected"]
    issuer, router_key = _key(spec["issuer"]), _key(spec["router"], ROUTER_ROLES)
    keys = KeyRegistry([issuer.public_key_info(), router_key.public_key_info()])
    router = spec["router"]["agency"]
    forwarded = bytes.fromhex(expected["forwarded"])
    assert verify_forwarded(forwarded, keys, router=router).derived  # it has derived values
    assert _accepted(bytes.fromhex(expected["envelope"]), lambda d: verify_envelope(d, keys)) == []
    assert _accepted(forwarded, lambda d: verify_forwarded(d, keys, router=router)) == []


def test_no_bit_flip_of_a_signed_checkpoint_verifies() -> None:
    router = SigningKey("router.main", "r1", Ed25519PrivateKey.generate(), roles=ROUTER_ROLES)
    lookup = key_lookup(KeyRegistry([router.public_key_info()]), "router.main")
    state = ChainState(chain_id("ingress.council.E09000033", 0))
    t0 = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
    leaves = []
    for i in range(3):
        record = state.append(
            ingress_topic="ingress.council.E09000033",
            ingress_partition=0,
            ingress_offset=i,
            decided_at=t0 + timedelta(seconds=i),
            occurred_at=t0,
            outcome=Outcome.DENIED,
            event_id=f"evt-{i}",
            issuer="council.E09000033",
            event_type="child.missing.started",
            subject="C-1",
            reason="no_agreement",
            digests=[],
        )
        leaves.append(record.to_bytes())
    checkpoint = Checkpoint.for_chain(
        state,
        previous=None,
        issued_at=t0 + timedelta(minutes=1),
        private_key=router,
        agency=router.agency_id,
        key_id=router.key_id,
    ).to_bytes()
    assert verify_checkpoints([(0, checkpoint)], leaves, lookup, state.chain) == []
    accepted = [
        (index, bit)
        for index, bit, variant in _flips(checkpoint)
        if not verify_checkpoints([(0, variant)], leaves, lookup, state.chain)
    ]
    assert accepted == []
