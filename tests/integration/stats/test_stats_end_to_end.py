"""Issue 8 end to end on the real Kafka: SSDA903 returns of two councils -> council connector ->
router under the example agreements -> `broker stats` reading the statistics feed.

One run (module fixture) feeds three counts of the same feed:
- live: `broker stats --follow` in a child process, started before anything is published;
- restarted: `broker stats` run once when the feed holds only the first council's events and
  again after the second council's, continuing from the position saved in its output directory;
- rebuilt: `broker stats --rebuild` at the end, from the feed's beginning.
Acceptance 3: all three give the same state and byte-identical outputs. Acceptance 5: every record
of the statistics feed is verified and free of personal data. Acceptance 1 on the real path: the
whole sample, published as one council, equals the independent reference of the unit tests on
every official measure the feed supports (all but the boundary breakdown, which needs the ONS
postcode directory: docs/statistics.md), for the four reporting years and other periods; so
does the second council, half of the sample's children.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition
from service_helpers import running_service
from stats_e2e_helpers import (
    LAMBETH,
    SAMPLE,
    STATS,
    WESTMINSTER,
    StatsDeployment,
    every_other_child,
    full_postcodes,
    make_deployment,
    reference_module,
    reference_tables,
    write_subset,
)

from broker.cli import main
from broker.config import topic_feed
from broker.envelope import ForwardedEnvelope
from broker.feed import FeedItem, FeedReader
from broker.kafka.client import KafkaClients
from broker.kafka.credentials import OPERATOR
from broker.kafka.local import ClusterAccess
from broker.publish import Publisher
from broker.router.service import RouterService, topic_specs
from broker.scaffold import REPO_ROOT
from broker.stats import Period, StatsState, assert_no_personal_fields, compute
from broker.stats.cli import SNAPSHOT_NAME
from connectors.council.ssda903 import read_ssda903
from connectors.ids import event_ids_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not SAMPLE.exists(), reason=f"sample data absent: {SAMPLE}"),
]

YEAR = "2018"  # 1 April 2017 to 31 March 2018: the sample's year with incidents
WAIT_S = 180.0  # a guard against hanging, never a pass/fail criterion
PERSONAL = frozenset(
    {
        "la_child_id",
        "first_name",
        "last_name",
        "dob",
        "upn",
        "placement_postcode",
        "home_postcode",
        "last_seen_location",
        "found_location",
        "physical_description",
        "clothing",
        "associates",
        "places_frequented",
        "phone_numbers",
        "social_media",
        "medical_needs",
        "photo_ref",
    }
)


@dataclass
class Run:
    dep: StatsDeployment
    events: dict[str, list[dict[str, Any]]]  # per council (base id)
    subset: Path
    live: Path
    restarted: Path
    rebuilt: Path
    restart_reads: list[int]
    live_log: str

    def state(self, out: Path) -> StatsState:
        data = json.loads((out / SNAPSHOT_NAME).read_text(encoding="utf-8"))
        return StatsState.restore(data)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.events.values())


def _applied(out: Path) -> int:
    try:
        return int(json.loads((out / SNAPSHOT_NAME).read_text())["events_applied"])
    except (OSError, ValueError, KeyError):
        return 0


def _wait(what: str, done: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.3)


def _stats_cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["stats", *args])
    return code, out.getvalue()


def _publish(dep: StatsDeployment, council: str, events: list[dict[str, Any]]) -> None:
    publisher = Publisher(dep.config, dep.id(council))
    try:
        report = publisher.publish_all((f"event {i}", e) for i, e in enumerate(events))
    finally:
        publisher.close()
    assert not report.rejected, report.rejected[:3]
    assert report.total_published == len(events)


@contextlib.contextmanager
def _router(dep: StatsDeployment) -> Iterator[None]:
    with running_service(RouterService(dep.config, instance_id="stats-e2e"), "router-stats-e2e"):
        yield


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, kafka_access: ClusterAccess) -> Run:
    tmp = tmp_path_factory.mktemp("stats-e2e")
    dep = make_deployment(tmp / "deployment", kafka_access)
    subset = write_subset(every_other_child(), tmp / "lambeth-ssda903")
    config = dep.config
    events = {
        base: read_ssda903(
            source, agency=dep.id(base), id_secret=event_ids_for(config, dep.id(base)).secret
        ).collect()
        for base, source in ((WESTMINSTER, SAMPLE), (LAMBETH, subset))
    }
    KafkaClients(dep.config.kafka, OPERATOR).ensure_topics(topic_specs(dep.config))
    common = ["--config", str(dep.config_path), "--agency", dep.id(STATS), "--year", YEAR]
    live, restarted, rebuilt = tmp / "live", tmp / "restarted", tmp / "rebuilt"
    log = tmp / "live.log"
    with log.open("wb") as sink:
        follower = subprocess.Popen(
            [sys.executable, "-m", "broker.cli", "stats", *common, "--out", str(live), "--follow"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    try:
        restart_reads: list[int] = []
        with _router(dep):
            _publish(dep, WESTMINSTER, events[WESTMINSTER])
            first = len(events[WESTMINSTER])
            _wait("the live count of the first council", lambda: _applied(live) >= first)
            # The feed now holds exactly the first council's events: stop in the middle.
            code, printed = _stats_cli(*common, "--out", str(restarted))
            assert code == 0, printed
            restart_reads.append(_applied(restarted))
            _publish(dep, LAMBETH, events[LAMBETH])
            total = first + len(events[LAMBETH])
            _wait("the live count of both councils", lambda: _applied(live) >= total)
        code, printed = _stats_cli(*common, "--out", str(restarted))
        assert code == 0, printed
        assert "HTML report: " in printed
        restart_reads.append(_applied(restarted) - restart_reads[0])
        code, printed = _stats_cli(*common, "--out", str(rebuilt), "--rebuild")
        assert code == 0, printed
    finally:
        if follower.poll() is None:
            follower.send_signal(signal.SIGTERM)
        follower.wait(timeout=60)
    assert follower.returncode == 0, log.read_text()
    return Run(dep, events, subset, live, restarted, rebuilt, restart_reads, log.read_text())


# -- acceptance 3: live, restarted and rebuilt agree -----------------------------------------------


def test_every_event_is_counted_once_whichever_way(run: Run) -> None:
    assert run.restart_reads == [len(run.events[WESTMINSTER]), len(run.events[LAMBETH])]
    for out in (run.live, run.restarted, run.rebuilt):
        state = run.state(out)
        assert state.events_applied == run.total
        assert not state.rejected
        assert set(state.councils) == {run.dep.code(WESTMINSTER), run.dep.code(LAMBETH)}


def test_live_restarted_and_rebuilt_give_the_same_numbers(run: Run) -> None:
    live, restarted, rebuilt = (run.state(o) for o in (run.live, run.restarted, run.rebuilt))
    assert live.snapshot() == restarted.snapshot() == rebuilt.snapshot()
    for name in ("statistics.csv", "statistics.json"):
        content = (run.live / name).read_bytes()
        assert content == (run.restarted / name).read_bytes() == (run.rebuilt / name).read_bytes()
    for period in (
        Period.reporting_year(2017),
        Period.between(dt.date(2017, 9, 1), dt.date(2018, 2, 28)),
    ):
        results = [compute(s, period) for s in (live, restarted, rebuilt)]
        assert results[0].councils == results[1].councils == results[2].councils
        assert results[0].national == results[1].national == results[2].national


def test_follow_prints_where_the_report_is(run: Run) -> None:
    assert f"HTML report: {(run.live / 'report.html').resolve()}" in run.live_log
    assert "<svg " in (run.live / "report.html").read_text(encoding="utf-8")


def test_characteristics_reach_the_breakdowns(run: Run) -> None:
    """The connector's placement type, sex and ethnicity reach the England breakdowns: each
    breakdown adds up to the incidents, and most incidents have a known value."""
    got = compute(run.state(run.rebuilt), Period.reporting_year(2018)).national
    for kind in ("missing", "away"):
        incidents = got[f"{kind}.incidents"]
        assert incidents
        for breakdown in ("placement_type", "gender", "ethnicity"):
            parts = {
                k: v for k, v in got.items() if k.startswith(f"{kind}.incidents_by_{breakdown}.")
            }
            assert sum(v or 0 for v in parts.values()) == incidents, breakdown
            assert (parts[f"{kind}.incidents_by_{breakdown}.not_known"] or 0) < incidents


def test_position_is_the_feed_end(run: Run) -> None:
    position = run.state(run.rebuilt).position
    reader = FeedReader(run.dep.config, run.dep.id(STATS), from_beginning=True)
    try:
        ends = reader.consumer.end_offsets(reader.partitions)
    finally:
        reader.close()
    assert position["topic"] == topic_feed(run.dep.id(STATS))
    assert position["offsets"] == {str(tp.partition): n for tp, n in sorted(ends.items())}


# -- acceptance 5: nothing personal reaches the statistics subscriber ------------------------------


def _every_record(run: Run) -> list[tuple[bytes, FeedItem]]:
    reader = FeedReader(run.dep.config, run.dep.id(STATS), from_beginning=True)
    consumer = reader.consumer
    try:
        ends = consumer.end_offsets(reader.partitions)
        records: list[tuple[bytes, FeedItem]] = []
        deadline = time.monotonic() + WAIT_S
        while any(consumer.position(tp) < ends[tp] for tp in reader.partitions):
            assert time.monotonic() < deadline, "could not read the statistics feed to its end"
            polled: dict[TopicPartition, list[Any]] = consumer.poll(timeout_ms=200)
            for tp, batch in polled.items():
                for r in batch:
                    records.append((r.value, reader.verify(tp.partition, r.offset, r.value)))
        return records
    finally:
        reader.close()


# A full postcode starting at any byte (overlapping matches: the bytes around it are binary).
_POSTCODE_AT = re.compile(rb"(?=([A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}))")


def _postcodes_in(raw: bytes) -> set[bytes]:
    """Full-postcode-shaped byte strings in a forwarded envelope, outside its random parts.

    Salts, digests and signatures are random bytes: over thousands of records, some window of
    them spells one of the sample's 17,000 postcode forms now and then (a run saw "WZ23SF" in
    one). They are blanked first; everything else, including every disclosed value's bytes, is
    scanned as it travels.
    """
    envelope = ForwardedEnvelope.from_bytes(raw)
    random_parts = [*envelope.digests, envelope.signature, envelope.derived.signature]
    random_parts += [d.salt for d in envelope.disclosures]
    for part in random_parts:
        raw = raw.replace(part, bytes(len(part)))
    return {m.group(1) for m in _POSTCODE_AT.finditer(raw)}


def test_no_personal_data_in_any_record_of_the_statistics_feed(run: Run) -> None:
    records = _every_record(run)
    assert len(records) == run.total
    postcodes = full_postcodes()
    assert postcodes  # the sample has full postcodes to leak
    types: Counter[str] = Counter()
    for raw, item in records:
        assert item.event is not None, item.error
        event = item.event.to_json()
        assert_no_personal_fields(event)
        assert not PERSONAL & set(event["fields"]), event["event_id"]
        assert not PERSONAL & set(event["derived"]), event["event_id"]
        assert not _postcodes_in(raw) & postcodes, event["event_id"]
        types[event["event_type"]] += 1
        if event["event_type"] == "child.missing.started":
            assert isinstance(event["derived"].get("age_years"), int)
    assert types["child.missing.started"] and types["child.care.started"]


# -- acceptance 1: the measures against the independent reference ---------------------------------


# Left out of the comparison: the boundary breakdown (the feed cannot carry it), and the
# placement type, gender and ethnicity breakdowns (the unit reference's converter gives none of
# them; the connector does, and `test_characteristics_reach_the_breakdowns` checks they add up).
NOT_COMPARED = (
    ".incidents_by_placement.",
    ".incidents_by_placement_type.",
    ".incidents_by_gender.",
    ".incidents_by_ethnicity.",
)


def _official(counts: dict[str, int | None]) -> dict[str, int]:
    """Non-zero official measures, without the breakdowns compared elsewhere."""
    return {
        k: v
        for k, v in counts.items()
        if v and not k.startswith("trafficking.") and not any(n in k for n in NOT_COMPARED)
    }


def _assert_equals_reference(
    state: StatsState, code: str, tables: Any, start: dt.date, end: dt.date
) -> None:
    got = compute(state, Period.between(start, end)).councils[code]
    expected = {
        k: v
        for k, v in reference_module().reference(tables, start, end).items()
        if not any(n in k for n in NOT_COMPARED)
    }
    assert _official(got) == expected, f"{code} {start}..{end}"
    for kind in ("missing", "away"):  # no ONS postcode lookup yet: every placement "not known"
        assert got[f"{kind}.incidents_by_placement.not_known"] == got[f"{kind}.incidents"]
        assert got[f"{kind}.incidents_by_placement.inside_boundary"] is None  # `x`
    # SSDA903 has no trafficking flag: those measures are "not available", never 0.
    assert all(v is None for k, v in got.items() if k.startswith("trafficking."))


_rng = random.Random(903)
PERIODS = [
    *[(dt.date(y - 1, 4, 1), dt.date(y, 3, 31)) for y in (2016, 2017, 2018, 2019)],
    (dt.date(2017, 9, 1), dt.date(2017, 9, 30)),
    (dt.date(2017, 11, 1), dt.date(2018, 2, 28)),
    # Seeded arbitrary periods: one day to about 16 months, anywhere in the sample's years.
    *[
        (start, start + dt.timedelta(days=_rng.randint(0, 500)))
        for start in (
            dt.date(2015, 6, 1) + dt.timedelta(days=_rng.randint(0, 1400)) for _ in range(30)
        )
    ],
]


@pytest.fixture(scope="module")
def sample_tables() -> Any:
    return reference_tables(SAMPLE)


@pytest.fixture(scope="module")
def rebuilt(run: Run) -> StatsState:
    return run.state(run.rebuilt)


@pytest.mark.parametrize(("start", "end"), PERIODS)
def test_whole_sample_as_one_council_equals_the_reference(
    run: Run, rebuilt: StatsState, sample_tables: Any, start: dt.date, end: dt.date
) -> None:
    _assert_equals_reference(rebuilt, run.dep.code(WESTMINSTER), sample_tables, start, end)


@pytest.mark.parametrize(("start", "end"), PERIODS[:6])
def test_second_council_equals_the_reference(
    run: Run, rebuilt: StatsState, start: dt.date, end: dt.date
) -> None:
    tables = reference_tables(run.subset)
    _assert_equals_reference(rebuilt, run.dep.code(LAMBETH), tables, start, end)


def test_the_comparison_is_not_vacuous(run: Run, sample_tables: Any) -> None:
    """2017-18 has children looked after and excluded short breaks, legal-status-only episodes,
    superseded episodes, and incidents of both kinds, so every gap the feed once had shows."""
    got = compute(run.state(run.rebuilt), Period.reporting_year(2018)).councils[
        run.dep.code(WESTMINSTER)
    ]
    assert got["children_looked_after"] and got["children_looked_after"] > 1000
    for kind in ("missing", "away"):
        assert got[f"{kind}.children"] and got[f"{kind}.incidents"]
    assert got["away.children_more_than_once"]
    episodes = [e for rows in sample_tables.episodes.values() for e in rows]
    assert any(e["RNE"] == "L" for e in episodes)
    assert any(e["LS"] in ("V3", "V4") for e in episodes)
    assert any(
        e["dec"] is not None and e["end"] is not None and e["dec"] > e["end"] for e in episodes
    )
    types = Counter(e["event_type"] for e in run.events[WESTMINSTER])
    legal_only = [
        e
        for e in run.events[WESTMINSTER]
        if e["event_type"] == "child.placement.changed" and e["fields"]["reason_new_episode"] == "L"
    ]
    assert types["child.placement.changed"] and legal_only


def test_sample_council_incidents_equal_the_missing_table(run: Run, sample_tables: Any) -> None:
    """Every incident of the whole sample reaches the statistics with its type, dates and age."""
    reference = reference_module()
    expected = Counter(
        (
            m["MISSING"],
            m["start"],
            m["until"],
            reference.age_on(sample_tables.dob[m["CHILD"]], m["start"])
            if sample_tables.dob.get(m["CHILD"])
            else None,
        )
        for m in sample_tables.missing
    )
    code = run.dep.code(WESTMINSTER)
    got = Counter(
        (i.missing_type, i.since.date(), i.until.date() if i.until else None, i.age_years)
        for child in run.state(run.rebuilt).children.values()
        if child.council == code
        for i in child.incidents.values()
    )
    assert got == expected
