"""The pure core of the tamper-evident audit log: records, hash chains, Merkle trees, checkpoints.

Nothing here talks to Kafka: callers hand in the bytes of ``audit.decisions`` and
``audit.checkpoints`` records with their offsets, and get back bytes to produce or findings.
See docs/audit.md for the formats and the reasoning.
"""

from broker.audit.chain import ChainState, ChainVerifier, chain_id, verify_chain
from broker.audit.checkpoint import Checkpoint, KeyLookup, PublicKeys, verify_checkpoints
from broker.audit.exceptions import (
    AuditError,
    BadSignatureError,
    CheckpointError,
    ProofError,
    RecordFormatError,
    UnknownKeyError,
)
from broker.audit.findings import Finding, FindingCode
from broker.audit.merkle import (
    CompactTree,
    MerkleTree,
    verify_consistency,
    verify_inclusion,
)
from broker.audit.proof import check_proof, check_proof_file, dump_proof, export_proof, load_proof
from broker.audit.record import (
    ConditionError,
    DecisionRecord,
    Outcome,
    RecipientDecision,
)
from broker.audit.verify import AuditReport, verify_log

__all__ = [
    "AuditError",
    "AuditReport",
    "BadSignatureError",
    "ChainState",
    "ChainVerifier",
    "Checkpoint",
    "CheckpointError",
    "CompactTree",
    "ConditionError",
    "DecisionRecord",
    "Finding",
    "FindingCode",
    "KeyLookup",
    "MerkleTree",
    "Outcome",
    "ProofError",
    "PublicKeys",
    "RecipientDecision",
    "RecordFormatError",
    "UnknownKeyError",
    "chain_id",
    "check_proof",
    "check_proof_file",
    "dump_proof",
    "export_proof",
    "load_proof",
    "verify_chain",
    "verify_checkpoints",
    "verify_consistency",
    "verify_inclusion",
    "verify_log",
]
