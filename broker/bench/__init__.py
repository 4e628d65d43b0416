"""Micro-benchmarks of the pure core, run by `broker bench NAME` (never part of pass/fail tests)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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
