"""Whole-log verification: every chain of ``audit.decisions`` and every checkpoint.

This is the pure part of ``broker audit verify``: the caller reads both topics (any order of
partitions, offset order within one) and hands the values in; the result is a summary and every
finding, each naming its topic, partition and offset.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from broker.audit.chain import ChainVerifier
from broker.audit.checkpoint import Checkpoint, PublicKeys, verify_checkpoints
from broker.audit.exceptions import RecordFormatError
from broker.audit.findings import Finding, FindingCode
from broker.audit.record import DecisionRecord, read_header

DECISIONS_TOPIC = "audit.decisions"
CHECKPOINTS_TOPIC = "audit.checkpoints"


@dataclass
class AuditReport:
    """Summary of a verification run and its findings (empty findings: the log verifies)."""

    records: int = 0
    checkpoints: int = 0
    records_per_chain: dict[str, int] = field(default_factory=dict)
    unsigned_tail: dict[str, int] = field(default_factory=dict)
    """Per chain, records after its last valid checkpoint (not yet covered by a signature)."""
    first_decided_at: datetime | None = None
    last_decided_at: datetime | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def _decided_at(data: bytes) -> datetime | None:
    try:
        return DecisionRecord.from_bytes(data).decided_at
    except RecordFormatError:
        return None


def verify_log(
    decisions: Iterable[tuple[int, int, bytes]],
    checkpoints: Iterable[tuple[int, int, bytes]],
    keys: PublicKeys,
) -> AuditReport:
    """Verify ``(partition, offset, value)`` of both audit topics; see `AuditReport`."""
    report = AuditReport()
    verifiers: dict[int, ChainVerifier] = defaultdict(ChainVerifier)
    leaves: dict[str, list[bytes]] = defaultdict(list)
    chain_partitions: dict[str, set[int]] = defaultdict(set)
    first: dict[int, bytes] = {}
    last: dict[int, bytes] = {}
    for partition, offset, data in decisions:
        report.records += 1
        verifiers[partition].feed(offset, data)
        try:
            chain = read_header(data).chain
        except RecordFormatError:
            continue  # reported by the chain verifier
        leaves[chain].append(data)
        chain_partitions[chain].add(partition)
        first.setdefault(partition, data)
        last[partition] = data
    for partition, verifier in verifiers.items():
        report.findings.extend(
            dataclasses.replace(f, topic=DECISIONS_TOPIC, partition=partition)
            for f in verifier.finish()
        )
    for chain, parts in chain_partitions.items():
        if len(parts) > 1:
            report.findings.append(
                Finding(
                    FindingCode.SPLIT_CHAIN,
                    f"records of this chain are in partitions {sorted(parts)}: the router must "
                    "key audit records by chain id",
                    chain=chain,
                    topic=DECISIONS_TOPIC,
                )
            )
    report.records_per_chain = {c: len(v) for c, v in leaves.items()}

    by_chain: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
    where: dict[str, int] = {}
    for partition, offset, data in checkpoints:
        report.checkpoints += 1
        try:
            chain = Checkpoint.from_bytes(data).chain
        except RecordFormatError as exc:
            report.findings.append(
                Finding(
                    FindingCode.UNDECODABLE,
                    str(exc),
                    offset,
                    topic=CHECKPOINTS_TOPIC,
                    partition=partition,
                )
            )
            continue
        # Offsets of one chain's checkpoints are only comparable within one partition.
        by_chain[chain].append((offset, data))
        where[chain] = partition
    for chain, cps in by_chain.items():
        found = verify_checkpoints(cps, leaves.get(chain, []), keys, chain)
        report.findings.extend(
            dataclasses.replace(f, topic=CHECKPOINTS_TOPIC, partition=where[chain]) for f in found
        )
        bad = {f.offset for f in found if f.code in _INVALID_CHECKPOINT}
        covered = max(
            (Checkpoint.from_bytes(d).tree_size for o, d in cps if o not in bad), default=0
        )
        report.unsigned_tail[chain] = max(0, len(leaves.get(chain, [])) - covered)
    for chain, chain_leaves in leaves.items():
        report.unsigned_tail.setdefault(chain, len(chain_leaves))
    firsts = [t for t in map(_decided_at, first.values()) if t is not None]
    lasts = [t for t in map(_decided_at, last.values()) if t is not None]
    report.first_decided_at = min(firsts, default=None)
    report.last_decided_at = max(lasts, default=None)
    report.findings.sort(
        key=lambda f: (f.topic or "", f.partition or 0, -1 if f.offset is None else f.offset)
    )
    return report


_INVALID_CHECKPOINT = {FindingCode.BAD_SIGNATURE, FindingCode.UNKNOWN_KEY, FindingCode.WRONG_CHAIN}
