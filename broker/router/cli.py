"""`broker route`: run the routing service."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from broker.config import load_config


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("route", help="run the routing service (until SIGTERM/SIGINT)")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument(
        "--instance", default=None, help="instance id (stable per process; default from config)"
    )
    parser.add_argument(
        "--idle-exit", type=float, default=None, help="stop after this many idle seconds"
    )
    parser.add_argument(
        "--adopt-unsealed-state",
        action="store_true",
        help="one-off upgrade: apply router.state records written before they were sealed, "
        "and write them back sealed (see docs/audit.md, Router state)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from broker.router.service import RouterService

    logging.getLogger("broker").setLevel(logging.INFO)
    config = load_config(args.config)
    service = RouterService(
        config, instance_id=args.instance, adopt_unsealed_state=args.adopt_unsealed_state
    )
    service.install_signal_handlers()
    print(f"router {service.instance_id} starting (group {config.router.group_id})", flush=True)
    stats = service.run(idle_exit_s=args.idle_exit)
    print(
        f"router stopped: {stats.records} record(s) in {stats.batches} transaction(s), "
        f"{stats.forwarded} forward(s), {stats.quarantined} quarantined",
        flush=True,
    )
    return 0
