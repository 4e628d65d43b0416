"""Whole-log verification and the in-memory benchmark."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from broker.audit.bench import bench_verify, build_log
from broker.audit.findings import FindingCode
from broker.audit.reader import Message
from broker.audit.verify import CHECKPOINTS_TOPIC, DECISIONS_TOPIC, verify_log


def test_clean_log_has_no_findings() -> None:
    decisions, checkpoints, key = build_log(500, chains=3, checkpoint_every=50)
    report = verify_log(decisions, checkpoints, key.public_key())
    assert report.ok, report.findings
    assert report.records == 500
    assert sum(report.records_per_chain.values()) == 500
    assert set(report.unsigned_tail.values()) == {0}
    assert report.first_decided_at is not None and report.last_decided_at is not None
    assert report.first_decided_at < report.last_decided_at


def test_findings_name_topic_partition_and_offset() -> None:
    decisions, checkpoints, key = build_log(200, chains=2, checkpoint_every=25)
    part, off, value = decisions[40]
    decisions[40] = (part, off, value[:-1] + bytes([value[-1] ^ 1]))
    del decisions[100]
    report = verify_log(decisions, checkpoints, key.public_key())
    where = {(f.topic, f.partition, f.offset, f.code) for f in report.findings}
    assert (DECISIONS_TOPIC, 0, 40, FindingCode.ALTERED) in where
    assert (DECISIONS_TOPIC, 0, 102, FindingCode.DELETED) in where
    assert any(f.topic == CHECKPOINTS_TOPIC for f in report.findings)
    assert "audit.decisions[0] offset 40" in str(next(f for f in report.findings if f.offset == 40))


def test_unsigned_tail_is_a_finding() -> None:
    """The router signs every transaction, so records no checkpoint covers fail verification."""
    decisions, checkpoints, key = build_log(100, chains=1, checkpoint_every=30)
    report = verify_log(decisions, checkpoints[:-1], key.public_key())
    assert report.unsigned_tail == {"ingress.council.E09000033/0": 10}
    assert not report.ok
    [finding] = report.findings
    assert finding.code == FindingCode.UNSIGNED_TAIL
    assert (finding.topic, finding.partition, finding.offset) == (DECISIONS_TOPIC, 0, 90)
    assert finding.chain == "ingress.council.E09000033/0"


def test_a_chain_with_no_checkpoint_at_all_is_a_finding() -> None:
    decisions, _, key = build_log(20, chains=2, checkpoint_every=30)
    report = verify_log(decisions, [], key.public_key())
    assert sorted((f.code, f.offset) for f in report.findings) == [
        (FindingCode.UNSIGNED_TAIL, 0),
        (FindingCode.UNSIGNED_TAIL, 1),
    ]


def test_records_covered_only_by_checkpoints_that_fail_are_a_finding() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    decisions, checkpoints, _ = build_log(60, chains=1, checkpoint_every=30)
    report = verify_log(decisions, checkpoints, Ed25519PrivateKey.generate().public_key())
    tails = [f for f in report.findings if f.code == FindingCode.UNSIGNED_TAIL]
    assert [(f.offset, f.chain) for f in tails] == [(0, "ingress.council.E09000033/0")]
    assert report.unsigned_tail == {"ingress.council.E09000033/0": 60}


def test_bench_reports_throughput() -> None:
    figures = bench_verify(2_000)
    assert figures["findings"] == 0
    assert figures["records"] == 2_000
    assert figures["verify_records_per_second"] > 0


class _Reader:
    """Stands in for `TopicReader`: each read of the checkpoints returns the next snapshot."""

    def __init__(self, snapshots: list[list[tuple[int, int, bytes]]]) -> None:
        self.snapshots = snapshots
        self.reads = 0

    def read_topic(self, topic: str) -> Iterator[Message]:
        assert topic == CHECKPOINTS_TOPIC
        snapshot = self.snapshots[min(self.reads, len(self.snapshots) - 1)]
        self.reads += 1
        for partition, offset, value in snapshot:
            yield Message(topic, partition, offset, 0, None, value)


def _verify_args() -> argparse.Namespace:
    return argparse.Namespace(audit_topic=DECISIONS_TOPIC, checkpoints_topic=CHECKPOINTS_TOPIC)


def test_verify_reads_the_checkpoints_again_before_reporting_a_tail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A transaction's decision can be visible a moment before its checkpoint (commit markers
    reach the two topics one after the other): `audit verify` reads the checkpoints again."""
    from broker.audit import cli

    monkeypatch.setattr(cli, "TAIL_REREAD_PAUSE_S", 0.0)
    monkeypatch.setattr(cli, "key_lookup", lambda keys, router: keys)
    decisions, checkpoints, key = build_log(100, chains=1, checkpoint_every=30)
    late = _Reader([checkpoints[:-1], checkpoints])
    report = cli._verify_read(_verify_args(), late, decisions, key.public_key(), "router.main")  # type: ignore[arg-type]
    assert report.ok and late.reads == 2

    # A tail that stays unsigned is reported after the re-reads.
    forged = _Reader([checkpoints[:-1]])
    report = cli._verify_read(_verify_args(), forged, decisions, key.public_key(), "router.main")  # type: ignore[arg-type]
    assert [f.code for f in report.findings] == [FindingCode.UNSIGNED_TAIL]
    assert forged.reads == cli.TAIL_REREADS + 1
