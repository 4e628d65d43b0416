"""Merkle tree against a naive recursive RFC 6962 reference, and RFC 9162 proof verification."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.audit.merkle import (
    EMPTY_ROOT,
    CompactTree,
    MerkleTree,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)


# --- the reference: RFC 6962 section 2.1, written as literally as possible -------------------
def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True) if 0 < m < len(d) else []


leaves_st = st.lists(st.binary(max_size=8), max_size=70)


def _flip(b: bytes, i: int) -> bytes:
    i %= len(b)
    return b[:i] + bytes([b[i] ^ 1]) + b[i + 1 :]


# --- known values -----------------------------------------------------------------------------
def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert MerkleTree().root() == CompactTree().root() == root_of([]) == EMPTY_ROOT


def test_rfc6962_test_vector_eight_leaves() -> None:
    # The leaves used by the Certificate Transparency reference tests.
    hexes = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657"]
    hexes.append("606162636465666768696a6b6c6d6e6f")
    leaves = [bytes.fromhex(h) for h in hexes]
    assert leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert MerkleTree(leaves).root().hex() == (
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    )


# --- against the reference --------------------------------------------------------------------
@given(leaves_st)
def test_roots_match_reference_at_every_size(leaves: list[bytes]) -> None:
    tree = MerkleTree(leaves)
    compact = CompactTree()
    assert compact.root() == ref_mth([])
    for n, data in enumerate(leaves, start=1):
        compact.append(data)
        assert compact.root() == ref_mth(leaves[:n])
        assert compact.size == n
        assert len(compact.frontier()) == bin(n).count("1")  # O(log n) memory
    for n in range(len(leaves) + 1):
        assert tree.root(n) == ref_mth(leaves[:n])


@given(leaves_st.filter(bool), st.data())
def test_inclusion_proofs_match_reference_and_verify(
    leaves: list[bytes], data: st.DataObject
) -> None:
    tree = MerkleTree(leaves)
    n = data.draw(st.integers(1, len(leaves)))
    m = data.draw(st.integers(0, n - 1))
    path = tree.inclusion_proof(m, n)
    assert path == ref_path(m, leaves[:n])
    assert verify_inclusion(leaf_hash(leaves[m]), m, n, path, tree.root(n))


@given(leaves_st.filter(bool), st.data())
def test_inclusion_fails_after_any_change(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree(leaves)
    n = len(leaves)
    m = data.draw(st.integers(0, n - 1))
    path, root, leaf = tree.inclusion_proof(m), tree.root(), leaf_hash(leaves[m])
    i = data.draw(st.integers(0, 10_000))
    assert not verify_inclusion(_flip(leaf, i), m, n, path, root)
    assert not verify_inclusion(leaf, m, n, path, _flip(root, i))
    if path:
        j = data.draw(st.integers(0, len(path) - 1))
        bad = [*path[:j], _flip(path[j], i), *path[j + 1 :]]
        assert not verify_inclusion(leaf, m, n, bad, root)
        assert not verify_inclusion(leaf, m, n, path[:-1], root)
    assert not verify_inclusion(leaf, m, n, [*path, root], root)
    assert not verify_inclusion(leaf, n, n, path, root)


@given(leaves_st, st.data())
def test_consistency_proofs_match_reference_and_verify(
    leaves: list[bytes], data: st.DataObject
) -> None:
    tree = MerkleTree(leaves)
    n = data.draw(st.integers(0, len(leaves)))
    m = data.draw(st.integers(0, n))
    proof = tree.consistency_proof(m, n)
    assert proof == ref_proof(m, leaves[:n])
    assert verify_consistency(m, n, tree.root(m), tree.root(n), proof)


@given(leaves_st.filter(lambda ls: len(ls) >= 2), st.data())
def test_consistency_fails_after_any_change(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree(leaves)
    n = len(leaves)
    m = data.draw(st.integers(1, n - 1))
    proof, old, new = tree.consistency_proof(m, n), tree.root(m), tree.root(n)
    i = data.draw(st.integers(0, 10_000))
    assert not verify_consistency(m, n, _flip(old, i), new, proof)
    assert not verify_consistency(m, n, old, _flip(new, i), proof)
    j = data.draw(st.integers(0, len(proof) - 1))
    assert not verify_consistency(m, n, old, new, [*proof[:j], _flip(proof[j], i), *proof[j + 1 :]])
    assert not verify_consistency(m, n, old, new, proof[:-1])
    assert not verify_consistency(m, n, old, new, [*proof, new])
    # A rewritten history: same size, one leaf changed, is not consistent with the old root.
    k = data.draw(st.integers(0, m - 1))
    rewritten = MerkleTree([*leaves[:k], leaves[k] + b"x", *leaves[k + 1 :]])
    assert not verify_consistency(m, n, old, rewritten.root(), rewritten.consistency_proof(m, n))


def test_consistency_edge_cases() -> None:
    tree = MerkleTree([b"a", b"b", b"c"])
    assert verify_consistency(0, 3, EMPTY_ROOT, tree.root(), [])
    assert verify_consistency(3, 3, tree.root(), tree.root(), [])
    assert not verify_consistency(3, 3, tree.root(), tree.root(), [tree.root()])
    assert not verify_consistency(3, 2, tree.root(), tree.root(2), [])
    assert not verify_consistency(1, 3, tree.root(1), tree.root(), [])


def test_bad_sizes_are_refused() -> None:
    tree = MerkleTree([b"a", b"b"])
    with pytest.raises(ValueError):
        tree.root(3)
    with pytest.raises(ValueError):
        tree.inclusion_proof(2)
    with pytest.raises(ValueError):
        tree.consistency_proof(3, 2)


@settings(max_examples=50)
@given(leaves_st, st.lists(st.binary(max_size=4), max_size=20))
def test_compact_tree_frontier_round_trip(first: list[bytes], more: list[bytes]) -> None:
    tree = CompactTree()
    for d in first:
        tree.append(d)
    restored = CompactTree.from_frontier(tree.size, tree.frontier())
    for d in more:
        restored.append(d)
    assert restored.root() == ref_mth(first + more)
    with pytest.raises(ValueError):
        CompactTree.from_frontier(tree.size * 2 + 1, tree.frontier())
