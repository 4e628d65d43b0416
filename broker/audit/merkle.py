"""Merkle tree hashing of the audit log, as in RFC 6962 / RFC 9162 section 2.1.

leaf = SHA-256(0x00 || record bytes), node = SHA-256(0x01 || left || right), and the root of the
empty tree is SHA-256(""). `CompactTree` is what the router keeps (O(log n) hashes: the roots of
the perfect subtrees making up the tree); `MerkleTree` keeps every level so that auditors can get
the root of any prefix and produce inclusion and consistency proofs in O(log n) hashing each.
The verification functions follow RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF = hashlib.sha256(b"\x00")
_NODE = hashlib.sha256(b"\x01")


def leaf_hash(data: bytes) -> bytes:
    """Hash of one leaf (one audit record's bytes)."""
    h = _LEAF.copy()
    h.update(data)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an interior node."""
    h = _NODE.copy()
    h.update(left)
    h.update(right)
    return h.digest()


def _split(n: int) -> int:
    """The largest power of two strictly less than n (n >= 2): RFC 6962's split point."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactTree:
    """Append-only tree state in O(log n) memory: the roots of its perfect subtrees.

    The frontier holds one hash per set bit of ``size``, largest subtree first; that is enough to
    append and to compute the root, and it is small enough to store beside the chain head.
    """

    __slots__ = ("_frontier", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._frontier: list[bytes] = []

    @classmethod
    def from_frontier(cls, size: int, frontier: Sequence[bytes]) -> CompactTree:
        """Restore a tree saved with `frontier()`."""
        if size < 0 or len(frontier) != size.bit_count():
            raise ValueError("frontier does not match the tree size")
        if any(len(h) != 32 for h in frontier):
            raise ValueError("frontier hashes must be 32 bytes")
        tree = cls()
        tree._size = size
        tree._frontier = list(frontier)
        return tree

    @property
    def size(self) -> int:
        return self._size

    def frontier(self) -> tuple[bytes, ...]:
        return tuple(self._frontier)

    def append(self, data: bytes) -> None:
        """Append one leaf given its data (a record's bytes)."""
        self.append_leaf_hash(leaf_hash(data))

    def append_leaf_hash(self, h: bytes) -> None:
        # Each trailing 1 bit of the old size is a perfect subtree the new leaf completes.
        size = self._size
        frontier = self._frontier
        while size & 1:
            h = node_hash(frontier.pop(), h)
            size >>= 1
        frontier.append(h)
        self._size += 1

    def root(self) -> bytes:
        """The Merkle tree hash of all leaves appended so far."""
        if not self._frontier:
            return EMPTY_ROOT
        it = reversed(self._frontier)
        h = next(it)
        for left in it:
            h = node_hash(left, h)
        return h

    def copy(self) -> CompactTree:
        return CompactTree.from_frontier(self._size, self._frontier)


class MerkleTree:
    """A tree keeping every level, for roots of prefixes and proofs (auditor side).

    ``levels[k][i]`` is the root of the perfect subtree of 2**k leaves starting at leaf i * 2**k.
    Memory is about two hashes per leaf.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for data in leaves:
            self.append(data)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def leaf_hash_at(self, index: int) -> bytes:
        return self._levels[0][index]

    def append(self, data: bytes) -> None:
        self.append_leaf_hash(leaf_hash(data))

    def append_leaf_hash(self, h: bytes) -> None:
        levels = self._levels
        level = 0
        levels[0].append(h)
        while len(levels[level]) % 2 == 0:
            row = levels[level]
            h = node_hash(row[-2], row[-1])
            level += 1
            if level == len(levels):
                levels.append([])
            levels[level].append(h)

    def _mth(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) using stored perfect subtrees; O(log n) hashing."""
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and start % n == 0:
            return self._levels[n.bit_length() - 1][start // n]
        k = _split(n)
        return node_hash(self._mth(start, start + k), self._mth(start + k, end))

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} outside 0..{self.size}")
        return size

    def root(self, size: int | None = None) -> bytes:
        """Root of the first ``size`` leaves (all by default)."""
        return self._mth(0, self._check_size(size))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Audit path of leaf ``index`` in the tree of the first ``size`` leaves (RFC 6962 PATH)."""
        n = self._check_size(size)
        if not 0 <= index < n:
            raise ValueError(f"leaf index {index} outside 0..{n - 1}")
        path: list[bytes] = []
        start, end, m = 0, n, index
        # Walk down from the root, collecting the sibling subtree at each split; reverse at end.
        while end - start > 1:
            k = _split(end - start)
            if m < k:
                path.append(self._mth(start + k, end))
                end = start + k
            else:
                path.append(self._mth(start, start + k))
                start += k
                m -= k
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Proof that the tree of ``new_size`` leaves extends that of ``old_size`` (RFC 6962)."""
        n = self._check_size(new_size)
        if not 0 <= old_size <= n:
            raise ValueError(f"old size {old_size} outside 0..{n}")
        if old_size in (0, n):
            return []
        proof: list[bytes] = []
        start, end, m, complete = 0, n, old_size, True
        while m != end - start:
            k = _split(end - start)
            if m <= k:
                proof.append(self._mth(start + k, end))
                end = start + k
            else:
                proof.append(self._mth(start, start + k))
                start += k
                m -= k
                complete = False
        if not complete:
            proof.append(self._mth(start, end))
        proof.reverse()
        return proof


def root_of(leaves: Iterable[bytes]) -> bytes:
    """Root of the tree over ``leaves`` (record bytes), in O(log n) memory."""
    tree = CompactTree()
    for data in leaves:
        tree.append(data)
    return tree.root()


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: does ``path`` prove leaf hash ``leaf`` at ``index`` under ``root``?"""
    if not 0 <= index < tree_size:
        return False
    fn, sn, r = index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: does ``proof`` show the ``new_size`` tree extends the ``old_size`` one?"""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        # Every tree extends the empty one; RFC 9162 defines no proof for it.
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
