"""The hash chain of decision records, and its verification.

Chain scope: one chain per **ingress partition** (chain id ``"<ingress topic>/<partition>"``).
Exactly one router instance owns an ingress partition at a time (consumer group assignment, with
transactions fencing zombies), so exactly one writer ever appends to a chain and its head can move
with the partition on a rebalance. A per-audit-partition chain would have several writers as soon as
two routers share the work. The router produces each record with Kafka key = chain id, so all
records of one chain land, in order, in one partition of ``audit.decisions``; one audit partition
interleaves many chains, and verification separates them again by the chain id in each record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from broker.audit.exceptions import AuditError, RecordFormatError
from broker.audit.findings import Finding, FindingCode
from broker.audit.merkle import CompactTree
from broker.audit.record import (
    ZERO_HASH,
    ConditionError,
    DecisionRecord,
    Outcome,
    RecipientDecision,
    read_header,
    record_hash,
)

REORDER_WINDOW = 4096
"""How many recent records per chain verification remembers to recognise reordering."""


def chain_id(ingress_topic: str, partition: int) -> str:
    """The chain id of an ingress partition (also the Kafka key of its audit records)."""
    return f"{ingress_topic}/{partition}"


@dataclass
class ChainState:
    """The writer's state of one chain: next sequence number, head hash and compact Merkle tree.

    Mutable on purpose: the router appends during a transaction. If the transaction aborts, the
    router drops the state and rebuilds it from its changelog (`router.state`), so the head never
    runs ahead of Kafka.
    """

    chain: str
    next_seq: int = 0
    head: bytes = ZERO_HASH
    tree: CompactTree = field(default_factory=CompactTree)

    def __post_init__(self) -> None:
        if self.tree.size != self.next_seq:
            raise ValueError("Merkle tree size must equal the chain's next sequence number")

    def append(
        self,
        *,
        ingress_topic: str,
        ingress_partition: int,
        ingress_offset: int,
        decided_at: datetime,
        outcome: Outcome | str,
        event_id: str | None = None,
        issuer: str | None = None,
        event_type: str | None = None,
        subject: str | None = None,
        occurred_at: datetime | None = None,
        reason: str | None = None,
        digests: Iterable[str] = (),
        recipients: Iterable[RecipientDecision] = (),
        condition_errors: Iterable[ConditionError] = (),
        registry_keys: int | None = None,
        registry_agreements: int | None = None,
    ) -> DecisionRecord:
        """Make the next record of this chain (seq and prev_hash set here) and advance the head."""
        record = DecisionRecord(
            chain=self.chain,
            seq=self.next_seq,
            prev_hash=self.head,
            ingress_topic=ingress_topic,
            ingress_partition=ingress_partition,
            ingress_offset=ingress_offset,
            decided_at=decided_at,
            outcome=Outcome(outcome),
            event_id=event_id,
            issuer=issuer,
            event_type=event_type,
            subject=subject,
            occurred_at=occurred_at,
            reason=reason,
            digests=tuple(digests),
            recipients=tuple(recipients),
            condition_errors=tuple(condition_errors),
            registry_keys=registry_keys,
            registry_agreements=registry_agreements,
        )
        self._advance(record.to_bytes(), record.record_hash)
        return record

    def _advance(self, data: bytes, h: bytes) -> None:
        self.tree.append(data)
        self.head = h
        self.next_seq += 1

    def copy(self) -> ChainState:
        return ChainState(self.chain, self.next_seq, self.head, self.tree.copy())

    def resume(self, records: Iterable[bytes]) -> None:
        """Advance over records already in the log (recovery), refusing any that do not chain."""
        for data in records:
            header = read_header(data)
            if header.chain != self.chain:
                continue
            if header.seq != self.next_seq or header.prev_hash != self.head:
                raise AuditError(
                    f"audit chain {self.chain} does not continue at sequence number "
                    f"{self.next_seq}: run `broker audit verify` before routing"
                )
            self._advance(data, record_hash(data))

    def to_bytes(self) -> bytes:
        """A small JSON snapshot (for a changelog topic): chain, next seq, head, tree frontier."""
        return json.dumps(
            {
                "chain": self.chain,
                "next_seq": self.next_seq,
                "head": self.head.hex(),
                "frontier": [h.hex() for h in self.tree.frontier()],
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ChainState:
        try:
            d = json.loads(data)
            tree = CompactTree.from_frontier(
                d["next_seq"], [bytes.fromhex(h) for h in d["frontier"]]
            )
            head = bytes.fromhex(d["head"])
            if len(head) != 32:
                raise ValueError("head")
            return cls(chain=d["chain"], next_seq=d["next_seq"], head=head, tree=tree)
        except (ValueError, KeyError, TypeError) as exc:
            raise RecordFormatError(f"invalid audit chain state snapshot ({exc})") from None


@dataclass
class _Seen:
    hash: bytes
    offset: int | None


class _ChainCheck:
    """Verification state of one chain; see `ChainVerifier` for what it concludes and why."""

    def __init__(self, chain: str, start_seq: int, start_head: bytes) -> None:
        self.chain = chain
        self.start_seq = start_seq
        self.max_seq = start_seq - 1
        self.seen: dict[int, _Seen] = {start_seq - 1: _Seen(start_head, None)}
        # seq -> (offset where the gap showed, offset of the record before the gap)
        self.missing: dict[int, tuple[int, int | None]] = {}
        # seq -> (hash its successor chained to, successor offset), for seqs not yet seen
        self.want: dict[int, tuple[bytes, int]] = {}
        # A broken link (predecessor offset, this offset) waiting for the next record to tell
        # whether the predecessor's bytes or this record's prev_hash changed.
        self.pending: tuple[int | None, int] | None = None
        self.findings: list[Finding] = []

    def _find(self, code: FindingCode, offset: int | None, message: str) -> None:
        self.findings.append(Finding(code, message, offset, self.chain))

    def _flush_pending(self) -> None:
        if self.pending is None:
            return
        before, this = self.pending
        self.pending = None
        if before is None:
            return
        self._find(
            FindingCode.ALTERED,
            before,
            f"record hash does not match the prev_hash stored in the next record (offset {this})",
        )

    def _link(self, offset: int, seq: int, prev: bytes) -> None:
        """Check the link from seq-1 to this in-order record."""
        pred = self.seen.get(seq - 1)
        if pred is None:
            return
        if prev == pred.hash:
            if self.pending is not None and self.pending[1] == pred.offset:
                self._flush_pending()  # the record before pred changed, pred itself is fine
            return
        if pred.offset is None:
            self._find(
                FindingCode.BAD_START,
                offset,
                f"record {seq} does not link to the chain's start (prev_hash mismatch)",
            )
            return
        if self.pending is not None and self.pending[1] == pred.offset:
            # Links into and out of pred are both broken: pred itself was altered.
            before = self.pending[0]
            self.pending = None
            self._find(
                FindingCode.ALTERED,
                pred.offset,
                f"record neither links to its predecessor (offset {before}) nor is linked to by "
                f"its successor (offset {offset})",
            )
            return
        self._flush_pending()
        self.pending = (pred.offset, offset)

    def feed(self, offset: int, seq: int, prev: bytes, h: bytes) -> None:
        if seq < self.start_seq:
            self._find(
                FindingCode.BAD_START,
                offset,
                f"sequence number {seq} is before the chain's start ({self.start_seq})",
            )
            return
        old = self.seen.get(seq)
        if old is not None:
            same = "an identical copy" if old.hash == h else "different content"
            self._find(
                FindingCode.DUPLICATE,
                offset,
                f"sequence number {seq} already appeared at offset {old.offset} ({same})",
            )
            return
        expected = self.max_seq + 1
        if seq == expected:
            self._link(offset, seq, prev)
        elif seq > expected:
            last = self.seen[self.max_seq]
            if prev == last.hash:
                self._find(
                    FindingCode.ALTERED,
                    offset,
                    f"sequence number {seq} where {expected} was expected, though the record "
                    "links to its predecessor: the sequence number was altered",
                )
                seq = expected
            else:
                if seq - expected > REORDER_WINDOW:
                    self._find(
                        FindingCode.DELETED,
                        offset,
                        f"sequence numbers {expected}..{seq - 1} are missing before this record "
                        f"(after offset {last.offset}): records deleted",
                    )
                else:
                    for s in range(expected, seq):
                        self.missing[s] = (offset, last.offset)
                self.want[seq - 1] = (prev, offset)
        else:
            self._late(offset, seq, prev, h)
            self._remember(offset, seq, h)
            return
        self._remember(offset, seq, h)
        self.max_seq = seq

    def _late(self, offset: int, seq: int, prev: bytes, h: bytes) -> None:
        """A sequence number below the highest seen and not seen before: out of order."""
        last = self.seen.get(self.max_seq)
        if self.missing.pop(seq, None) is None and seq < self.max_seq - REORDER_WINDOW:
            where = "far after its place"
        else:
            where = f"after sequence number {self.max_seq}"
        self._find(
            FindingCode.REORDERED,
            offset,
            f"sequence number {seq} appears {where}"
            + (f" (offset {last.offset})" if last is not None and last.offset is not None else "")
            + ": record out of order",
        )
        pred = self.seen.get(seq - 1)
        if pred is not None and pred.hash != prev:
            self._find(
                FindingCode.BROKEN_LINK,
                offset,
                f"prev_hash does not match the record with sequence number {seq - 1} "
                f"(offset {pred.offset})",
            )
        elif pred is None and seq - 1 in self.missing:
            self.want[seq - 1] = (prev, offset)
        wanted = self.want.pop(seq, None)
        if wanted is not None and wanted[0] != h:
            self._find(
                FindingCode.ALTERED,
                offset,
                f"record hash does not match the prev_hash stored in its successor "
                f"(offset {wanted[1]})",
            )

    def _remember(self, offset: int, seq: int, h: bytes) -> None:
        self.seen[seq] = _Seen(h, offset)
        old = seq - REORDER_WINDOW
        if old in self.seen and old != self.start_seq - 1:
            del self.seen[old]

    def finish(self, unreadable: Sequence[int]) -> list[Finding]:
        if self.pending is not None:
            before, this = self.pending
            self.pending = None
            self._find(
                FindingCode.BROKEN_LINK,
                before,
                f"record hash does not match the prev_hash of the last record (offset {this}): "
                "one of the two was altered",
            )
        # Group missing seqs into runs that showed at the same record.
        runs: list[tuple[int, int, int, int | None]] = []
        for seq in sorted(self.missing):
            at, before = self.missing[seq]
            if runs and runs[-1][1] == seq - 1 and runs[-1][2] == at:
                runs[-1] = (runs[-1][0], seq, at, before)
            else:
                runs.append((seq, seq, at, before))
        for first, last, at, before in runs:
            lo = -1 if before is None else before
            if sum(1 for u in unreadable if lo < u < at) >= last - first + 1:
                continue  # already reported as unreadable records in that range
            self._find(
                FindingCode.DELETED,
                at,
                f"sequence numbers {first}..{last} are missing before this record"
                + (f" (after offset {before})" if before is not None else "")
                + ": records deleted",
            )
        return self.findings


class ChainVerifier:
    """Streaming verification of ``audit.decisions`` records, one audit partition at a time.

    Feed records in offset order. Each record is hashed as stored and only its leading fields
    (chain, seq, prev_hash) are read, so verification is fast. Conclusions per chain:

    * seq runs 0, 1, 2, ... and each prev_hash equals the hash of the record before;
    * a broken link with an intact link after it means the earlier record was **altered**; both
      links around a record broken means that record was altered; a break just before the end of
      the chain cannot be attributed and is a **broken_link**;
    * missing sequence numbers are **deleted** records; a sequence number arriving late is
      **reordered**; one appearing twice is a **duplicate**;
    * records deleted from the end of a chain, and an alteration of a chain's last record, leave
      no trace in the chain: signed checkpoints catch those (`broker.audit.checkpoint`).
    """

    def __init__(self, start: Iterable[ChainState] = ()) -> None:
        self._start = {s.chain: (s.next_seq, s.head) for s in start}
        self._chains: dict[str, _ChainCheck] = {}
        self._unreadable: list[int] = []
        self._findings: list[Finding] = []

    def feed(self, offset: int, data: bytes) -> str | None:
        """Take the next record; return its chain id, or None if it is unreadable (a finding)."""
        try:
            chain, seq, prev = read_header(data)
        except RecordFormatError as exc:
            self._unreadable.append(offset)
            self._findings.append(Finding(FindingCode.UNDECODABLE, str(exc), offset))
            return None
        check = self._chains.get(chain)
        if check is None:
            start_seq, start_head = self._start.get(chain, (0, ZERO_HASH))
            check = self._chains[chain] = _ChainCheck(chain, start_seq, start_head)
        check.feed(offset, seq, prev, record_hash(data))
        return chain

    def finish(self) -> list[Finding]:
        findings = list(self._findings)
        for check in self._chains.values():
            findings.extend(check.finish(self._unreadable))
        findings.sort(key=lambda f: -1 if f.offset is None else f.offset)
        return findings


def verify_chain(
    records: Iterable[tuple[int, bytes]], start: Iterable[ChainState] = ()
) -> list[Finding]:
    """Verify the hash chains in ``(offset, record bytes)`` of one audit partition.

    ``start`` gives trusted chain states to start from (for a log whose beginning was verified
    before); by default every chain must start at sequence number 0 with the zero hash.
    """
    verifier = ChainVerifier(start)
    for offset, data in records:
        verifier.feed(offset, data)
    return verifier.finish()
