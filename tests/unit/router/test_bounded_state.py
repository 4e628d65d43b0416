"""The de-duplication window and partition-state snapshots (issue 14, part 7)."""

from __future__ import annotations

import json
import zlib

from broker.agreements import SubjectContext
from broker.dedup import DedupPolicy, DedupWindow
from broker.router.changelog import ChangelogSeal, Ignored
from broker.router.state import (
    SNAPSHOT_PART_BYTES,
    PartitionState,
    apply_changelog,
    snapshot_metadata,
    snapshot_offset,
    snapshot_records,
    window_batch,
)

CHAIN = "ingress.council.E09000033/0"
SEAL = ChangelogSeal.from_secret(b"a long random pseudonym secret for the tests")
FORGER = ChangelogSeal.from_secret(b"someone else's secret")
ISSUER = "council.E09000033"
DAY_MS = 24 * 3600 * 1000


def test_window_forgets_by_count_oldest_first() -> None:
    window = DedupWindow(DedupPolicy(window_s=1e9, max_events=3))
    for n in range(5):
        window.add((ISSUER, f"e{n}"), n, 1000 + n)
    assert list(window) == [(ISSUER, "e2"), (ISSUER, "e3"), (ISSUER, "e4")]
    assert (ISSUER, "e0") not in window


def test_window_forgets_by_receipt_time_of_the_record_checked() -> None:
    window = DedupWindow(DedupPolicy(window_s=86400, max_events=100))
    window.add((ISSUER, "old"), 0, 0)
    window.add((ISSUER, "new"), 1, DAY_MS // 2)
    assert window.expire(DAY_MS) == 0  # exactly a day: still inside
    assert window.expire(DAY_MS + 1) == 1
    assert list(window) == [(ISSUER, "new")]
    assert window.expire(None) == 0  # a record without a time expires nothing


def test_window_keeps_the_first_routing_of_an_event() -> None:
    window = DedupWindow(DedupPolicy(window_s=10, max_events=10))
    window.add((ISSUER, "e"), 5, 1000)
    window.add((ISSUER, "e"), 9, 9000)
    assert list(window.entries()) == [(ISSUER, "e", 5, 1000)]


def _state() -> PartitionState:
    return PartitionState.new(CHAIN, DedupPolicy(window_s=1e9, max_events=1000))


def _apply_all(state: PartitionState, records: list[tuple[bytes, bytes]]) -> list[Ignored | None]:
    states = {CHAIN: state}
    return [apply_changelog(states, k, SEAL.seal(k, v), SEAL) for k, v in records]


def test_snapshot_replaces_the_state_and_the_tail_applies_on_top() -> None:
    source = _state()
    for n in range(50):
        source.seen.add((ISSUER, f"e{n}"), n, 1000 + n)
    source.subjects["child-1"] = SubjectContext(guardians=frozenset({"guardian.ictg"}))
    source.next_offset = 50
    source.batches_since_snapshot = 7
    snapshot = snapshot_records(source)
    assert source.batches_since_snapshot == 0  # the next `w` record takes slot 0
    tail = [window_batch(source, 51, [(ISSUER, "e50", 50, 2000)])]
    assert tail[0][0] == f"w|{CHAIN}|0".encode()

    target = _state()
    target.seen.add((ISSUER, "stale, from before the snapshot"), 0, 0)
    assert _apply_all(target, snapshot + tail) == [None] * (len(snapshot) + 1)
    expected = [*source.seen.entries(), (ISSUER, "e50", 50, 2000)]
    assert list(target.seen.entries()) == expected
    assert (ISSUER, "stale, from before the snapshot") not in target.seen
    assert target.subjects == source.subjects
    assert target.next_offset == 51
    assert target.batches_since_snapshot == 1
    assert target.chain.to_bytes() == source.chain.to_bytes()


def test_a_large_snapshot_is_cut_into_parts_that_reassemble() -> None:
    source = PartitionState.new(CHAIN, DedupPolicy(window_s=1e9, max_events=100_000))
    for n in range(40_000):  # random-looking ids compress badly: several parts
        source.seen.add((ISSUER, zlib.crc32(str(n).encode()).to_bytes(4).hex() * 8), n, n)
    parts = snapshot_records(source)
    assert len(parts) > 1
    assert all(len(value) <= SNAPSHOT_PART_BYTES + 100 for _, value in parts)
    target = PartitionState.new(CHAIN, source.seen.policy)
    assert _apply_all(target, parts) == [None] * len(parts)
    assert len(target.seen) == 40_000


def test_an_unsealed_or_forged_snapshot_is_ignored_and_counted() -> None:
    source = _state()
    source.seen.add((ISSUER, "real"), 0, 0)
    ((key, payload),) = snapshot_records(source)
    target = _state()
    states = {CHAIN: target}
    assert apply_changelog(states, key, payload, SEAL) == Ignored.UNAUTHENTICATED
    assert apply_changelog(states, key, FORGER.seal(key, payload), SEAL) == Ignored.BAD_MAC
    assert len(target.seen) == 0


def test_a_snapshot_missing_a_part_is_not_applied() -> None:
    source = PartitionState.new(CHAIN, DedupPolicy(window_s=1e9, max_events=100_000))
    for n in range(40_000):
        source.seen.add((ISSUER, zlib.crc32(str(n).encode()).to_bytes(4).hex() * 8), n, n)
    parts = snapshot_records(source)
    target = PartitionState.new(CHAIN, source.seen.policy)
    _apply_all(target, parts[:1] + parts[2:])
    assert len(target.seen) == 0


def test_an_authentic_snapshot_of_another_chain_is_refused() -> None:
    other = PartitionState.new("ingress.council.E09000033/1")
    ((_, payload),) = snapshot_records(other)
    key = f"n|{CHAIN}|0".encode()
    head, _, body = payload.partition(b"\n")
    assert _apply_all(_state(), [(key, head + b"\n" + body)]) == [Ignored.BAD_VALUE]
    junk = json.dumps({"id": "x", "part": 0, "parts": 1}).encode() + b"\n" + b"not zlib"
    assert _apply_all(_state(), [(key, junk)]) == [Ignored.BAD_VALUE]


def test_snapshot_metadata_round_trips_and_ignores_foreign_metadata() -> None:
    assert snapshot_offset(snapshot_metadata(1234)) == 1234
    assert snapshot_metadata(None) == ""
    for foreign in ("", None, "rs@", "rs@-1", "rs@12x", "something else"):
        assert snapshot_offset(foreign) is None
