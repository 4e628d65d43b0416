"""Inclusion proof files: one decision record, its audit path, and the signed checkpoint.

A proof file lets anyone check, offline and with only the router's public key, that a decision
record is in the audit log the router signed. The file is canonical JSON (sorted keys, two-space
indent, ASCII, final newline) and the checker refuses anything else, so that any change to any
byte of the file makes the check fail, including edits that would not change the meaning.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from broker.audit.checkpoint import Checkpoint, PublicKeys
from broker.audit.exceptions import CheckpointError, ProofError, RecordFormatError
from broker.audit.merkle import MerkleTree, leaf_hash, verify_inclusion
from broker.audit.record import DecisionRecord

PROOF_FORMAT = "uk.safeguarding.audit.inclusion-proof.v1"
_KEYS = {"format", "record", "decision", "leaf_index", "audit_path", "checkpoint"}


@dataclass(frozen=True)
class VerifiedProof:
    """What a proof established: this record is leaf ``record.seq`` under this checkpoint."""

    record: DecisionRecord
    checkpoint: Checkpoint


def _document(
    record_bytes: bytes, record: DecisionRecord, path: Sequence[bytes], checkpoint: Checkpoint
) -> dict[str, Any]:
    return {
        "format": PROOF_FORMAT,
        "record": base64.b64encode(record_bytes).decode("ascii"),
        "decision": record.to_json_dict(),
        "leaf_index": record.seq,
        "audit_path": [h.hex() for h in path],
        "checkpoint": checkpoint.to_json_dict(),
    }


def export_proof(
    record_bytes: bytes,
    index: int,
    tree: MerkleTree | Sequence[bytes],
    checkpoint: Checkpoint,
) -> dict[str, Any]:
    """Build the proof document for the record at leaf ``index`` of ``tree`` (a chain's records).

    Refuses to export a proof that would not check: the record must be leaf ``index``, its
    sequence number must equal ``index``, and the tree must have the checkpoint's root.
    """
    if not isinstance(tree, MerkleTree):
        tree = MerkleTree(tree)
    try:
        record = DecisionRecord.from_bytes(record_bytes)
    except RecordFormatError as exc:
        raise ProofError(f"cannot export a proof: {exc}") from None
    if record.chain != checkpoint.chain:
        raise ProofError("cannot export a proof: the record and checkpoint are of different chains")
    if not 0 <= index < checkpoint.tree_size <= tree.size:
        raise ProofError(
            f"cannot export a proof: leaf {index} is not covered by the checkpoint "
            f"(tree size {checkpoint.tree_size}) or the records given"
        )
    if record.seq != index or tree.leaf_hash_at(index) != leaf_hash(record_bytes):
        raise ProofError(f"cannot export a proof: the record is not leaf {index} of the tree")
    if tree.root(checkpoint.tree_size) != checkpoint.root_hash:
        raise ProofError("cannot export a proof: the records do not have the checkpoint's root")
    path = tree.inclusion_proof(index, checkpoint.tree_size)
    return _document(record_bytes, record, path, checkpoint)


def _canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=True) + "\n"


def dump_proof(doc: dict[str, Any]) -> bytes:
    """The bytes of a proof file (canonical JSON)."""
    return _canonical(doc).encode("ascii")


def load_proof(data: bytes) -> dict[str, Any]:
    """Parse a proof file, refusing any byte sequence other than the canonical one."""
    try:
        doc = json.loads(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProofError("proof file is not ASCII JSON: it was damaged or edited") from None
    if not isinstance(doc, dict) or dump_proof(doc) != data:
        raise ProofError("proof file is not in canonical form: it was edited after export")
    return doc


def check_proof(doc: dict[str, Any], public_key: PublicKeys) -> VerifiedProof:
    """Check a proof document; raise `ProofError` naming the failed check, else say what it proved.

    Checks: the checkpoint signature (router key), the record is leaf ``seq`` of the checkpoint's
    chain (RFC 9162 inclusion), the readable ``decision`` is exactly the record's content, and
    every field is in canonical form.
    """
    if not isinstance(doc, dict) or set(doc) != _KEYS:
        raise ProofError("not an audit inclusion proof: unexpected or missing fields")
    if doc["format"] != PROOF_FORMAT:
        raise ProofError(f"not an audit inclusion proof: format must be {PROOF_FORMAT}")
    try:
        record_bytes = base64.b64decode(doc["record"], validate=True)
        record = DecisionRecord.from_bytes(record_bytes)
    except (TypeError, ValueError, binascii.Error, RecordFormatError):
        raise ProofError("the proof's record is not a valid audit decision record") from None
    try:
        checkpoint = Checkpoint.from_json_dict(doc["checkpoint"])
        checkpoint.verify_signature(public_key)
    except CheckpointError as exc:
        raise ProofError(f"the proof's checkpoint does not verify: {exc}") from None
    index = doc["leaf_index"]
    path_hex = doc["audit_path"]
    if not isinstance(index, int) or isinstance(index, bool) or not isinstance(path_hex, list):
        raise ProofError("the proof's leaf index or audit path is malformed")
    try:
        path = [bytes.fromhex(h) for h in path_hex]
    except (TypeError, ValueError):
        raise ProofError("the proof's audit path is not a list of hex hashes") from None
    if record.chain != checkpoint.chain:
        raise ProofError("the record's chain is not the checkpoint's chain")
    if index != record.seq:
        raise ProofError("the leaf index is not the record's sequence number")
    if any(len(h) != 32 for h in path) or not verify_inclusion(
        leaf_hash(record_bytes), index, checkpoint.tree_size, path, checkpoint.root_hash
    ):
        raise ProofError("the record is not in the tree the checkpoint signs (inclusion fails)")
    if _canonical(_document(record_bytes, record, path, checkpoint)) != _canonical(doc):
        raise ProofError("the proof's fields are not in canonical form: it was edited")
    return VerifiedProof(record, checkpoint)


def check_proof_file(data: bytes, public_key: PublicKeys) -> VerifiedProof:
    """Check the bytes of a proof file (what ``broker audit check-proof FILE`` does)."""
    return check_proof(load_proof(data), public_key)
