"""Authentication of `router.state` records: only what the router sealed is ever applied."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.agreements import SubjectContext
from broker.audit.checkpoint import Checkpoint
from broker.router.changelog import (
    MAGIC,
    TAG_SIZE,
    ChangelogAuthError,
    ChangelogSeal,
    Ignored,
)
from broker.router.state import (
    PartitionState,
    apply_changelog,
    chain_snapshot,
    checkpoint_key,
    encode_subject,
    seen_batch,
    subject_key,
)

CHAIN = "ingress.council.E09000033/0"
OTHER = "ingress.council.E09000033/1"
SEAL = ChangelogSeal.from_secret(b"a long random pseudonym secret for the tests")
FORGER = ChangelogSeal.from_secret(b"someone else's secret")


def _states() -> dict[str, PartitionState]:
    return {CHAIN: PartitionState.new(CHAIN)}


def _apply(
    states: dict[str, PartitionState], key: bytes | None, value: bytes | None
) -> Ignored | None:
    return apply_changelog(states, key, value, SEAL)


def _sealed(key: bytes, payload: bytes, seal: ChangelogSeal = SEAL) -> tuple[bytes, bytes]:
    return key, seal.seal(key, payload)


# -- the seal ------------------------------------------------------------------------------


def test_seal_opens_with_its_key_and_payload() -> None:
    key = b"b|" + CHAIN.encode() + b"|7"
    assert SEAL.open(key, SEAL.seal(key, b"[]")).payload == b"[]"
    assert SEAL.open(key, SEAL.seal_delete(key)).payload is None


def test_key_is_derived_with_hkdf_and_separate_from_the_secret() -> None:
    a = ChangelogSeal.from_secret(b"secret")
    b = ChangelogSeal.from_secret(b"secret")
    assert a.seal(b"k", b"v") == b.seal(b"k", b"v")
    assert a.seal(b"k", b"v") != ChangelogSeal.from_secret(b"secret2").seal(b"k", b"v")
    # Not a MAC keyed with the raw secret itself.
    assert a.seal(b"k", b"v") != ChangelogSeal((b"secret" * 6)[:32]).seal(b"k", b"v")
    with pytest.raises(ValueError):
        ChangelogSeal(b"short")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, Ignored.TOMBSTONE),
        (b"", Ignored.UNAUTHENTICATED),
        (b'{"chain": "x"}', Ignored.UNAUTHENTICATED),
        (MAGIC + b"\x01" + b"x" * (TAG_SIZE - 1), Ignored.UNAUTHENTICATED),  # too short
        (MAGIC + b"\x01[]" + b"\x00" * TAG_SIZE, Ignored.BAD_MAC),
        (MAGIC + b"\x07" + b"\x00" * TAG_SIZE, Ignored.BAD_MAC),  # unknown op
    ],
)
def test_malformed_values_do_not_open(value: bytes | None, reason: Ignored) -> None:
    with pytest.raises(ChangelogAuthError) as caught:
        SEAL.open(b"c|" + CHAIN.encode(), value)
    assert caught.value.reason == reason


def test_the_tag_binds_key_operation_and_payload() -> None:
    key = b"p|" + CHAIN.encode() + b"|child-1"
    value = SEAL.seal(key, b'{"a":1}')
    for other_key, other_value in [
        (b"p|" + CHAIN.encode() + b"|child-2", value),  # moved to another key
        (key, value[:-1] + bytes([value[-1] ^ 1])),  # tag changed
        (key, value[:4] + b"[" + value[5:]),  # payload changed
        (key, MAGIC + b"\x00" + value[-TAG_SIZE:]),  # turned into a deletion
        (key, FORGER.seal(key, b'{"a":1}')),  # sealed with another key
    ]:
        with pytest.raises(ChangelogAuthError) as caught:
            SEAL.open(other_key, other_value)
        assert caught.value.reason == Ignored.BAD_MAC


@settings(max_examples=300, deadline=None)
@given(key=st.binary(max_size=80), payload=st.binary(max_size=80), flip=st.integers(0, 10_000))
def test_any_single_bit_flip_is_refused(key: bytes, payload: bytes, flip: int) -> None:
    value = bytearray(SEAL.seal(key, payload))
    bit = flip % (len(value) * 8)
    value[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ChangelogAuthError):
        SEAL.open(key, bytes(value))


# -- applying records ----------------------------------------------------------------------


def test_authentic_records_of_every_kind_are_applied() -> None:
    source = PartitionState.new(CHAIN)
    source.chain.append(
        ingress_topic="ingress.council.E09000033",
        ingress_partition=0,
        ingress_offset=0,
        decided_at=datetime(2026, 11, 24, tzinfo=UTC),
        outcome="denied",
        reason="no_agreement",
    )
    checkpoint = Checkpoint.for_chain(
        source.chain,
        previous=None,
        issued_at=datetime(2026, 11, 24, tzinfo=UTC),
        private_key=Ed25519PrivateKey.generate(),
        agency="router.main",
        key_id="k1",
    )
    guardian = SubjectContext(guardians=frozenset({"guardian.ictg"}))
    states = _states()
    records = [
        chain_snapshot(source),
        (checkpoint_key(CHAIN), checkpoint.to_bytes()),
        seen_batch(CHAIN, 0, [("council.E09000033", "evt-1")]),
        (subject_key(CHAIN, "child-1"), encode_subject(guardian)),
    ]
    for key, payload in records:
        assert _apply(states, *_sealed(key, payload)) is None
    state = states[CHAIN]
    assert state.chain.next_seq == 1 and state.chain.head == source.chain.head
    assert state.last_checkpoint == checkpoint
    assert set(state.seen) == {("council.E09000033", "evt-1")}
    assert state.context("child-1") == guardian
    # A sealed deletion removes a relationship.
    key = subject_key(CHAIN, "child-1")
    assert _apply(states, key, SEAL.seal_delete(key)) is None
    assert state.context("child-1") == SubjectContext()


def test_unsealed_records_are_ignored_not_applied() -> None:
    """The attacks of issue 13: an injected "already seen" and an injected guardian."""
    states = _states()
    seen_key, seen_value = seen_batch(CHAIN, 99, [("council.E09000033", "evt-real")])
    assert _apply(states, seen_key, seen_value) == Ignored.UNAUTHENTICATED
    guardian = encode_subject(SubjectContext(guardians=frozenset({"guardian.ictg"})))
    assert _apply(states, subject_key(CHAIN, "child-1"), guardian) == Ignored.UNAUTHENTICATED
    # The same, sealed by someone without the router's secret.
    assert _apply(states, *_sealed(seen_key, seen_value, FORGER)) == Ignored.BAD_MAC
    assert _apply(states, *_sealed(subject_key(CHAIN, "child-1"), guardian, FORGER)) == (
        Ignored.BAD_MAC
    )
    state = states[CHAIN]
    assert set(state.seen) == set()
    assert state.subjects == {}


def test_tombstones_are_ignored_even_for_keys_the_router_wrote() -> None:
    states = _states()
    key, value = _sealed(*seen_batch(CHAIN, 0, [("council.E09000033", "evt-1")]))
    assert _apply(states, key, value) is None
    guardian = SubjectContext(guardians=frozenset({"guardian.ictg"}))
    assert _apply(states, *_sealed(subject_key(CHAIN, "c"), encode_subject(guardian))) is None
    assert _apply(states, subject_key(CHAIN, "c"), None) == Ignored.TOMBSTONE
    assert _apply(states, key, None) == Ignored.TOMBSTONE
    # A forged deletion marker is refused too.
    forged = FORGER.seal_delete(subject_key(CHAIN, "c"))
    assert _apply(states, subject_key(CHAIN, "c"), forged) == Ignored.BAD_MAC
    assert states[CHAIN].context("c") == guardian
    assert set(states[CHAIN].seen) == {("council.E09000033", "evt-1")}


@pytest.mark.parametrize(
    "key",
    [
        None,
        b"\xff\xfe|" + CHAIN.encode(),  # not UTF-8
        b"c" + CHAIN.encode(),  # no separator
        b"c|",  # no chain
        b"x|" + CHAIN.encode(),  # no such kind
        b"s|" + CHAIN.encode() + b"|no-event-id",  # the per-event form with one id only
        b"",
    ],
)
def test_bad_keys_are_ignored(key: bytes | None) -> None:
    states = _states()
    value = SEAL.seal(key or b"", b"[]")
    assert _apply(states, key, value) == Ignored.BAD_KEY
    assert set(states[CHAIN].seen) == set()


@pytest.mark.parametrize(
    ("key", "payload"),
    [
        (b"c|" + CHAIN.encode(), b"not json"),
        (b"c|" + CHAIN.encode(), PartitionState.new(OTHER).chain.to_bytes()),  # other chain's
        (b"k|" + CHAIN.encode(), b"\xc3\x01junk"),
        (b"b|" + CHAIN.encode() + b"|0", b'[["only one"]]'),
        (b"b|" + CHAIN.encode() + b"|0", b'{"a": 1}'),
        (b"b|" + CHAIN.encode() + b"|0", b"[" * 100_000 + b"]" * 100_000),  # too deep for json
        (b"b|" + CHAIN.encode() + b"|0", b"\xff\xfe"),
        (b"p|" + CHAIN.encode() + b"|child", b'{"guardians": "guardian.ictg"}'),
        (b"p|" + CHAIN.encode() + b"|child", b'{"guardians": [1], "nrm_referrers": []}'),
        (b"p|" + CHAIN.encode() + b"|child", b"null"),
    ],
)
def test_authentic_but_malformed_values_are_ignored(key: bytes, payload: bytes) -> None:
    states = _states()
    assert _apply(states, *_sealed(key, payload)) == Ignored.BAD_VALUE
    state = states[CHAIN]
    assert state.chain.next_seq == 0 and not state.seen and not state.subjects
    assert state.last_checkpoint is None


def test_an_older_chain_snapshot_does_not_roll_the_chain_back() -> None:
    source = PartitionState.new(CHAIN)
    old = chain_snapshot(source)
    for offset in range(3):
        source.chain.append(
            ingress_topic="ingress.council.E09000033",
            ingress_partition=0,
            ingress_offset=offset,
            decided_at=datetime(2026, 11, 24, tzinfo=UTC),
            outcome="denied",
            reason="no_agreement",
        )
    states = _states()
    assert _apply(states, *_sealed(*chain_snapshot(source))) is None
    assert _apply(states, *_sealed(*old)) == Ignored.STALE
    assert states[CHAIN].chain.next_seq == 3


def test_records_of_chains_we_do_not_own_are_skipped_unjudged() -> None:
    states = _states()
    key, value = seen_batch(OTHER, 0, [("council.E09000033", "evt-1")])
    assert _apply(states, key, value) is None  # its owner judges it
    assert set(states[CHAIN].seen) == set()


@settings(max_examples=500, deadline=None)
@given(key=st.one_of(st.none(), st.binary(max_size=60)), value=st.one_of(st.none(), st.binary()))
def test_no_record_of_any_shape_raises_or_changes_state(
    key: bytes | None, value: bytes | None
) -> None:
    states = _states()
    if key is not None and key[:1] in (b"b", b"c", b"k", b"p"):
        # Aimed at a chain we own, with any rest.
        key = key[:1] + b"|" + CHAIN.encode() + (b"|" + key[1:] if key[1:] else b"")
    reason = _apply(states, key, value)
    assert reason is not None
    state = states[CHAIN]
    assert state.chain.next_seq == 0 and not state.seen and not state.subjects


def test_a_payload_is_json_as_written() -> None:
    key, payload = seen_batch(CHAIN, 3, [("a", "b")])
    assert key == f"b|{CHAIN}|3".encode()
    assert json.loads(payload) == [["a", "b"]]


def test_the_old_per_event_form_applies_only_when_sealed() -> None:
    states = _states()
    key = b"s|" + CHAIN.encode() + b"|council.E09000033|evt-1"
    assert _apply(states, key, b"1") == Ignored.UNAUTHENTICATED
    assert set(states[CHAIN].seen) == set()
    assert _apply(states, *_sealed(key, b"1")) is None
    assert set(states[CHAIN].seen) == {("council.E09000033", "evt-1")}
    assert _apply(states, key, SEAL.seal_delete(key)) is None
    assert set(states[CHAIN].seen) == set()


def test_adoption_applies_well_formed_unsealed_records_and_returns_them_to_seal() -> None:
    """The one-off upgrade (`--adopt-unsealed-state`): state written before sealing is applied
    and handed back to be written sealed; junk and forged seals are still refused."""
    source = PartitionState.new(CHAIN)
    source.chain.append(
        ingress_topic="ingress.council.E09000033",
        ingress_partition=0,
        ingress_offset=0,
        decided_at=datetime(2026, 11, 24, tzinfo=UTC),
        outcome="denied",
        reason="no_agreement",
    )
    legacy = [
        chain_snapshot(source),
        seen_batch(CHAIN, 0, [("council.E09000033", "evt-1")]),
        (b"s|" + CHAIN.encode() + b"|council.E09000033|evt-0", b"1"),
        (subject_key(CHAIN, "c"), encode_subject(SubjectContext(guardians=frozenset({"g.x"})))),
    ]
    states = _states()
    adopted: dict[bytes, bytes] = {}
    for key, value in legacy:
        assert apply_changelog(states, key, value, SEAL, adopt=adopted) is None
    assert adopted == dict(legacy)
    state = states[CHAIN]
    assert state.chain.next_seq == 1
    assert set(state.seen) == {("council.E09000033", "evt-1"), ("council.E09000033", "evt-0")}
    assert state.context("c").guardians == {"g.x"}
    # Still refused while adopting: malformed values, tombstones, other seals, bad keys.
    refused = [
        (b"b|" + CHAIN.encode() + b"|5", b"junk"),
        (b"p|" + CHAIN.encode() + b"|d", None),
        _sealed(subject_key(CHAIN, "e"), encode_subject(SubjectContext()), FORGER),
        (b"\xff|x", b"[]"),
    ]
    for key, value in refused:
        assert apply_changelog(states, key, value, SEAL, adopt=adopted) is not None
    assert adopted == dict(legacy)
