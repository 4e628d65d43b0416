"""What the router remembers per ingress partition, and how it is kept in Kafka.

State is per ingress partition so that any router instance can take over any partition: the
audit chain head (with its compact Merkle tree), the event ids routed within the de-duplication
window (`broker.dedup`), the next ingress offset to route, and per-subject relationships from
earlier events (guardians appointed, NRM referrers). Every change is written to the compacted
`router.state` topic in the same transaction as the feeds and the audit record, so a new owner
rebuilds exactly the state that matches the committed outputs.

Changelog keys (UTF-8): `c|<chain>` chain snapshot; `k|<chain>` last signed checkpoint;
`w|<chain>|<slot>` one transaction's batch of the partition: the next ingress offset and the
event ids it routed for the first time (JSON `{"next": n, "seen": [[issuer, event id, offset,
receipt ms], ...]}`); `p|<chain>|<subject>` subject relationships (JSON; the subject is the
issuer's opaque reference); `n|<chain>|<part>` a snapshot of the whole partition state (below).

Snapshots (docs/faults.md, "Bounded state"): every `router.snapshot_every_records` ingress
records the router writes the whole state of each partition it owns, zlib-compressed JSON cut
into parts of at most `SNAPSHOT_PART_BYTES`, inside a routing transaction whose committed
consumer offsets carry, as their metadata, the `router.state` offset of the snapshot's first
part (`snapshot_metadata`). A new owner reads `router.state` from there, not from the
beginning: the snapshot replaces the state and the records after it (the tail) apply on top.
`w` slots count from 0 again after each snapshot, so compaction keeps a bounded number of them.

Earlier forms, no longer written and still read: `b|<chain>|<first ingress offset>` (JSON list
of [issuer, event id]) and `s|<chain>|<issuer>|<event id>` (one seen event); their entries
enter the window at the changelog record's timestamp.

Every value is sealed with the router's MAC (`broker.router.changelog`): the functions here build
and read the payloads, and the service seals every record it writes to `router.state`.
`apply_changelog` applies only records that authenticate and are well formed, and reports why it
ignored any other; nothing a record holds can make it raise.
"""

from __future__ import annotations

import base64
import json
import os
import zlib
from dataclasses import dataclass, field

from broker.agreements import SubjectContext
from broker.audit.chain import ChainState
from broker.audit.checkpoint import Checkpoint
from broker.dedup import DedupPolicy, DedupWindow
from broker.router.changelog import ChangelogAuthError, ChangelogSeal, Ignored

SEP = "|"
# A snapshot part stays well below Kafka's default largest record (1 MiB).
SNAPSHOT_PART_BYTES = 256 * 1024
# Snapshots hold at most this many parts (a safety bound on what a loader assembles).
SNAPSHOT_MAX_PARTS = 64
SNAPSHOT_METADATA_PREFIX = "rs@"


@dataclass
class PartitionState:
    """The router's memory of one ingress partition (one audit chain)."""

    chain: ChainState
    seen: DedupWindow = field(default_factory=DedupWindow)
    subjects: dict[str, SubjectContext] = field(default_factory=dict)
    last_checkpoint: Checkpoint | None = None
    # The next ingress offset to route (None: not known, e.g. state from before it was kept).
    next_offset: int | None = None
    # `router.state` offset of the first part of the latest committed snapshot (from the
    # consumer group's committed metadata); None: none known, a new owner reads from the start.
    snapshot_at: int | None = None
    # The slot of the next `w` record: batches written since the last snapshot.
    batches_since_snapshot: int = 0
    # Parts of a snapshot being read (loader only): its id and the parts so far.
    assembling: tuple[str, list[bytes]] | None = None

    @property
    def uncheckpointed(self) -> int:
        """Records of the chain no signed checkpoint covers yet."""
        covered = self.last_checkpoint.tree_size if self.last_checkpoint else 0
        return self.chain.next_seq - covered

    @classmethod
    def new(cls, chain_id: str, policy: DedupPolicy | None = None) -> PartitionState:
        return cls(chain=ChainState(chain=chain_id), seen=DedupWindow(policy))

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
    """A record of the earlier form `b` (no longer written by the router; still read)."""
    value = json.dumps([list(pair) for pair in seen], separators=(",", ":")).encode()
    return f"b{SEP}{chain_id}{SEP}{first_offset}".encode(), value


def window_batch(
    state: PartitionState, next_offset: int, seen: list[tuple[str, str, int, int]]
) -> tuple[bytes, bytes]:
    """The changelog record of one transaction's batch of a partition: where it ends and the
    events it routed for the first time (issuer, event id, offset, receipt ms). Takes the
    next slot."""
    slot = state.batches_since_snapshot
    state.batches_since_snapshot += 1
    value = json.dumps(
        {"next": next_offset, "seen": [list(entry) for entry in seen]}, separators=(",", ":")
    ).encode()
    return f"w{SEP}{state.chain.chain}{SEP}{slot}".encode(), value


