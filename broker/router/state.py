"""What the router remembers per ingress partition, and how it is kept in Kafka.

State is per ingress partition so that any router instance can take over any partition: the
audit chain head (with its compact Merkle tree), the event ids already routed (de-duplication),
and per-subject relationships from earlier events (guardians appointed, NRM referrers). Every
change is written to the compacted `router.state` topic in the same transaction as the feeds and
the audit record, so a new owner rebuilds exactly the state that matches the committed outputs.

Changelog keys (UTF-8): `c|<chain>` chain snapshot; `k|<chain>` last signed checkpoint;
`b|<chain>|<first ingress offset>` the event ids first routed in one transaction's batch (JSON
list of [issuer, event id]; one record per partition and batch rather than one per event, which
is a quarter of the records the router produces); `p|<chain>|<subject>` subject relationships
(JSON). The subject is the issuer's opaque reference. `s|<chain>|<issuer>|<event id>` one seen
event (an earlier form, no longer written; still read).

Every value is sealed with the router's MAC (`broker.router.changelog`): the functions here build
and read the payloads, and the service seals every record it writes to `router.state`.
`apply_changelog` applies only records that authenticate and are well formed, and reports why it
ignored any other; nothing a record holds can make it raise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from broker.agreements import SubjectContext
from broker.audit.chain import ChainState
from broker.audit.checkpoint import Checkpoint
from broker.router.changelog import ChangelogAuthError, ChangelogSeal, Ignored

SEP = "|"


@dataclass
class PartitionState:
    """The router's memory of one ingress partition (one audit chain)."""

    chain: ChainState
    seen: set[tuple[str, str]] = field(default_factory=set)
    subjects: dict[str, SubjectContext] = field(default_factory=dict)
    last_checkpoint: Checkpoint | None = None

    @property
    def uncheckpointed(self) -> int:
        """Records of the chain no signed checkpoint covers yet."""
        covered = self.last_checkpoint.tree_size if self.last_checkpoint else 0
        return self.chain.next_seq - covered

    @classmethod
    def new(cls, chain_id: str) -> PartitionState:
        return cls(chain=ChainState(chain=chain_id))

    def context(self, subject: str) -> SubjectContext:
        return self.subjects.get(subject) or SubjectContext()


def chain_snapshot(state: PartitionState) -> tuple[bytes, bytes]:
    """The changelog record of a chain's head, written once per partition per transaction."""
    return chain_key(state.chain.chain), state.chain.to_bytes()


def checkpoint_key(chain_id: str) -> bytes:
    return f"k{SEP}{chain_id}".encode()


def chain_key(chain_id: str) -> bytes:
    return f"c{SEP}{chain_id}".encode()


def seen_batch(
    chain_id: str, first_offset: int, seen: list[tuple[str, str]]
) -> tuple[bytes, bytes]:
    """The changelog record of the event ids a batch of one partition routed for the first time."""
    value = json.dumps([list(pair) for pair in seen], separators=(",", ":")).encode()
    return f"b{SEP}{chain_id}{SEP}{first_offset}".encode(), value


def subject_key(chain_id: str, subject: str) -> bytes:
    return SEP.join(("p", chain_id, subject)).encode()


def encode_subject(context: SubjectContext) -> bytes:
    return json.dumps(
        {"guardians": sorted(context.guardians), "nrm_referrers": sorted(context.nrm_referrers)},
        separators=(",", ":"),
    ).encode()


KINDS = frozenset("cbkps")


