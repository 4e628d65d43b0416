"""`broker demo`: the end-to-end story on sample data against a local Kafka."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help="run the broker end to end on sample data")
    parser.add_argument("--bootstrap", default=None, help="use this Kafka instead of starting one")
    parser.add_argument("--kafka-ca", type=Path, default=None, metavar="FILE",
                        help="with --bootstrap: the secured cluster's CA certificate")
    parser.add_argument("--kafka-credentials", type=Path, default=None, metavar="DIR",
                        help="with --bootstrap: a directory holding operator.json")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from broker.demo_run import run_demo

    if args.bootstrap and args.kafka_ca and args.kafka_credentials:
        from broker.kafka.local import ClusterAccess

        return run_demo(bootstrap=ClusterAccess(args.bootstrap, args.kafka_ca,
                                                args.kafka_credentials))
    return run_demo(bootstrap=args.bootstrap)
