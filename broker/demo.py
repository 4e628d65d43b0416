"""`broker demo`: the end-to-end story on sample data against a local Kafka."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help="run the broker end to end on sample data")
    parser.add_argument("--bootstrap", default=None, help="use this Kafka instead of starting one")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from broker.demo_run import run_demo

    return run_demo(bootstrap=args.bootstrap)
