"""The de-duplication window: which (issuer, event id) pairs count as already routed.

One window per ingress partition, kept by the router (`broker.router.state.PartitionState`)
and rebuilt identically by audit replay (`broker.audit.replay`), so both judge a re-sent event
the same way. An entry is remembered from the ingress record that first routed the event and
forgotten when either bound passes (docs/faults.md, "Bounded state"):

- time: the entry's receipt time (the ingress record's Kafka timestamp, which the broker sets)
  is more than `window_s` before the receipt time of the record being checked;
- count: more than `max_events` entries are held; the oldest go first.

Both bounds depend only on the ingress records in offset order and their timestamps, never on a
clock or on when the router restarted, so a router that rebuilt its state and a replay from the
first offset keep the same entries. An event re-published after it left the window is routed
again as a new event. Re-delivery of an ingress record already routed (the same offset) is not
this window's business: the committed consumer offset, and `PartitionState.next_offset`, keep
the router from routing an offset twice.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# A week and ten thousand events per ingress partition (docs/faults.md, "Bounded state").
DEFAULT_WINDOW_S = 7 * 24 * 3600.0
DEFAULT_MAX_EVENTS = 10_000

Pair = tuple[str, str]


@dataclass(frozen=True)
class DedupPolicy:
    """The window's two bounds (`router.dedup_window_s`, `router.dedup_window_events`)."""

    window_s: float = DEFAULT_WINDOW_S
    max_events: int = DEFAULT_MAX_EVENTS


class DedupWindow:
    """(issuer, event id) pairs routed recently, oldest first, each with the ingress offset and
    receipt time (ms since the epoch) of the record that routed it."""

    def __init__(self, policy: DedupPolicy | None = None) -> None:
        self.policy = policy or DedupPolicy()
        self._entries: OrderedDict[Pair, tuple[int, int]] = OrderedDict()

    def __contains__(self, pair: object) -> bool:
        return pair in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Pair]:
        return iter(self._entries)

    def entries(self) -> Iterable[tuple[str, str, int, int]]:
        """(issuer, event id, offset, receipt ms), oldest first: what a snapshot stores."""
        return ((i, e, o, t) for (i, e), (o, t) in self._entries.items())

    def expire(self, now_ms: int | None) -> int:
        """Forget the entries received more than the window before `now_ms` (the receipt time
        of the record about to be checked); None: a record without a time expires nothing."""
        if now_ms is None:
            return 0
        cutoff = now_ms - int(self.policy.window_s * 1000)
        dropped = 0
        while self._entries:
            pair, (_, received) = next(iter(self._entries.items()))
            if received >= cutoff:
                break
            del self._entries[pair]
            dropped += 1
        return dropped

    def add(self, pair: Pair, offset: int, received_ms: int) -> None:
        """Remember a pair first routed by the record at `offset`, keeping at most the count."""
        if pair in self._entries:
            return  # the first routing is what the window counts from
        self._entries[pair] = (offset, received_ms)
        while len(self._entries) > self.policy.max_events:
            self._entries.popitem(last=False)

    def discard(self, pair: Pair) -> None:
        self._entries.pop(pair, None)
