"""What verification reports: one `Finding` per problem, naming where it is and what it is.

Findings are values, not exceptions, so that an auditor sees every problem in a log at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FindingCode(StrEnum):
    """Stable codes for audit findings (used by tooling and tests; never change a meaning)."""

    UNDECODABLE = "undecodable"  # bytes are not an audit record at all
    ALTERED = "altered"  # a record's bytes differ from what its successor chained to
    BROKEN_LINK = "broken_link"  # a link is broken and which side changed cannot be told
    DELETED = "deleted"  # sequence numbers are missing: records were removed
    REORDERED = "reordered"  # a record appears after records that followed it
    DUPLICATE = "duplicate"  # a sequence number appears twice
    BAD_START = "bad_start"  # the first record does not start the chain
    BAD_SIGNATURE = "bad_signature"  # a checkpoint signature does not verify
    UNKNOWN_KEY = "unknown_key"  # no public key for a checkpoint's agency and key id
    ROOT_MISMATCH = "root_mismatch"  # a checkpoint's root is not the root of the records
    HEAD_MISMATCH = "head_mismatch"  # a checkpoint's chain head is not the last record's hash
    BEYOND_LOG = "beyond_log"  # a checkpoint covers more records than the log holds
    CHECKPOINT_LINK = "checkpoint_link"  # a checkpoint does not chain to the previous one
    INCONSISTENT = "inconsistent"  # a checkpoint does not extend the previous one
    WRONG_CHAIN = "wrong_chain"  # a checkpoint or record belongs to another chain
    SPLIT_CHAIN = "split_chain"  # one chain's records are spread over several audit partitions
    UNSIGNED_TAIL = "unsigned_tail"  # records after a chain's last valid signed checkpoint
    # Found by replay (re-reading ingress and re-evaluating the agreements):
    MISMATCH = "decision_mismatch"  # the recorded decision is not what the agreements give
    UNDECIDED = "undecided"  # an ingress record the router has passed has no decision
    NO_INGRESS = "no_ingress"  # a decision names an ingress record that does not exist
    DOUBLE_DECISION = "double_decision"  # one ingress record has several decisions


@dataclass(frozen=True, slots=True)
class Finding:
    """One verification problem: where (topic offset, chain) and what, in words with no values."""

    code: FindingCode
    message: str
    offset: int | None = None
    chain: str | None = None
    topic: str | None = None
    partition: int | None = None

    def __str__(self) -> str:
        where = f"{self.topic or 'offset'}"
        if self.partition is not None:
            where += f"[{self.partition}]"
        where += " offset ?" if self.offset is None else f" offset {self.offset}"
        chain = f" chain {self.chain}" if self.chain is not None else ""
        return f"{where}{chain}: {self.code.value}: {self.message}"


def report_order(finding: Finding) -> tuple[str, int, int]:
    """Sort key of findings in a report: topic, partition, offset (none first)."""
    offset = -1 if finding.offset is None else finding.offset
    return (finding.topic or "", finding.partition or 0, offset)
