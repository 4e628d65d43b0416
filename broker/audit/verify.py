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
from broker.audit.findings import Finding, FindingCode, report_order
from broker.audit.record import DecisionRecord
from broker.config import TOPIC_AUDIT as DECISIONS_TOPIC
from broker.config import TOPIC_CHECKPOINTS as CHECKPOINTS_TOPIC


@dataclass
class AuditReport:
    """Summary of a verification run and its findings (empty findings: the log verifies)."""

    records: int = 0
    checkpoints: int = 0
    records_per_chain: dict[str, int] = field(default_factory=dict)
    unsigned_tail: dict[str, int] = field(default_factory=dict)
    """Per chain, records after its last valid checkpoint (covered by no signature): each such
    chain is also an `unsigned_tail` finding, since the router signs every transaction."""
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
    *,
    decisions_topic: str = DECISIONS_TOPIC,
    checkpoints_topic: str = CHECKPOINTS_TOPIC,
) -> AuditReport:
    """Verify ``(partition, offset, value)`` of both audit topics; see `AuditReport`.

    Findings name the topics as ``decisions_topic`` and ``checkpoints_topic`` (the topics read).
    """
    report = AuditReport()
    verifiers: dict[int, ChainVerifier] = defaultdict(ChainVerifier)
    leaves: dict[str, list[bytes]] = defaultdict(list)
    where_leaf: dict[str, list[tuple[int, int]]] = defaultdict(list)  # (partition, offset)
    chain_partitions: dict[str, set[int]] = defaultdict(set)
    first: dict[int, bytes] = {}
    last: dict[int, bytes] = {}
    for partition, offset, data in decisions:
        report.records += 1
        chain = verifiers[partition].feed(offset, data)
        if chain is None:
            continue  # reported by the chain verifier
        leaves[chain].append(data)
        where_leaf[chain].append((partition, offset))
        chain_partitions[chain].add(partition)
        first.setdefault(partition, data)
        last[partition] = data
    for partition, verifier in verifiers.items():
        report.findings.extend(
            dataclasses.replace(f, topic=decisions_topic, partition=partition)
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
                    topic=decisions_topic,
                )
            )
    report.records_per_chain = {c: len(v) for c, v in leaves.items()}

    by_chain: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
    sizes: dict[str, list[tuple[int, int]]] = defaultdict(list)  # (offset, tree size) per chain
    where: dict[str, int] = {}
    for partition, offset, data in checkpoints:
        report.checkpoints += 1
        try:
            cp = Checkpoint.from_bytes(data)
        except RecordFormatError as exc:
            report.findings.append(
                Finding(
                    FindingCode.UNDECODABLE,
                    str(exc),
                    offset,
                    topic=checkpoints_topic,
                    partition=partition,
                )
            )
            continue
        # Offsets of one chain's checkpoints are only comparable within one partition.
        by_chain[cp.chain].append((offset, data))
        sizes[cp.chain].append((offset, cp.tree_size))
        where[cp.chain] = partition
    for chain, cps in by_chain.items():
        found = verify_checkpoints(cps, leaves.get(chain, []), keys, chain)
        report.findings.extend(
            dataclasses.replace(f, topic=checkpoints_topic, partition=where[chain]) for f in found
        )
        bad = {f.offset for f in found if f.code in _INVALID_CHECKPOINT}
        covered = max((n for o, n in sizes[chain] if o not in bad), default=0)
        report.unsigned_tail[chain] = max(0, len(leaves.get(chain, [])) - covered)
    for chain, chain_leaves in leaves.items():
        report.unsigned_tail.setdefault(chain, len(chain_leaves))
    for chain, tail in report.unsigned_tail.items():
        if tail:
            report.findings.append(_unsigned_tail(chain, tail, where_leaf[chain], decisions_topic))
    firsts = [t for t in map(_decided_at, first.values()) if t is not None]
    lasts = [t for t in map(_decided_at, last.values()) if t is not None]
    report.first_decided_at = min(firsts, default=None)
    report.last_decided_at = max(lasts, default=None)
    report.findings.sort(key=report_order)
    return report


def _unsigned_tail(
    chain: str, tail: int, where: list[tuple[int, int]], topic: str
) -> Finding:
    """The finding for the last `tail` records of a chain, which no valid checkpoint covers.

    The router ends every routing transaction with a signed checkpoint of each chain it
    appended to, and a `read_committed` reader sees both together; so a record no signature
    covers was not committed by the router, or its checkpoint was removed. A well-linked record
    appended by anyone who can write to the topic looks exactly like this.
    """
    partition, offset = where[len(where) - tail]
    return Finding(
        FindingCode.UNSIGNED_TAIL,
        f"the chain's last {tail} record(s), from this one on, are covered by no valid signed "
        "checkpoint: the router signs each transaction's records, so these were not committed "
        "by it (or their checkpoint is missing)",
        offset,
        chain=chain,
        topic=topic,
        partition=partition,
    )


_INVALID_CHECKPOINT = {FindingCode.BAD_SIGNATURE, FindingCode.UNKNOWN_KEY, FindingCode.WRONG_CHAIN}
