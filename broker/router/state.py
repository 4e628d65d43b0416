"""What the router remembers per ingress partition, and how it is kept in Kafka.

State is per ingress partition so that any router instance can take over any partition: the
audit chain head (with its compact Merkle tree), the event ids already routed (de-duplication),
and per-subject relationships from earlier events (guardians appointed, NRM referrers). Every
change is written to the compacted `router.state` topic in the same transaction as the feeds and
the audit record, so a new owner rebuilds exactly the state that matches the committed outputs.

Changelog keys (UTF-8): `c|<chain>` chain snapshot; `k|<chain>` last signed checkpoint;
`b|<chain>|<first ingress offset>` the event ids first routed in one transaction's batch (JSON
list of [issuer, event id]; one record per partition and batch rather than one per event, which
is a quarter of the records the router produces); `s|<chain>|<issuer>|<event id>` one seen event
(the earlier form, still read); `p|<chain>|<subject>` subject relationships (JSON). The subject is
the issuer's opaque reference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from broker.agreements import SubjectContext
from broker.audit.chain import ChainState
from broker.audit.checkpoint import Checkpoint

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


def apply_changelog(states: dict[str, PartitionState], key: bytes, value: bytes | None) -> None:
    """Fold one changelog record into the states of the chains we own (others are skipped)."""
    kind, _, rest = key.decode().partition(SEP)
    chain_id = rest.split(SEP, 1)[0]
    state = states.get(chain_id)
    if state is None:
        return
    if kind == "c" and value is not None:
        state.chain = ChainState.from_bytes(value)
    elif kind == "k" and value is not None:
        state.last_checkpoint = Checkpoint.from_bytes(value)
    elif kind == "b" and value is not None:
        state.seen.update((issuer, event_id) for issuer, event_id in json.loads(value))
    elif kind == "s":
        _, issuer, event_id = rest.split(SEP, 2)
        if value is None:
            state.seen.discard((issuer, event_id))
        else:
            state.seen.add((issuer, event_id))
    elif kind == "p":
        subject = rest.split(SEP, 1)[1]
        if value is None:
            state.subjects.pop(subject, None)
        else:
            raw = json.loads(value)
            state.subjects[subject] = SubjectContext(
                guardians=frozenset(raw["guardians"]),
                nrm_referrers=frozenset(raw["nrm_referrers"]),
            )
