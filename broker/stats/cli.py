"""`broker stats`: the national statistics subscriber's command.

For now it reads the statistics feed as JSON lines (what `broker feed` prints); a Kafka source
will feed the same `StatsState`. With `--snapshot FILE` the state is restored from FILE when it
exists and saved back afterwards, so a run can continue where the last one stopped.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from broker.stats.events import StatsState
from broker.stats.exceptions import StatsError
from broker.stats.measures import Period, compute
from broker.stats.output import write_outputs


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "stats",
        help="national statistics from the statistics feed (CSV, JSON, HTML report)",
        description="Count the official and inquiry measures from the statistics feed, with "
        "disclosure control, and write statistics.csv, statistics.json and report.html.",
    )
    parser.add_argument("--input", type=Path, help="feed events as JSON lines (broker feed output)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the outputs")
    parser.add_argument(
        "--year", type=int, help="reporting year ending 31 March of YEAR (default: latest event's)"
    )
    parser.add_argument("--from", dest="start", type=_date, help="period start, YYYY-MM-DD")
    parser.add_argument("--to", dest="end", type=_date, help="period end (inclusive), YYYY-MM-DD")
    parser.add_argument("--snapshot", type=Path, help="state file to restore from and save to")
    parser.add_argument("--la-names", type=Path, help="CSV of new_la_code,la_name for the report")
    parser.set_defaults(func=run)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def read_feed(path: Path) -> Iterator[dict[str, Any]]:
    """Feed events from a JSON-lines file; errors name the file and line, never the content."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise StatsError(f"cannot read {path}: {exc.strerror}; check the --input path") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                raise StatsError(
                    f"{path}:{number} is not a JSON object; the feed is one event per line"
                ) from None
            if not isinstance(event, dict):
                raise StatsError(f"{path}:{number} is not a JSON object")
            yield event


def read_la_names(path: Path) -> dict[str, str]:
    """`new_la_code,la_name` rows (a header row is allowed)."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = [r for r in csv.reader(handle) if len(r) >= 2]
    except OSError as exc:
        raise StatsError(f"cannot read {path}: {exc.strerror}; check --la-names") from None
    return {code.strip(): name.strip() for code, name, *_ in rows if code != "new_la_code"}


def load_state(path: Path | None) -> StatsState:
    if path is None or not path.exists():
        return StatsState()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise StatsError(
            f"cannot read snapshot {path}; delete it to rebuild from the feed"
        ) from None
    return StatsState.restore(data)


def save_state(state: StatsState, path: Path) -> None:
    """Write the snapshot atomically (a crash leaves the old one intact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".stats-snapshot-")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(state.snapshot(), out)
    os.replace(temporary, path)


def choose_period(args: argparse.Namespace, state: StatsState) -> Period:
    if args.start or args.end:
        if not (args.start and args.end) or args.year:
            raise StatsError("give both --from and --to, or --year, not a mix")
        return Period.between(args.start, args.end)
    if args.year:
        return Period.reporting_year(args.year)
    latest = _latest_event_day(state)
    if latest is None:
        raise StatsError("the feed holds no events to count; give --year or check --input")
    return Period.reporting_year(latest.year + (1 if latest.month >= 4 else 0))


def _latest_event_day(state: StatsState) -> dt.date | None:
    times = [
        t
        for child in state.children.values()
        for t in [
            *(f.at for f in child.episode_facts.values()),
            *(i.since for i in child.incidents.values()),
        ]
    ]
    return max(times).date() if times else None


def run(args: argparse.Namespace) -> int:
    state = load_state(args.snapshot)
    read = 0
    if args.input is not None:
        for event in read_feed(args.input):
            state.apply(event)
            read += 1
    elif args.snapshot is None:
        raise StatsError("nothing to count: give --input FEED.jsonl and/or --snapshot FILE")
    if args.snapshot is not None:
        save_state(state, args.snapshot)
    period = choose_period(args, state)
    names = read_la_names(args.la_names) if args.la_names else None
    paths = write_outputs(compute(state, period), args.out, names)
    rejected = sum(state.rejected.values())
    print(
        f"broker stats: {read} events read, {state.events_applied} counted in total, "
        f"{rejected} rejected; period {period.start} to {period.end}"
    )
    for reason, count in sorted(state.rejected.items()):
        print(f"  rejected {count}: {reason}")
    for kind, path in paths.items():
        print(f"  {kind}: {path}")
    return 1 if state.rejected.get("unverified") else 0
