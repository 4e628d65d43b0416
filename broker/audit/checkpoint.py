"""Signed checkpoints: the router's Ed25519-signed Merkle tree head over one audit chain.

A checkpoint commits to the first ``tree_size`` records of a chain (``root_hash``, RFC 6962), to
the chain head (hash of record ``tree_size - 1``), and to the previous checkpoint of the chain
(``prev_checkpoint_hash`` = SHA-256 of its bytes), so checkpoints form a chain of their own.
Verifiers catch with them what the hash chain alone cannot: records deleted from the end of a
chain and alterations of its last records.

Signed bytes: ``SIGNING_CONTEXT`` followed by the checkpoint's single-object encoding up to (not
including) the signature field. The context string keeps these signatures from ever being valid
for any other message signed with the same key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from broker.audit._codec import HEADER_LEN, SingleObjectCodec, load_schema
from broker.audit.chain import ChainState
from broker.audit.exceptions import (
    BadSignatureError,
    CheckpointError,
    RecordFormatError,
    UnknownKeyError,
)
from broker.audit.findings import Finding, FindingCode
from broker.audit.merkle import MerkleTree, verify_consistency
from broker.audit.record import (
    HASH_LEN,
    ZERO_HASH,
    format_time,
    parse_time,
    record_hash,
    to_micros,
)

SIGNING_CONTEXT = b"uk.safeguarding.audit.checkpoint.v1\x00"

KeyLookup = Callable[[str, str, datetime], Ed25519PublicKey | None]
"""(agency id, key id, time) -> the public key valid then, or None if unknown or not valid."""
PublicKeys = Ed25519PublicKey | KeyLookup

CHECKPOINT_SCHEMA: dict[str, Any] = load_schema("audit.checkpoint.avsc")
_CODEC = SingleObjectCodec(CHECKPOINT_SCHEMA, "audit checkpoint")
# What the signature covers: the same record without its last field, the signature.
_BODY_CODEC = SingleObjectCodec(
    {**CHECKPOINT_SCHEMA, "name": "CheckpointBody", "fields": CHECKPOINT_SCHEMA["fields"][:-1]},
    "audit checkpoint body",
)


class Signer(Protocol):
    """Anything that makes Ed25519 signatures: a raw private key or a `SigningKey`."""

    def sign(self, data: bytes) -> bytes: ...


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_LEN:
        raise ValueError(f"{what} must be 32 bytes")


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head of one chain; ``to_bytes()`` is the ``audit.checkpoints`` value."""

    chain: str
    tree_size: int
    root_hash: bytes
    head_hash: bytes
    prev_checkpoint_hash: bytes
    issued_at: datetime
    agency: str
    key_id: str
    signature: bytes = b""

    def __post_init__(self) -> None:
        if self.tree_size < 0:
            raise ValueError("tree_size must be >= 0")
        for name in ("root_hash", "head_hash", "prev_checkpoint_hash"):
            _check_hash(getattr(self, name), name)
        if self.issued_at.tzinfo is None or self.issued_at.utcoffset() is None:
            raise ValueError("issued_at must be timezone-aware")

    @classmethod
    def create(
        cls,
        *,
        chain: str,
        tree_size: int,
        root_hash: bytes,
        head_hash: bytes,
        previous: Checkpoint | None,
        issued_at: datetime,
        private_key: Signer,
        agency: str,
        key_id: str,
    ) -> Checkpoint:
        """Make and sign a checkpoint; ``previous`` is the chain's last checkpoint, if any."""
        if previous is not None:
            if previous.chain != chain:
                raise CheckpointError("previous checkpoint belongs to another chain")
            if previous.tree_size > tree_size:
                raise CheckpointError("a checkpoint cannot cover fewer records than the last one")
        unsigned = cls(
            chain=chain,
            tree_size=tree_size,
            root_hash=root_hash,
            head_hash=head_hash,
            prev_checkpoint_hash=ZERO_HASH if previous is None else previous.checkpoint_hash,
            issued_at=issued_at,
            agency=agency,
            key_id=key_id,
        )
        signature = private_key.sign(unsigned.signed_bytes())
        return cls(**{**unsigned._fields(), "signature": signature})

    @classmethod
    def for_chain(
        cls,
        state: ChainState,
        *,
        previous: Checkpoint | None,
        issued_at: datetime,
        private_key: Signer,
        agency: str,
        key_id: str,
    ) -> Checkpoint:
        """Checkpoint of a writer's chain state as it stands (what the router publishes)."""
        return cls.create(
            chain=state.chain,
            tree_size=state.next_seq,
            root_hash=state.tree.root(),
            head_hash=state.head,
            previous=previous,
            issued_at=issued_at,
            private_key=private_key,
            agency=agency,
            key_id=key_id,
        )

    def _fields(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "head_hash": self.head_hash,
            "prev_checkpoint_hash": self.prev_checkpoint_hash,
            "issued_at": self.issued_at,
            "agency": self.agency,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    def _to_avro(self) -> dict[str, Any]:
        return {**self._fields(), "issued_at": to_micros(self.issued_at)}

    def signed_bytes(self) -> bytes:
        """Exactly what the signature covers."""
        return SIGNING_CONTEXT + _CODEC.header + _BODY_CODEC.encode(self._to_avro())[HEADER_LEN:]

    @cached_property
    def _encoded(self) -> bytes:
        return _CODEC.encode(self._to_avro())

    def to_bytes(self) -> bytes:
        return self._encoded

    @cached_property
    def checkpoint_hash(self) -> bytes:
        """SHA-256 of the bytes: the next checkpoint's ``prev_checkpoint_hash``."""
        return hashlib.sha256(self._encoded).digest()

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        d = _CODEC.decode(data)
        try:
            cp = cls(**d)
        except (TypeError, ValueError) as exc:
            raise RecordFormatError(
                f"audit checkpoint has invalid content ({type(exc).__name__})"
            ) from None
        if cp.to_bytes() != data:
            raise RecordFormatError("audit checkpoint is not in canonical form")
        return cp

    def verify_signature(self, keys: PublicKeys) -> None:
        """Raise `CheckpointError` unless the router's signature verifies."""
        if isinstance(keys, Ed25519PublicKey):
            key: Ed25519PublicKey | None = keys
        else:
            key = keys(self.agency, self.key_id, self.issued_at)
        if key is None:
            raise UnknownKeyError(
                f"no public key for {self.agency} key id {self.key_id} valid at "
                f"{format_time(self.issued_at)}: add it to the agency registry"
            )
        try:
            key.verify(self.signature, self.signed_bytes())
        except InvalidSignature:
            raise BadSignatureError(
                f"checkpoint signature does not verify with {self.agency} key id {self.key_id}"
            ) from None

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready view (hashes hex, signature hex, time ISO 8601 UTC)."""
        return {
            "chain": self.chain,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "head_hash": self.head_hash.hex(),
            "prev_checkpoint_hash": self.prev_checkpoint_hash.hex(),
            "issued_at": format_time(self.issued_at),
            "agency": self.agency,
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json_dict(cls, d: Any) -> Checkpoint:
        """Inverse of `to_json_dict`, strict about types and forms (for proof files)."""
        try:
            if not isinstance(d, dict) or set(d) != _JSON_KEYS:
                raise ValueError("fields")
            if not isinstance(d["tree_size"], int) or isinstance(d["tree_size"], bool):
                raise ValueError("tree_size")
            for name in ("chain", "agency", "key_id"):
                if not isinstance(d[name], str):
                    raise ValueError(name)
            return cls(
                chain=d["chain"],
                tree_size=d["tree_size"],
                root_hash=bytes.fromhex(d["root_hash"]),
                head_hash=bytes.fromhex(d["head_hash"]),
                prev_checkpoint_hash=bytes.fromhex(d["prev_checkpoint_hash"]),
                issued_at=parse_time(d["issued_at"]),
                agency=d["agency"],
                key_id=d["key_id"],
                signature=bytes.fromhex(d["signature"]),
            )
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint fields are invalid ({exc})") from None


_JSON_KEYS = {
    "chain",
    "tree_size",
    "root_hash",
    "head_hash",
    "prev_checkpoint_hash",
    "issued_at",
    "agency",
    "key_id",
    "signature",
}


def verify_checkpoints(
    checkpoints: Iterable[tuple[int, bytes]],
    leaves: Sequence[bytes],
    keys: PublicKeys,
    chain: str | None = None,
) -> list[Finding]:
    """Verify the checkpoints of one chain against the chain's records.

    ``checkpoints``: ``(offset in audit.checkpoints, bytes)`` of this chain's checkpoints in
    offset order (others are reported as ``wrong_chain`` when ``chain`` is given); ``leaves``: the
    chain's record bytes in log order. Checks each signature, that each checkpoint links to the
    previous one, that its root and head match the records, that it does not cover records the
    log lacks, and that each checkpoint is consistent with the previous (RFC 9162 proof).
    A checkpoint whose signature fails is reported and otherwise ignored.
    """
    tree = MerkleTree(leaves)
    findings: list[Finding] = []
    prev: Checkpoint | None = None

    def find(code: FindingCode, offset: int, message: str, cp: Checkpoint | None) -> None:
        findings.append(Finding(code, message, offset, None if cp is None else cp.chain))

    for offset, data in checkpoints:
        try:
            cp = Checkpoint.from_bytes(data)
        except RecordFormatError as exc:
            find(FindingCode.UNDECODABLE, offset, str(exc), None)
            continue
        if chain is not None and cp.chain != chain:
            find(FindingCode.WRONG_CHAIN, offset, "checkpoint of another chain", cp)
            continue
        try:
            cp.verify_signature(keys)
        except CheckpointError as exc:
            code = (
                FindingCode.UNKNOWN_KEY
                if isinstance(exc, UnknownKeyError)
                else FindingCode.BAD_SIGNATURE
            )
            find(code, offset, str(exc), cp)
            continue
        expected_prev = ZERO_HASH if prev is None else prev.checkpoint_hash
        if cp.prev_checkpoint_hash != expected_prev:
            find(
                FindingCode.CHECKPOINT_LINK,
                offset,
                "prev_checkpoint_hash does not match the previous valid checkpoint"
                + ("" if prev is None else f" (tree size {prev.tree_size})"),
                cp,
            )
        if cp.tree_size > tree.size:
            find(
                FindingCode.BEYOND_LOG,
                offset,
                f"checkpoint covers {cp.tree_size} records but the chain holds {tree.size}: "
                "records were deleted or are missing",
                cp,
            )
        else:
            if cp.root_hash != tree.root(cp.tree_size):
                find(
                    FindingCode.ROOT_MISMATCH,
                    offset,
                    f"root hash is not the Merkle root of the first {cp.tree_size} records: "
                    "records were altered, deleted or reordered",
                    cp,
                )
            head = ZERO_HASH if cp.tree_size == 0 else record_hash(leaves[cp.tree_size - 1])
            if cp.head_hash != head:
                find(
                    FindingCode.HEAD_MISMATCH,
                    offset,
                    f"head hash is not the hash of record {cp.tree_size - 1}",
                    cp,
                )
            if prev is not None and prev.tree_size <= cp.tree_size:
                proof = tree.consistency_proof(prev.tree_size, cp.tree_size)
                if not verify_consistency(
                    prev.tree_size, cp.tree_size, prev.root_hash, cp.root_hash, proof
                ):
                    find(
                        FindingCode.INCONSISTENT,
                        offset,
                        f"tree of size {cp.tree_size} does not extend the previous checkpoint's "
                        f"tree of size {prev.tree_size}",
                        cp,
                    )
        if prev is not None and cp.tree_size < prev.tree_size:
            find(
                FindingCode.INCONSISTENT,
                offset,
                f"tree size {cp.tree_size} is smaller than the previous checkpoint's "
                f"({prev.tree_size})",
                cp,
            )
        prev = cp
    return findings
