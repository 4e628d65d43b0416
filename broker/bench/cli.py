"""`broker bench NAME`: one sub-command per benchmark module.

Each module in `BENCHMARKS` exposes `add_arguments(parser)` and `run(args) -> int`; it is
imported only when its benchmark is run or its options are listed.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

# name -> module; add a line here to add a benchmark.
BENCHMARKS: dict[str, str] = {
    "envelope": "broker.bench.envelope",
    "agreements": "broker.bench.agreements",
    "router": "broker.bench.router",
    "scale": "broker.bench.scale",
    "audit": "broker.bench.audit",
    "ssda903": "broker.bench.ssda903_publish",
    "alerts": "broker.bench.alerts",
    "takeover": "broker.bench.takeover",
}


def register(subparsers: Any) -> None:
    """Add `bench` and one sub-command per benchmark."""
    parser = subparsers.add_parser("bench", help="measure per-event costs of the pure core")
    benches = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        sub = benches.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(sub)
        sub.set_defaults(func=_runner(module_name))


def _runner(module_name: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        status: int = importlib.import_module(module_name).run(args)
        return status

    return run