def apply_changelog(
    states: dict[str, PartitionState],
    key: bytes | None,
    value: bytes | None,
    seal: ChangelogSeal,
    *,
    adopt: dict[bytes, bytes] | None = None,
) -> Ignored | None:
    """Fold one changelog record into the states of the chains we own, if the router wrote it.

    Returns None when the record was applied or belongs to a chain we do not own, else why it
    was ignored. Never raises: a record of any shape is either applied or ignored, so no record
    can stop a router from starting.

    `adopt` (the one-off upgrade from unsealed state, `broker route --adopt-unsealed-state`):
    a well-formed record with no seal is applied as routers before sealing did, and its payload
    is put in `adopt` under its key for the caller to write back sealed.
    """
    try:
        text = key.decode() if key is not None else None
    except UnicodeDecodeError:
        return Ignored.BAD_KEY
    if text is None:
        return Ignored.BAD_KEY
    kind, sep, rest = text.partition(SEP)
    chain_id, _, tail = rest.partition(SEP)
    if kind not in KINDS or not sep or not chain_id:
        return Ignored.BAD_KEY
    state = states.get(chain_id)
    if state is None:
        return None  # another instance's partition: its owner judges it
    assert key is not None
    try:
        opened = seal.open(key, value)
    except ChangelogAuthError as exc:
        if adopt is not None and exc.reason == Ignored.UNAUTHENTICATED and value is not None:
            return _adopt(state, kind, chain_id, tail, key, value, adopt)
        return exc.reason
    try:
        return _apply(state, kind, chain_id, tail, opened.payload)
    except Exception:  # whatever a decoder raises on an authentic but malformed value
        return Ignored.BAD_VALUE


def _adopt(
    state: PartitionState,
    kind: str,
    chain_id: str,
    tail: str,
    key: bytes,
    payload: bytes,
    adopt: dict[bytes, bytes],
) -> Ignored | None:
    try:
        reason = _apply(state, kind, chain_id, tail, payload)
    except Exception:
        return Ignored.BAD_VALUE
    if reason is None:
        adopt[key] = payload
    return reason


def _apply(
    state: PartitionState, kind: str, chain_id: str, tail: str, payload: bytes | None
) -> Ignored | None:
    """Apply one authenticated record; raises ValueError (and the like) on a malformed value."""
    if payload is None:  # a sealed deletion: of a relationship, or of one seen event
        if kind == "p" and tail:
            state.subjects.pop(tail, None)
        elif kind == "s" and SEP in tail:
            issuer, _, event_id = tail.partition(SEP)
            state.seen.discard((issuer, event_id))
        else:
            return Ignored.BAD_VALUE
        return None
    if kind == "c":
        if tail:
            return Ignored.BAD_KEY
        chain = ChainState.from_bytes(payload)
        if chain.chain != chain_id:
            return Ignored.BAD_VALUE
        # Snapshots only move forward: an older authentic one re-sent must not roll back.
        if chain.next_seq < state.chain.next_seq:
            return Ignored.STALE
        state.chain = chain
    elif kind == "k":
        if tail:
            return Ignored.BAD_KEY
        checkpoint = Checkpoint.from_bytes(payload)
        if checkpoint.chain != chain_id:
            return Ignored.BAD_VALUE
        last = state.last_checkpoint
        if last is not None and checkpoint.tree_size < last.tree_size:
            return Ignored.STALE
        state.last_checkpoint = checkpoint
    elif kind == "s":  # one seen event (the earliest form): the ids are in the key
        issuer, sep, event_id = tail.partition(SEP)
        if not sep or not issuer or not event_id:
            return Ignored.BAD_KEY
        state.seen.add((issuer, event_id))
    elif kind == "b":
        if not (tail.isascii() and tail.isdigit()):
            return Ignored.BAD_KEY
        pairs = json.loads(payload)
        if not isinstance(pairs, list) or not all(_is_str_pair(p) for p in pairs):
            return Ignored.BAD_VALUE
        state.seen.update((issuer, event_id) for issuer, event_id in pairs)
    else:  # "p"
        if not tail:
            return Ignored.BAD_KEY
        raw = json.loads(payload)
        if not isinstance(raw, dict) or set(raw) != {"guardians", "nrm_referrers"}:
            return Ignored.BAD_VALUE
        guardians, referrers = raw["guardians"], raw["nrm_referrers"]
        if not _is_str_list(guardians) or not _is_str_list(referrers):
            return Ignored.BAD_VALUE
        state.subjects[tail] = SubjectContext(
            guardians=frozenset(guardians), nrm_referrers=frozenset(referrers)
        )
    return None


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_str_pair(value: object) -> bool:
    return _is_str_list(value) and len(value) == 2  # type: ignore[arg-type]
