"""`broker agreements check DIR` and `broker agreements explain --agreements DIR --event FILE`."""

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


def _aware_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise argparse.ArgumentTypeError("give an ISO 8601 time with a zone: 2026-11-24T18:05Z")
    return value.astimezone(UTC)

