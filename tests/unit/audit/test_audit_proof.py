"""Inclusion proof files: check offline with the router key; any changed byte fails."""

from __future__ import annotations

from datetime import timedelta

import pytest
from audit_samples import T0, TOPIC, make_chain
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.audit.chain import ChainState, chain_id
from broker.audit.checkpoint import Checkpoint
from broker.audit.exceptions import ProofError
from broker.audit.merkle import MerkleTree
from broker.audit.proof import check_proof, check_proof_file, dump_proof, export_proof, load_proof

KEY = Ed25519PrivateKey.generate()


def _setup(n: int = 13) -> tuple[list[bytes], Checkpoint]:
    state = ChainState(chain_id(TOPIC, 0))
    leaves = [r.to_bytes() for r in make_chain(n, state=state)]
    cp = Checkpoint.for_chain(
        state,
        previous=None,
        issued_at=T0 + timedelta(hours=1),
        private_key=KEY,
        agency="router.national",
        key_id="router-2026-1",
    )
    return leaves, cp


LEAVES, CP = _setup()
FILE = dump_proof(export_proof(LEAVES[5], 5, LEAVES, CP))


def test_proof_checks_offline_with_the_router_key() -> None:
    result = check_proof_file(FILE, KEY.public_key())
    assert result.record.seq == 5
    assert result.record.event_id == "evt-0-5"
    assert result.checkpoint == CP
    doc = load_proof(FILE)
    assert check_proof(doc, KEY.public_key()).record.to_bytes() == LEAVES[5]


def test_every_leaf_has_a_proof() -> None:
    tree = MerkleTree(LEAVES)
    for i, leaf in enumerate(LEAVES):
        check_proof(export_proof(leaf, i, tree, CP), KEY.public_key())


def test_wrong_key_fails() -> None:
    with pytest.raises(ProofError, match="signature"):
        check_proof_file(FILE, Ed25519PrivateKey.generate().public_key())


def test_export_refuses_a_proof_that_would_not_check() -> None:
    with pytest.raises(ProofError):
        export_proof(LEAVES[5], 4, LEAVES, CP)
    with pytest.raises(ProofError):
        export_proof(LEAVES[5], 5, [*LEAVES[:5], b"x", *LEAVES[6:]], CP)
    with pytest.raises(ProofError):
        export_proof(LEAVES[5], 5, LEAVES[:3], CP)


def test_reencoded_json_with_same_meaning_fails() -> None:
    doc = load_proof(FILE)
    import json

    with pytest.raises(ProofError, match="canonical"):
        check_proof_file(json.dumps(doc).encode(), KEY.public_key())
    doc["audit_path"] = [h.upper() for h in doc["audit_path"]]
    with pytest.raises(ProofError, match="canonical"):
        check_proof(doc, KEY.public_key())


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data())
def test_any_changed_byte_fails(data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(FILE) - 1))
    b = data.draw(st.integers(0, 255).filter(lambda b: b != FILE[i]))
    changed = FILE[:i] + bytes([b]) + FILE[i + 1 :]
    with pytest.raises(ProofError):
        check_proof_file(changed, KEY.public_key())


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_removed_or_inserted_byte_fails(data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(FILE) - 1))
    if data.draw(st.booleans()):
        changed = FILE[:i] + FILE[i + 1 :]
    else:
        changed = FILE[:i] + bytes([data.draw(st.integers(0, 255))]) + FILE[i:]
    with pytest.raises(ProofError):
        check_proof_file(changed, KEY.public_key())
