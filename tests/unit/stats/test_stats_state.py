"""Acceptance 3: the same numbers live, rebuilt from the start, and restarted in the middle."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stats_samples import FeedBuilder, synthetic_feed, when

from broker.stats import Period, StatsState, compute
from broker.stats.events import SNAPSHOT_VERSION
from broker.stats.exceptions import PersonalFieldError, SnapshotError
from broker.stats.output import publish

FEED = synthetic_feed()
YEAR = Period.reporting_year(2025)


def numbers(state: StatsState, period: Period = YEAR) -> dict[str, Any]:
    results = compute(state, period)
    return {"councils": results.councils, "national": results.national}


def rebuilt(events: list[dict[str, Any]]) -> StatsState:
    state = StatsState()
    state.apply_all(events)
    return state


def restarted(events: list[dict[str, Any]], cut: int) -> StatsState:
    first = rebuilt(events[:cut])
    saved = json.dumps(first.snapshot())  # through real JSON, as the file would be
    second = StatsState.restore(json.loads(saved))
    second.apply_all(events[cut:])
    return second


def test_feed_is_substantial() -> None:
    result = numbers(rebuilt(FEED))
    assert result["national"]["missing.incidents"] > 50
    assert result["national"]["trafficking.children_looked_after"] > 20
    assert result["national"]["trafficking.nrm.rg.total.all"] > 5


def test_live_equals_rebuild_equals_restart() -> None:
    live = StatsState()
    seen_during: list[int] = []
    for n, event in enumerate(FEED):
        live.apply(event)
        if n % 200 == 0:  # a live subscriber asks for numbers as it goes
            seen_during.append(compute(live, YEAR).national["children_looked_after"] or 0)
    assert seen_during == sorted(seen_during)  # counts only grow as events arrive here
    expected = numbers(rebuilt(FEED))
    assert numbers(live) == expected
    for cut in (0, 1, len(FEED) // 3, len(FEED) // 2, len(FEED) - 1, len(FEED)):
        assert numbers(restarted(FEED, cut)) == expected
    again = rebuilt(FEED)
    assert (
        publish([compute(live, YEAR)], live).statistics
        == publish([compute(again, YEAR)], again).statistics
    )


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(FEED)), replay=st.integers(0, 300))
def test_restart_anywhere_with_redelivery(cut: int, replay: int) -> None:
    """A restart from a snapshot older than the last event applied (at-least-once redelivery)."""
    state = restarted(FEED, cut)
    state.apply_all(FEED[max(0, cut - replay) : cut])
    assert numbers(state) == numbers(rebuilt(FEED))


def test_snapshot_round_trip_is_stable() -> None:
    state = rebuilt(FEED)
    state.position = {"feed.stats.national": {"0": 1234}}
    again = StatsState.restore(json.loads(json.dumps(state.snapshot())))
    assert again.snapshot() == state.snapshot()
    assert again.position == {"feed.stats.national": {"0": 1234}}


def test_snapshot_of_another_version_is_refused() -> None:
    data = StatsState().snapshot()
    data["version"] = 99
    with pytest.raises(SnapshotError, match="rebuild"):
        StatsState.restore(data)
    with pytest.raises(SnapshotError, match="damaged"):
        StatsState.restore({"version": SNAPSHOT_VERSION, "children": {"x": {}}})
    with pytest.raises(SnapshotError, match="not version"):
        StatsState.restore({**data, "version": 1})  # made before the NRM and breakdown facts


def test_unverified_and_malformed_events_are_counted_not_applied() -> None:
    b = FeedBuilder()
    b.care_started("E09000033", "a", when("2024-05-01T00:00:00"))
    b.events[0]["verified"] = False
    b.add(
        "child.missing.started",
        "council.E09000033",
        "a",
        when("2024-05-02T00:00:00"),
        {"missing_type": "Z"},
    )
    b.add("child.care.started", "council.E09000033", "a", when("2024-05-02T00:00:00"))
    b.events[-1]["occurred_at"] = "not a time"
    b.add("child.care.started", "police.met", "a", when("2024-05-02T00:00:00"))
    state = rebuilt(b.events)
    assert state.events_applied == 0
    assert dict(state.rejected) == {
        "unverified": 1,
        "unknown_missing_type": 1,
        "malformed": 1,
        "not_from_a_council": 1,
    }


def test_personal_data_stops_the_subscriber() -> None:
    b = FeedBuilder()
    b.care_started("E09000033", "a", when("2024-05-01T00:00:00"))
    b.events[0]["fields"]["dob"] = "2010-01-01"
    with pytest.raises(PersonalFieldError, match=r"fields\.dob"):
        rebuilt(b.events)
