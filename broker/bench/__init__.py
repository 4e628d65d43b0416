"""Micro-benchmarks of the pure core, run by `broker bench NAME` (never part of pass/fail tests)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def bench_kafka(bootstrap: str | None, data_dir: Path) -> Iterator[str]:
    """`bootstrap` when given; else a single-node local Kafka in `data_dir`, stopped at the end."""
    if bootstrap:
        yield bootstrap
        return
    from broker.kafka.local import LocalKafka

    kafka = LocalKafka(data_dir, nodes=1)
    took = kafka.start()
    print(f"local Kafka ready in {took:.1f} s at {kafka.bootstrap_servers}", flush=True)
    try:
        yield kafka.bootstrap_servers
    finally:
        kafka.stop()