def snapshot_records(state: PartitionState) -> list[tuple[bytes, bytes]]:
    """The changelog records of a snapshot of `state` (its parts, in order). Resets the slots."""
    body = {
        "chain": state.chain.to_bytes().decode(),
        "checkpoint": (
            base64.b64encode(state.last_checkpoint.to_bytes()).decode()
            if state.last_checkpoint
            else None
        ),
        "next": state.next_offset,
        "seen": [list(entry) for entry in state.seen.entries()],
        "subjects": {
            subject: json.loads(encode_subject(context))
            for subject, context in sorted(state.subjects.items())
        },
    }
    packed = zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 6)
    chunks = [
        packed[i : i + SNAPSHOT_PART_BYTES] for i in range(0, len(packed), SNAPSHOT_PART_BYTES)
    ] or [b""]
    if len(chunks) > SNAPSHOT_MAX_PARTS:
        raise ValueError("partition state too large for a snapshot: lower the dedup window")
    snapshot_id = os.urandom(8).hex()
    records = []
    for part, chunk in enumerate(chunks):
        head = json.dumps({"id": snapshot_id, "part": part, "parts": len(chunks)}).encode()
        records.append((f"n{SEP}{state.chain.chain}{SEP}{part}".encode(), head + b"\n" + chunk))
    state.batches_since_snapshot = 0
    return records


def snapshot_metadata(offset: int | None) -> str:
    """The committed-offset metadata naming where a partition's latest snapshot begins."""
    return "" if offset is None else f"{SNAPSHOT_METADATA_PREFIX}{offset}"


def snapshot_offset(metadata: str | None) -> int | None:
    """The `router.state` offset in committed-offset metadata (None: none, or not ours)."""
    if not metadata or not metadata.startswith(SNAPSHOT_METADATA_PREFIX):
        return None
    digits = metadata[len(SNAPSHOT_METADATA_PREFIX) :]
    return int(digits) if digits.isascii() and digits.isdigit() else None


def subject_key(chain_id: str, subject: str) -> bytes:
    return SEP.join(("p", chain_id, subject)).encode()


def encode_subject(context: SubjectContext) -> bytes:
    return json.dumps(
        {"guardians": sorted(context.guardians), "nrm_referrers": sorted(context.nrm_referrers)},
        separators=(",", ":"),
    ).encode()


KINDS = frozenset("cbknpsw")


