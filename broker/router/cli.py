"""`broker route`: run the routing service."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from broker.config import load_config
from broker.errors import BrokerError


class RouterFailed(BrokerError):
    """The routing service met an error it cannot handle by itself and stopped."""


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
    try:
        stats = service.run(idle_exit_s=args.idle_exit)
    except BrokerError:
        raise
    except Exception as exc:
        # Whatever the router cannot handle itself: one line naming it and what to do (the
        # traceback only with -v); the open transaction is aborted by the next start.
        if args.verbose:
            logging.getLogger(__name__).exception("the routing service failed")
        raise RouterFailed(_failure(exc, service.instance_id)) from None
    print(
        f"router stopped: {stats.records} record(s) in {stats.batches} transaction(s), "
        f"{stats.forwarded} forward(s), {stats.quarantined} quarantined",
        flush=True,
    )
    return 0


def _failure(exc: Exception, instance: str) -> str:
    """What failed and what to do, in one line (never a record's content)."""
    from kafka.errors import AuthorizationError, FencedInstanceIdError, KafkaError

    name = type(exc).__name__
    if isinstance(exc, FencedInstanceIdError):
        return (
            f"another router runs with instance id {instance} ({name}): give each process its "
            "own --instance (or router.instance_id), then start this one again"
        )
    if isinstance(exc, AuthorizationError):
        from broker.kafka.client import denied

        return str(denied(None, exc, "a request of the routing service"))
    if isinstance(exc, KafkaError):
        return (
            f"Kafka failed in a way the router cannot recover from ({name}): check the "
            "brokers' logs, then start the router again (it goes on from the last commit)"
        )
    return (
        f"the routing service stopped on an internal error ({name}); nothing uncommitted is "
        "lost: run it again with -v for the traceback and report it"
    )
