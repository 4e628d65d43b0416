"""`broker agreements check DIR`, `broker agreements explain --agreements DIR --event FILE`, and
the agreement registry: `broker agreements publish|withdraw|list --config CONFIG`."""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `agreements check` and `agreements explain`."""
    parser = subparsers.add_parser("agreements",
                                   help="validate and explain data-sharing agreements")
    commands = parser.add_subparsers(dest="agreements_command", metavar="ACTION", required=True)

    check = commands.add_parser("check", help="validate a directory of agreement files")
    check.add_argument("directory", type=Path, metavar="DIR")
    check.add_argument("--agency", action="append", dest="agencies", metavar="ID",
                       help="a registered agency id (repeat); unknown agencies are then reported")
    check.set_defaults(func=_check)

    show = commands.add_parser("explain", help="show what each recipient would get of an event")
    show.add_argument("--agreements", type=Path, required=True, metavar="DIR")
    show.add_argument("--event", type=Path, required=True, metavar="EVENT.json",
                      help="one event in the EVENTS.md JSON form, with an `issuer` key")
    show.add_argument("--issuer", metavar="ID", help="the issuing agency, if the file has none")
    show.add_argument("--now", type=_aware_time, metavar="TIME",
                      help="decision time, ISO 8601 with zone (default: the current time)")
    show.add_argument("--guardian", action="append", default=[], metavar="ID",
                      help="a guardian service appointed to the subject (repeat)")
    show.add_argument("--nrm-referrer", action="append", default=[], metavar="ID",
                      help="an agency that referred the subject to the NRM (repeat)")
    show.set_defaults(func=_explain)

    publish = commands.add_parser(
        "publish", help="publish agreement versions to registry.agreements (signed)",
        description="Validate FILES (default: every agreement file of agreements_dir) as `check` "
        "does, then publish each as a registry.agreements record signed by the registry "
        "authority. Routers, feeds and auditors following the registry apply a new version "
        "within seconds; it supersedes the lower versions of its id from the later of its "
        "valid_from and its arrival. Nothing is published if any file has a problem.")
    publish.add_argument("--config", required=True, type=Path, help="deployment config")
    publish.add_argument("files", nargs="*", type=Path, metavar="FILE")
    publish.set_defaults(func=_publish)

    withdraw = commands.add_parser(
        "withdraw", help="withdraw an agreement version through the registry",
        description="Publish the withdrawal of ID@VERSION: no disclosure is made under it from "
        "then on (or --at, never earlier than its arrival).")
    withdraw.add_argument("--config", required=True, type=Path, help="deployment config")
    withdraw.add_argument("agreement_id", metavar="ID")
    withdraw.add_argument("version", type=int, metavar="VERSION")
    withdraw.add_argument("--at", type=_aware_time, metavar="TIME",
                          help="ISO 8601 time with zone (default: now)")
    withdraw.set_defaults(func=_withdraw)

    listing = commands.add_parser(
        "list", help="the agreement versions in force: agreements_dir and registry.agreements",
        description="Print the live view of the agreement registry.")
    listing.add_argument("--config", required=True, type=Path, help="deployment config")
    listing.set_defaults(func=_list)


# CEL, pydantic and the schemas are imported only when a command runs: `broker` builds every
# sub-command's parser at start-up.


def _check(args: argparse.Namespace) -> int:
    from broker.agreements.check import check_dir
    from broker.agreements.loader import agreement_files

    directory: Path = args.directory
    problems = check_dir(directory, agencies=args.agencies)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) found in {directory}", file=sys.stderr)
        return 1
    print(f"{directory}: {len(agreement_files(directory))} agreement file(s), no problems")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from rich.console import Console

    from broker.agreements.check import load_agreements
    from broker.agreements.evaluate import SubjectContext
    from broker.agreements.explain import explain, read_event, render
    from broker.schemas import SchemaRegistry

    registry = SchemaRegistry.default()
    agreements = load_agreements(args.agreements, registry)
    event = read_event(args.event, registry, args.issuer)
    context = SubjectContext(guardians=frozenset(args.guardian),
                             nrm_referrers=frozenset(args.nrm_referrer))
    now: datetime = args.now or datetime.now(UTC)
    explanation = explain(agreements, event, now=now, context=context)
    # Not a terminal (a pipe, a test): wide enough that field names are never wrapped.
    width = None if sys.stdout.isatty() else max(200, shutil.get_terminal_size().columns)
    console = Console(width=width)
    render(explanation, agreements, console)
    return 0


def _publish(args: argparse.Namespace) -> int:
    from broker.agreements.loader import agreement_files
    from broker.config import TOPIC_REGISTRY_AGREEMENTS, load_config
    from broker.registry.cli import publish_agreements

    config = load_config(args.config)
    files = args.files or agreement_files(config.agreements_dir)
    records = publish_agreements(config, files)
    for record in records:
        print(f"published {record.key} ({record.kafka_key.decode()})")
    print(f"published {len(records)} agreement version(s) to {TOPIC_REGISTRY_AGREEMENTS}")
    return 0


def _withdraw(args: argparse.Namespace) -> int:
    from broker.config import load_config
    from broker.registry.cli import withdraw_agreement

    config = load_config(args.config)
    record = withdraw_agreement(config, args.agreement_id, args.version, args.at)
    assert record.withdrawn_at is not None
    print(f"withdrew {record.key} at {record.withdrawn_at.isoformat()}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from broker.config import TOPIC_REGISTRY_AGREEMENTS, load_config
    from broker.registry.cli import live_agreements

    config = load_config(args.config)
    live = live_agreements(config)
    now = datetime.now(UTC)
    print(f"{'agreement':<52} {'recipient':<22} {'from':<20} {'until':<20} {'source':<9} state")
    for version in live.agreements.versions():
        a = version.agreement
        until = [t for t in (version.ends, version.revoked_at) if t is not None]
        state = "in force" if version.in_force(now) else (
            "not yet" if now < version.starts else "ended")
        source = "registry" if version.source and str(version.source).startswith(
            TOPIC_REGISTRY_AGREEMENTS) else "file"
        print(f"{a.key:<52} {a.recipient:<22} {_stamp(version.starts):<20} "
              f"{(_stamp(min(until)) if until else '-'):<20} {source:<9} {state}")
    ignored = ", ".join(f"{r} {n}" for r, n in sorted(live.ignored.items())) or "none"
    print(f"{TOPIC_REGISTRY_AGREEMENTS}: position {live.position}, {live.applied} record(s) "
          f"applied, ignored: {ignored}")
    return 0


def _stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _aware_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise argparse.ArgumentTypeError("give an ISO 8601 time with a zone: 2026-11-24T18:05Z")
    return value.astimezone(UTC)