def apply_changelog(
    states: dict[str, PartitionState],
    key: bytes | None,
    value: bytes | None,
    seal: ChangelogSeal,
    *,
    adopt: dict[bytes, bytes] | None = None,
    timestamp: int | None = None,
) -> Ignored | None:
    """Fold one changelog record into the states of the chains we own, if the router wrote it.

    Returns None when the record was applied or belongs to a chain we do not own, else why it
    was ignored. Never raises: a record of any shape is either applied or ignored, so no record
    can stop a router from starting.

    `adopt` (the one-off upgrade from unsealed state, `broker route --adopt-unsealed-state`):
    a well-formed record with no seal is applied as routers before sealing did, and its payload
    is put in `adopt` under its key for the caller to write back sealed.

    `timestamp` (the record's, ms): when entries of the earlier seen forms enter the window.
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
            return _adopt(state, kind, chain_id, tail, key, value, adopt, timestamp)
        return exc.reason
    try:
        return _apply(state, kind, chain_id, tail, opened.payload, timestamp)
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
    timestamp: int | None,
) -> Ignored | None:
    try:
        reason = _apply(state, kind, chain_id, tail, payload, timestamp)
    except Exception:
        return Ignored.BAD_VALUE
    if reason is None:
        adopt[key] = payload
    return reason


def _apply(
    state: PartitionState,
    kind: str,
    chain_id: str,
    tail: str,
    payload: bytes | None,
    timestamp: int | None = None,
) -> Ignored | None:
    """Apply one authenticated record; raises ValueError (and the like) on a malformed value."""
    legacy_ms = timestamp if timestamp is not None and timestamp >= 0 else 0
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
        state.seen.add((issuer, event_id), -1, legacy_ms)
    elif kind == "b":
        if not (tail.isascii() and tail.isdigit()):
            return Ignored.BAD_KEY
        pairs = json.loads(payload)
        if not isinstance(pairs, list) or not all(_is_str_pair(p) for p in pairs):
            return Ignored.BAD_VALUE
        for issuer, event_id in pairs:
            state.seen.add((issuer, event_id), -1, legacy_ms)
    elif kind == "w":
        if not (tail.isascii() and tail.isdigit()):
            return Ignored.BAD_KEY
        raw = json.loads(payload)
        if not isinstance(raw, dict) or set(raw) != {"next", "seen"}:
            return Ignored.BAD_VALUE
        entries = raw["seen"]
        if not _is_int(raw["next"]) or not isinstance(entries, list):
            return Ignored.BAD_VALUE
        if not all(_is_entry(e) for e in entries):
            return Ignored.BAD_VALUE
        for issuer, event_id, offset, received in entries:
            state.seen.add((issuer, event_id), offset, received)
        state.next_offset = max(state.next_offset or 0, raw["next"])
        state.batches_since_snapshot = max(state.batches_since_snapshot, int(tail) + 1)
    elif kind == "n":
        return _apply_snapshot_part(state, chain_id, tail, payload)
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


def _apply_snapshot_part(
    state: PartitionState, chain_id: str, tail: str, payload: bytes
) -> Ignored | None:
    """Collect a snapshot's parts; with the last one, replace the state by the snapshot.

    A part that does not continue the snapshot being read (a part left by an older, longer
    snapshot that compaction kept) is skipped: the latest snapshot is whole after it."""
    if not (tail.isascii() and tail.isdigit()):
        return Ignored.BAD_KEY
    head_bytes, newline, chunk = payload.partition(b"\n")
    if not newline:
        return Ignored.BAD_VALUE
    head = json.loads(head_bytes)
    if not isinstance(head, dict) or set(head) != {"id", "part", "parts"}:
        return Ignored.BAD_VALUE
    snapshot_id, part, parts = head["id"], head["part"], head["parts"]
    if not isinstance(snapshot_id, str) or not _is_int(part) or not _is_int(parts):
        return Ignored.BAD_VALUE
    if part != int(tail) or not 0 <= part < parts <= SNAPSHOT_MAX_PARTS:
        return Ignored.BAD_VALUE
    if part == 0:
        state.assembling = (snapshot_id, [chunk])
    elif state.assembling and state.assembling[0] == snapshot_id:
        if len(state.assembling[1]) != part:
            state.assembling = None
            return None
        state.assembling[1].append(chunk)
    else:
        return None
    assert state.assembling is not None
    if part + 1 < parts:
        return None
    packed = b"".join(state.assembling[1])
    state.assembling = None
    return _replace_by_snapshot(state, chain_id, packed)


def _replace_by_snapshot(state: PartitionState, chain_id: str, packed: bytes) -> Ignored | None:
    body = json.loads(zlib.decompress(packed))
    if not isinstance(body, dict) or set(body) != {
        "chain",
        "checkpoint",
        "next",
        "seen",
        "subjects",
    }:
        return Ignored.BAD_VALUE
    chain = ChainState.from_bytes(body["chain"].encode())
    if chain.chain != chain_id:
        return Ignored.BAD_VALUE
    if chain.next_seq < state.chain.next_seq:
        return Ignored.STALE
    checkpoint = (
        Checkpoint.from_bytes(base64.b64decode(body["checkpoint"], validate=True))
        if body["checkpoint"] is not None
        else None
    )
    if checkpoint is not None and checkpoint.chain != chain_id:
        return Ignored.BAD_VALUE
    entries, subjects, next_offset = body["seen"], body["subjects"], body["next"]
    if not isinstance(entries, list) or not all(_is_entry(e) for e in entries):
        return Ignored.BAD_VALUE
    if next_offset is not None and not _is_int(next_offset):
        return Ignored.BAD_VALUE
    if not isinstance(subjects, dict):
        return Ignored.BAD_VALUE
    contexts: dict[str, SubjectContext] = {}
    for subject, raw in subjects.items():
        if not isinstance(raw, dict) or set(raw) != {"guardians", "nrm_referrers"}:
            return Ignored.BAD_VALUE
        if not _is_str_list(raw["guardians"]) or not _is_str_list(raw["nrm_referrers"]):
            return Ignored.BAD_VALUE
        contexts[subject] = SubjectContext(
            guardians=frozenset(raw["guardians"]), nrm_referrers=frozenset(raw["nrm_referrers"])
        )
    seen = DedupWindow(state.seen.policy)
    for issuer, event_id, offset, received in entries:
        seen.add((issuer, event_id), offset, received)
    state.chain = chain
    state.last_checkpoint = checkpoint
    state.next_offset = next_offset
    state.seen = seen
    state.subjects = contexts
    state.batches_since_snapshot = 0
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= -1


def _is_entry(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and isinstance(value[0], str)
        and isinstance(value[1], str)
        and _is_int(value[2])
        and _is_int(value[3])
    )


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_str_pair(value: object) -> bool:
    return _is_str_list(value) and len(value) == 2  # type: ignore[arg-type]
