"""The `broker` command: one entry point, one sub-command module per concern.

Each module listed in `COMMANDS` exposes `register(subparsers)`, which adds its parser and sets
`func` to a callable taking the parsed namespace and returning an exit status.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from broker.errors import BrokerError

# Sub-command modules, imported lazily so that `broker kafka` does not pay for Avro or CEL.
COMMANDS: tuple[str, ...] = (
    "broker.kafka.cli",
    "broker.publish",
    "broker.router.cli",
    "broker.feed",
    "broker.agreements.cli",
    "broker.envelope.cli",
    "broker.bench.cli",
    "broker.stats.cli",
    "broker.demo",
    "broker.audit.cli",
    "broker.ops.cli",
    "broker.alerts.cli",
    "connectors.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="broker",
        description="Inter-agency safeguarding event broker.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from broker.kafka.logs import redact_kafka_logs

    redact_kafka_logs()  # before any Kafka client exists: no record bytes in any log line
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # kafka-python logs transient connection noise at ERROR (e.g. on close); the broker
        # reports every Kafka failure that matters itself, as one clear line.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        from broker.kafka.client import keep_bootstrap_failures

        keep_bootstrap_failures()
    try:
        status: int = args.func(args)
    except BrokerError as exc:
        print(f"broker {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"broker {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from kafka.errors import AuthorizationError

        if not isinstance(exc, AuthorizationError):
            raise
        from broker.kafka.client import denied

        print(f"broker {args.command}: error: {denied(None, exc, 'this request')}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
