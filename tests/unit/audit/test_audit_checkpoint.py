"""Signed checkpoints: signatures, links, roots, and what they catch that the chain cannot."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from audit_samples import T0, TOPIC, make_chain
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from broker.audit.chain import ChainState, chain_id
from broker.audit.checkpoint import (
    SIGNING_CONTEXT,
    Checkpoint,
    verify_checkpoints,
)
from broker.audit.exceptions import BadSignatureError, RecordFormatError, UnknownKeyError
from broker.audit.findings import FindingCode
from broker.audit.merkle import MerkleTree

REPO = Path(__file__).resolve().parents[3]
AGENCY, KEY_ID = "router.national", "router-2026-1"


def _checkpointed(
    key: Ed25519PrivateKey, sizes: list[int]
) -> tuple[list[bytes], list[tuple[int, bytes]]]:
    """A chain of max(sizes) records with a checkpoint after each size in ``sizes``."""
    state = ChainState(chain_id(TOPIC, 0))
    leaves: list[bytes] = []
    cps: list[tuple[int, bytes]] = []
    prev = None
    for size in sizes:
        leaves += [r.to_bytes() for r in make_chain(size - state.next_seq, state=state)]
        prev = Checkpoint.for_chain(
            state,
            previous=prev,
            issued_at=T0 + timedelta(minutes=size),
            private_key=key,
            agency=AGENCY,
            key_id=KEY_ID,
        )
        cps.append((len(cps), prev.to_bytes()))
    return leaves, cps


def test_round_trip_and_signature(router_key: Ed25519PrivateKey) -> None:
    _, cps = _checkpointed(router_key, [5])
    cp = Checkpoint.from_bytes(cps[0][1])
    assert cp.to_bytes() == cps[0][1]
    cp.verify_signature(router_key.public_key())
    # The signature covers the context string and every byte before the signature field.
    assert cp.signed_bytes().startswith(SIGNING_CONTEXT)
    assert cp.to_bytes().startswith(cp.signed_bytes()[len(SIGNING_CONTEXT) :])
    assert Checkpoint.from_json_dict(cp.to_json_dict()) == cp


def test_forged_checkpoint_fails_its_signature(router_key: Ed25519PrivateKey) -> None:
    leaves, cps = _checkpointed(router_key, [3, 6])
    cp = Checkpoint.from_bytes(cps[1][1])
    with pytest.raises(BadSignatureError):
        cp.verify_signature(Ed25519PrivateKey.generate().public_key())
    forged = Checkpoint.for_chain(
        ChainState(chain_id(TOPIC, 0)),
        previous=None,
        issued_at=T0,
        private_key=Ed25519PrivateKey.generate(),
        agency=AGENCY,
        key_id=KEY_ID,
    )
    findings = verify_checkpoints([*cps, (9, forged.to_bytes())], leaves, router_key.public_key())
    assert [(f.code, f.offset) for f in findings] == [(FindingCode.BAD_SIGNATURE, 9)]


def test_key_lookup_by_agency_key_id_and_time(router_key: Ed25519PrivateKey) -> None:
    leaves, cps = _checkpointed(router_key, [2, 4])
    seen: list[tuple[str, str, datetime]] = []

    def lookup(agency: str, key_id: str, at: datetime) -> Ed25519PublicKey | None:
        seen.append((agency, key_id, at))
        return router_key.public_key() if at < T0 + timedelta(minutes=3) else None

    findings = verify_checkpoints(cps, leaves, lookup)
    assert [(f.code, f.offset) for f in findings] == [(FindingCode.UNKNOWN_KEY, 1)]
    assert seen[0][:2] == (AGENCY, KEY_ID)
    with pytest.raises(UnknownKeyError):
        Checkpoint.from_bytes(cps[1][1]).verify_signature(lookup)


def test_clean_log_verifies(router_key: Ed25519PrivateKey) -> None:
    leaves, cps = _checkpointed(router_key, [1, 4, 4, 9, 16, 17])
    assert verify_checkpoints(cps, leaves, router_key.public_key()) == []


def test_records_deleted_from_the_end_are_caught(router_key: Ed25519PrivateKey) -> None:
    leaves, cps = _checkpointed(router_key, [4, 8])
    findings = verify_checkpoints(cps, leaves[:-1], router_key.public_key())
    assert [(f.code, f.offset) for f in findings] == [(FindingCode.BEYOND_LOG, 1)]


def test_altered_last_record_is_caught(router_key: Ed25519PrivateKey) -> None:
    leaves, cps = _checkpointed(router_key, [4, 8])
    leaves[-1] = leaves[-1][:-1] + bytes([leaves[-1][-1] ^ 1])
    codes = {f.code for f in verify_checkpoints(cps, leaves, router_key.public_key())}
    assert {FindingCode.ROOT_MISMATCH, FindingCode.HEAD_MISMATCH} <= codes


def test_rewritten_history_is_inconsistent(router_key: Ed25519PrivateKey) -> None:
    """A router (or someone with its key) rewriting old records and re-signing is caught."""
    leaves, cps = _checkpointed(router_key, [4])
    tree = MerkleTree([*leaves[:1], b"rewritten", *leaves[2:], b"x", b"y"])
    first = Checkpoint.from_bytes(cps[0][1])
    second = Checkpoint.create(
        chain=first.chain,
        tree_size=6,
        root_hash=tree.root(),
        head_hash=first.head_hash,
        previous=first,
        issued_at=T0,
        private_key=router_key,
        agency=AGENCY,
        key_id=KEY_ID,
    )
    findings = verify_checkpoints([*cps, (1, second.to_bytes())], leaves, router_key.public_key())
    assert FindingCode.BEYOND_LOG in {f.code for f in findings}
    new_leaves = [*leaves[:1], b"rewritten", *leaves[2:], b"x", b"y"]
    findings = verify_checkpoints(
        [*cps, (1, second.to_bytes())], new_leaves, router_key.public_key()
    )
    assert {(f.code, f.offset) for f in findings} >= {
        (FindingCode.INCONSISTENT, 1),
        (FindingCode.ROOT_MISMATCH, 0),
    }


def test_deleted_checkpoint_breaks_the_checkpoint_chain(router_key: Ed25519PrivateKey) -> None:
    leaves, cps = _checkpointed(router_key, [2, 4, 6])
    findings = verify_checkpoints([cps[0], cps[2]], leaves, router_key.public_key())
    assert [(f.code, f.offset) for f in findings] == [(FindingCode.CHECKPOINT_LINK, 2)]


def test_undecodable_and_other_chain(router_key: Ed25519PrivateKey) -> None:
    leaves, cps = _checkpointed(router_key, [2])
    other = Checkpoint.for_chain(
        ChainState(chain_id(TOPIC, 1)),
        previous=None,
        issued_at=T0,
        private_key=router_key,
        agency=AGENCY,
        key_id=KEY_ID,
    )
    findings = verify_checkpoints(
        [*cps, (1, b"junk"), (2, other.to_bytes())], leaves, router_key.public_key(), cps_chain(cps)
    )
    assert [(f.code, f.offset) for f in findings] == [
        (FindingCode.UNDECODABLE, 1),
        (FindingCode.WRONG_CHAIN, 2),
    ]
    with pytest.raises(RecordFormatError):
        Checkpoint.from_bytes(cps[0][1] + b"\x00")


def cps_chain(cps: list[tuple[int, bytes]]) -> str:
    return Checkpoint.from_bytes(cps[0][1]).chain
