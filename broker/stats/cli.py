"""`broker stats`: the national statistics subscriber's command.

Two sources feed the same `StatsState`: the agency's Kafka feed (`--config`, verified with
`FeedReader`; the feed position is saved with the state in the output directory, so a restart
continues where the last run stopped, `--rebuild` recounts from the feed's beginning and
`--follow` keeps counting as events arrive), or a JSON-lines file of what `broker feed` prints
(`--input`, with an optional `--snapshot` to continue across runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from broker.scaffold import REPO_ROOT
from broker.stats.events import StatsState
from broker.stats.exceptions import StatsError
from broker.stats.measures import Categories, Period, compute
from broker.stats.output import Council, read_la_lookup, write_outputs

STATS_AGENCY = "stats.national"
# The state (facts and feed position) kept beside the outputs in Kafka mode.
SNAPSHOT_NAME = "stats-state.json"
# Reporting years per run: the latest and four before it, as the department publishes.
REPORTING_YEARS = 5
# The department's council lookup beside the project (see --la-lookup).
DEFAULT_LA_LOOKUP = REPO_ROOT.parent / "shared" / "domain" / "la_lookup.csv"
# With --follow, while events keep arriving, the outputs are rewritten at most this often.
FOLLOW_WRITE_EVERY_S = 30.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "stats",
        help="national statistics from the statistics feed (CSV, JSON, HTML report)",
        description="Count the official and inquiry measures from the statistics feed, with "
        "disclosure control, and write statistics.csv (the education department's layout, five "
        "reporting years), breakdowns.csv, inquiry.csv, nrm.csv, statistics.json and report.html.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--config", type=Path, help="deployment config: read the agency's feed from Kafka"
    )
    source.add_argument("--input", type=Path, help="feed events as JSON lines (broker feed output)")
    parser.add_argument(
        "--agency", default=STATS_AGENCY, help=f"subscriber whose feed to count ({STATS_AGENCY})"
    )
    parser.add_argument("--out", type=Path, required=True, help="directory for the outputs")
    parser.add_argument(
        "--follow",
        action="store_true",
        help="with --config: keep counting as events arrive, rewriting the outputs (stop: Ctrl-C)",
    )
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="with --config: ignore the saved state and recount from the feed's beginning",
    )
    parser.add_argument(
        "--year",
        type=int,
        help="latest reporting year, ending 31 March of YEAR (default: the latest event's); "
        "the four years before it are published too, revised",
    )
    parser.add_argument(
        "--years",
        type=int,
        default=REPORTING_YEARS,
        help=f"how many reporting years to publish, ending with --year ({REPORTING_YEARS})",
    )
    parser.add_argument(
        "--from", dest="start", type=_date, help="one custom period instead: start, YYYY-MM-DD"
    )
    parser.add_argument("--to", dest="end", type=_date, help="period end (inclusive), YYYY-MM-DD")
    parser.add_argument(
        "--snapshot",
        type=Path,
        help=f"state file to restore from and save to (with --config: OUT/{SNAPSHOT_NAME})",
    )
    parser.add_argument(
        "--la-lookup",
        type=Path,
        help="council lookup CSV (region_code,region_name,old_la_code,la_name,new_la_code), "
        f"as the department publishes it (default: {DEFAULT_LA_LOOKUP} when present)",
    )
    parser.add_argument("--council", help="ONS code of the council the report opens on")
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


def la_lookup(args: argparse.Namespace) -> dict[str, Council]:
    """The council lookup given, else the default one if it is there, else none."""
    if args.la_lookup is not None:
        return read_la_lookup(args.la_lookup)
    if DEFAULT_LA_LOOKUP.is_file():
        return read_la_lookup(DEFAULT_LA_LOOKUP)
    return {}


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


def choose_periods(args: argparse.Namespace, state: StatsState) -> list[Period]:
    """The reporting years to publish, oldest first (or the one custom period asked for)."""
    if args.start or args.end:
        if not (args.start and args.end) or args.year:
            raise StatsError("give both --from and --to, or --year, not a mix")
        return [Period.between(args.start, args.end)]
    if args.years < 1:
        raise StatsError("--years must be at least 1")
    if args.year:
        return Period.reporting_years(args.year, args.years)
    latest = _latest_event_day(state)
    if latest is None:
        raise StatsError("the feed holds no events to count; give --year or check --input")
    return Period.reporting_years(latest.year + (1 if latest.month >= 4 else 0), args.years)


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
    if (args.follow or args.rebuild) and args.config is None:
        raise StatsError("--follow and --rebuild read the Kafka feed: give --config CONFIG")
    if args.config is not None:
        return run_kafka(args)
    state = load_state(args.snapshot)
    read = 0
    if args.input is not None:
        for event in read_feed(args.input):
            state.apply(event)
            read += 1
    elif args.snapshot is None:
        raise StatsError(
            "nothing to count: give --config CONFIG (the Kafka feed), --input FEED.jsonl "
            "and/or --snapshot FILE"
        )
    if args.snapshot is not None:
        save_state(state, args.snapshot)
    report(state, read, publish(args, state))
    return 1 if state.rejected.get("unverified") else 0


def publish(
    args: argparse.Namespace, state: StatsState
) -> tuple[list[Period], dict[str, Path], list[str]]:
    """Compute the measures for the periods asked and write the outputs."""
    periods = choose_periods(args, state)
    lookup = la_lookup(args)
    categories = Categories.of(state)
    years = [compute(state, period, categories) for period in periods]
    paths = write_outputs(years, args.out, state, lookup, args.council)
    named = [
        f"{lookup[c].la_name} ({c})" if c in lookup else f"{c} (not in the council lookup)"
        for c in sorted(state.councils)
    ]
    return periods, paths, named


def report(
    state: StatsState, read: int, written: tuple[list[Period], dict[str, Path], list[str]]
) -> None:
    periods, paths, councils = written
    rejected = sum(state.rejected.values())
    shown = ", ".join(councils[:5]) + (
        f" and {len(councils) - 5} more" if len(councils) > 5 else ""
    )
    print(
        f"broker stats: {read} events read, {state.events_applied} counted in total, "
        f"{rejected} rejected; {len(periods)} period(s), {periods[0].start} to {periods[-1].end}"
    )
    print(f"  councils: {shown or 'none'}")
    for reason, count in sorted(state.rejected.items()):
        print(f"  rejected {count}: {reason}")
    for kind, path in paths.items():
        print(f"  {kind}: {path}")
    print(f"HTML report: {paths['html'].resolve()}", flush=True)


def run_kafka(args: argparse.Namespace) -> int:
    """Count the agency's Kafka feed from the saved position (or its beginning).

    Without `--follow`: read to the feed's current end, save, write the outputs. With it: keep
    reading; the state is saved and the outputs rewritten whenever the feed goes quiet, and at
    most every `FOLLOW_WRITE_EVERY_S` while events keep coming, and once more on stopping.
    """
    from broker.config import load_config
    from broker.stats.source import KafkaFeedSource

    config = load_config(args.config)
    snapshot: Path = args.snapshot or args.out / SNAPSHOT_NAME
    state = StatsState() if args.rebuild else load_state(snapshot)
    if state.events_applied and not state.position:
        raise StatsError(
            f"the snapshot {snapshot} was made from --input, not from the Kafka feed; "
            "give --rebuild to recount from the feed's beginning, or another --snapshot"
        )
    stop = threading.Event()
    if args.follow:
        _stop_on_signals(stop)
    source = KafkaFeedSource(config, args.agency, position=state.position)
    read = 0  # records read since the outputs were last written
    last_write = time.monotonic()
    try:
        while True:
            round_ = source.read_into(
                state, should_stop=stop.is_set, checkpoint=lambda s: save_state(s, snapshot)
            )
            read += round_.records
            done = not args.follow or stop.is_set()
            quiet = round_.records == 0 and not round_.stopped
            due = time.monotonic() - last_write >= FOLLOW_WRITE_EVERY_S
            if (done and (read or not args.follow)) or (read and (quiet or due)):
                save_state(state, snapshot)
                if state.events_applied or not args.follow:
                    report(state, read, publish(args, state))
                read, last_write = 0, time.monotonic()
            if done:
                break
    finally:
        source.close()
    return 1 if state.rejected.get("unverified") else 0


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM / SIGINT end a `--follow` run after the batch in hand (the state is saved)."""

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
