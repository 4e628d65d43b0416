"""Micro-benchmarks of the pure core, run by `broker bench NAME` (never part of pass/fail tests)."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from broker.kafka.local import ClusterAccess


@contextlib.contextmanager
def bench_kafka(
    external: str | ClusterAccess | None, data_dir: Path, *, secure: bool = True
) -> Iterator[ClusterAccess]:
    """`external` when given (a bare address is a PLAINTEXT cluster; a `ClusterAccess` may be
    a secured one); else a single-node local Kafka in `data_dir`, secured unless
    `secure=False`, stopped at the end."""
    if external:
        yield external if isinstance(external, ClusterAccess) else ClusterAccess(external)
        return
    from broker.kafka.local import LocalKafka

    kafka = LocalKafka(data_dir, nodes=1, secure=secure)
    took = kafka.start()
    mode = "secured" if secure else "plaintext"
    print(f"local Kafka ({mode}) ready in {took:.1f} s at {kafka.bootstrap_servers}", flush=True)
    try:
        yield kafka.access()
    finally:
        kafka.stop()


def interleaved_costs(
    actions: Mapping[str, Callable[[], object]], calls: int, repeat: int, *, warm_up: int = 200
) -> list[dict[str, float]]:
    """CPU µs per call of each action, in `repeat` rounds of `calls` calls that interleave the
    actions, after `warm_up` calls of each. CPU time of this thread: unlike wall clock, hardly
    moved by other processes; interleaving makes a change in the machine's load fall on all the
    actions of a round alike, so ratios are best taken per round."""
    for action in actions.values():
        for _ in range(min(warm_up, calls)):
            action()
    rounds = []
    for _ in range(repeat):
        costs = {}
        for label, action in actions.items():
            begin = time.thread_time()
            for _ in range(calls):
                action()
            costs[label] = (time.thread_time() - begin) / calls * 1e6
        rounds.append(costs)
    return rounds


def median_costs(rounds: list[dict[str, float]]) -> dict[str, float]:
    """The median over rounds of each action's cost (`interleaved_costs`)."""
    return {label: statistics.median(r[label] for r in rounds) for label in rounds[0]}
