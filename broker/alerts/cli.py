"""`broker alerts --config C` (run the service), `broker alerts check DIR`,
`broker alerts status --config C`."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "alerts", help="run the alerts service, check alert rules, list open clocks")
    parser.add_argument("--config", type=Path, help="deployment config with an `alerts` section")
    parser.add_argument("--instance", help="instance id (default: alerts.instance_id)")
    parser.add_argument("--idle-exit", type=float, metavar="SECONDS",
                        help="stop after this long without input (tests, drills)")
    parser.add_argument("--clock-file", type=Path, metavar="FILE",
                        help="read the service's time from FILE (an ISO 8601 time; drills and "
                             "tests), instead of the system clock")
    parser.set_defaults(func=_run)
    commands = parser.add_subparsers(dest="alerts_command", metavar="ACTION")

    check = commands.add_parser("check", help="validate a directory of alert rule files")
    check.add_argument("directory", type=Path, metavar="DIR")
    check.set_defaults(func=_check)

    status = commands.add_parser(
        "status", help="open clocks per council and rule (no child ids, no personal values)")
    status.add_argument("--config", type=Path, required=True, dest="status_config")
    status.add_argument("--at", metavar="TIME", help="judge clocks at this time (default: now)")
    status.set_defaults(func=_status)


def _check(args: argparse.Namespace) -> int:
    from broker.agreements.loader import agreement_files
    from broker.alerts.check import check_rules_dir

    problems = check_rules_dir(args.directory)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) found in {args.directory}", file=sys.stderr)
        return 1
    print(f"{args.directory}: {len(agreement_files(args.directory))} alert rule file(s), "
          "no problems")
    return 0


def _run(args: argparse.Namespace) -> int:
    from broker.alerts.service import AlertsService, FileClock
    from broker.config import load_config
    from broker.errors import BrokerError

    if args.config is None:
        raise BrokerError("give --config CONFIG (a deployment config with an `alerts` section)")
    config = load_config(args.config)
    clock = FileClock(args.clock_file) if args.clock_file is not None else None
    service = AlertsService(config, clock=clock, instance_id=args.instance)
    service.install_signal_handlers()
    raised = service.run(idle_exit_s=args.idle_exit)
    print(f"alerts stopped: {raised} alert(s) raised", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    from broker.alerts.check import load_rules
    from broker.alerts.clocks import Engine
    from broker.alerts.service import replay_state, settings_of
    from broker.alerts.state import seal_for
    from broker.config import load_config
    from broker.kafka.client import KafkaClients
    from broker.kafka.credentials import principal_of

    config = load_config(args.status_config)
    settings = settings_of(config)
    at = (datetime.fromisoformat(args.at.replace("Z", "+00:00")) if args.at
          else datetime.now(UTC))
    if at.tzinfo is None:
        from broker.errors import BrokerError

        raise BrokerError("--at needs a time zone (end it with Z)")
    engine = Engine(load_rules(settings.rules_dir), service_id=settings.id)
    clients = KafkaClients(config.kafka, principal_of(settings.id))
    states = replay_state(clients, settings, seal_for(config.alerts_state_secret))
    counts: Counter[tuple[str, str, str]] = Counter()
    next_due: dict[tuple[str, str], datetime] = {}
    for child, state in states.items():
        for clock in engine.clocks(child, state, at):
            counts[(clock.council, clock.rule, clock.state)] += 1
            if clock.state == "running":
                key = (clock.council, clock.rule)
                next_due[key] = min(next_due.get(key, clock.due_at), clock.due_at)
    pairs = sorted({(c, r) for c, r, _ in counts})
    if not pairs:
        print(f"no open alert clocks at {at.isoformat()}")
        return 0
    print(f"open alert clocks at {at.isoformat()} (running: not due yet; overdue: raised, "
          "still not stopped)")
    rows = [("council", "rule", "running", "overdue", "next due")]
    for council, rule in pairs:
        due = next_due.get((council, rule))
        rows.append((council, rule, str(counts[(council, rule, "running")]),
                     str(counts[(council, rule, "overdue")]),
                     due.strftime("%Y-%m-%dT%H:%M:%SZ") if due else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0
