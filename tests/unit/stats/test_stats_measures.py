"""The inquiry's measures and the finer points of the official ones, on hand-made feeds."""

from __future__ import annotations

import datetime as dt
from typing import Any

from stats_samples import FeedBuilder, when

from broker.stats import Period, StatsState, compute
from broker.stats.events import IncidentFact
from broker.stats.measures import age_band_of, duration_band_of, time_to_first_band

LA = "E09000033"
YEAR = Period.reporting_year(2025)


def council(events: list[dict[str, Any]], period: Period = YEAR, code: str = LA) -> dict[str, Any]:
    state = StatsState()
    state.apply_all(events)
    assert not state.rejected
    return compute(state, period).councils[code]


def scenario() -> FeedBuilder:
    b = FeedBuilder()
    # A: trafficking concern; missing 22 hours after care starts, then missing and never found.
    b.care_started(LA, "A", when("2024-06-01T10:00:00"), trafficking=True)
    b.missing(LA, "A", when("2024-06-02T08:00:00"), when("2024-06-03T08:00:00"), trafficking=True)
    b.missing(LA, "A", when("2024-07-01T00:00:00"), None, trafficking=True)
    b.referral(LA, "A", when("2024-06-05T00:00:00"), "rA")
    b.decision("rA", "reasonable_grounds", "positive", dt.date(2024, 6, 20))
    b.decision("rA", "conclusive_grounds", "negative", dt.date(2025, 1, 10))
    # B: no flag but an NRM referral; away 4 days after a move, long after care started.
    b.care_started(LA, "B", when("2024-05-01T00:00:00"))
    b.placement_changed(LA, "B", when("2024-09-01T00:00:00"))
    b.missing(LA, "B", when("2024-09-05T00:00:00"), when("2024-09-06T00:00:00"), missing_type="A")
    b.referral(LA, "B", when("2024-08-01T00:00:00"), "rB")
    b.decision("rB", "reasonable_grounds", "negative", dt.date(2024, 8, 20))
    # C: no concern, one missing incident.
    b.care_started(LA, "C", when("2024-04-10T00:00:00"))
    b.missing(LA, "C", when("2024-10-01T00:00:00"), when("2024-10-01T06:00:00"))
    # D: concern first recorded after the period: not in this period's cohort.
    b.care_started(LA, "D", when("2024-04-10T00:00:00"))
    b.missing(LA, "D", when("2025-05-01T00:00:00"), None, trafficking=True)
    # E: short breaks only (V3): not counted at all.
    b.care_started(LA, "E", when("2024-04-10T00:00:00"), legal_status="V3", trafficking=True)
    b.missing(LA, "E", when("2024-11-01T00:00:00"), None, trafficking=True)
    return b


def test_trafficking_cohort_measures() -> None:
    got = council(scenario().events)
    assert got["children_looked_after"] == 4
    assert got["trafficking.children_looked_after"] == 2
    assert got["missing.children"] == 2 and got["missing.incidents"] == 3
    expected = {
        "trafficking.missing.children": 1,
        "trafficking.missing.first_within_48_hours_of_care_start": 1,
        "trafficking.missing.first_within_7_days_of_care_start": 1,
        "trafficking.missing.first_within_48_hours_of_placement_start": 1,
        "trafficking.missing.first_within_7_days_of_placement_start": 1,
        "trafficking.missing.children_missing_at_period_end": 1,
        "trafficking.missing.children_missing_28_days_or_more": 1,
        "trafficking.away.children": 1,
        "trafficking.away.first_within_48_hours_of_care_start": 0,
        "trafficking.away.first_within_7_days_of_care_start": 0,
        "trafficking.away.first_within_48_hours_of_placement_start": 0,
        "trafficking.away.first_within_7_days_of_placement_start": 1,
        "trafficking.away.children_missing_at_period_end": 0,
        "trafficking.away.children_missing_28_days_or_more": 0,
    }
    assert {k: got[k] for k in expected} == expected


def test_nrm_decisions_by_quarter() -> None:
    got = council(scenario().events)
    nrm = {k: v for k, v in got.items() if k.startswith("trafficking.nrm.") and v}
    assert nrm == {
        "trafficking.nrm.rg.positive.2024-04": 1,
        "trafficking.nrm.rg.total.2024-04": 1,
        "trafficking.nrm.rg.negative.2024-07": 1,
        "trafficking.nrm.rg.total.2024-07": 1,
        "trafficking.nrm.rg.positive.all": 1,
        "trafficking.nrm.rg.negative.all": 1,
        "trafficking.nrm.rg.total.all": 2,
        "trafficking.nrm.cg.negative.2025-01": 1,
        "trafficking.nrm.cg.total.2025-01": 1,
        "trafficking.nrm.cg.negative.all": 1,
        "trafficking.nrm.cg.total.all": 1,
    }


def test_decisions_before_referrals_and_any_order() -> None:
    events = scenario().events
    assert council(list(reversed(events))) == council(events)


def test_period_end_and_breakdowns() -> None:
    got = council(scenario().events)
    assert got["missing.children_at_period_end"] == 1  # A; E is a short-break child
    assert got["missing.incidents_by_duration.1_to_2_days"] == 1
    assert got["missing.incidents_by_duration.less_than_1_day"] == 1
    assert got["missing.incidents_by_duration.not_ended"] == 1
    assert got["missing.incidents_by_age.10_to_15"] == 3
    assert got["missing.incidents_by_placement.inside_boundary"] == 3
    assert got["missing.incidents_by_month.2024-06"] == 1


def test_council_without_trafficking_data_is_not_available() -> None:
    b = FeedBuilder()
    b.care_started(LA, "A", when("2024-06-01T00:00:00"), trafficking=None)
    got = council(b.events)
    assert got["children_looked_after"] == 1
    assert got["trafficking.children_looked_after"] is None
    assert got["trafficking.nrm.rg.total.all"] is None


def test_legal_status_change_keeps_the_placement_start() -> None:
    b = FeedBuilder()
    b.care_started(LA, "A", when("2024-04-02T00:00:00"), trafficking=True)
    b.add(
        "child.placement.changed",
        f"council.{LA}",
        "A",
        when("2024-04-03T00:00:00"),
        {"legal_status": "C2", "reason_new_episode": "L"},
    )
    b.missing(LA, "A", when("2024-04-03T12:00:00"), when("2024-04-04T00:00:00"))
    got = council(b.events)
    assert got["missing.time_to_first_incident.from_placement_start.within_48_hours"] == 1
    assert got["missing.incidents_by_placement.inside_boundary"] == 1


def test_short_break_then_care_counts_from_the_care_episode() -> None:
    b = FeedBuilder()
    b.care_started(LA, "A", when("2023-01-01T00:00:00"), legal_status="V3")
    b.placement_changed(LA, "A", when("2024-08-01T00:00:00"), legal_status="C2")
    assert council(b.events)["children_looked_after"] == 1
    assert council(b.events, Period.reporting_year(2024))["children_looked_after"] == 0


def test_placement_local_authority_code_gives_the_boundary() -> None:
    b = FeedBuilder()
    b.add(
        "child.care.started",
        f"council.{LA}",
        "A",
        when("2024-05-01T00:00:00"),
        {"legal_status": "C2"},
        {"placement_local_authority": "E09000020"},
    )
    b.missing(LA, "A", when("2024-05-02T00:00:00"), when("2024-05-03T00:00:00"))
    assert council(b.events)["missing.incidents_by_placement.outside_boundary"] == 1


def test_council_without_boundary_data_is_not_available_for_that_breakdown() -> None:
    """No ONS postcode lookup yet: a council whose feed never places a placement inside or
    outside its boundary gets `x` for both, and its incidents count as "not known"."""
    b = FeedBuilder()
    b.care_started(LA, "A", when("2024-05-01T00:00:00"), inside=None)
    b.missing(LA, "A", when("2024-05-02T00:00:00"), when("2024-05-03T00:00:00"))
    b.care_started("E09000022", "B", when("2024-05-01T00:00:00"), inside=True)
    b.missing("E09000022", "B", when("2024-05-02T00:00:00"), None)
    state = StatsState()
    state.apply_all(b.events)
    results = compute(state, Period.reporting_year(2025))
    got = results.councils[LA]
    assert got["missing.incidents_by_placement.inside_boundary"] is None
    assert got["missing.incidents_by_placement.outside_boundary"] is None
    assert got["missing.incidents_by_placement.not_known"] == 1
    assert results.councils["E09000022"]["missing.incidents_by_placement.inside_boundary"] == 1
    national = results.national
    assert national["missing.incidents_by_placement.inside_boundary"] == 1
    assert national["missing.incidents_by_placement.not_known"] == 1
    restored = StatsState.restore(state.snapshot())
    assert restored.boundary_reported == {"E09000022"}


def test_bands() -> None:
    since = when("2024-01-01T00:00:00")

    def incident(**kw: Any) -> IncidentFact:
        return IncidentFact(missing_type="M", since=since, **kw)

    assert age_band_of(incident(age_years=0)) == "under_1"
    assert age_band_of(incident(age_years=4)) == "1_to_4"
    assert age_band_of(incident(age_years=9)) == "5_to_9"
    assert age_band_of(incident(age_years=15)) == "10_to_15"
    assert age_band_of(incident(age_years=16)) == "16_and_over"
    assert age_band_of(incident(age_band="13-15")) == "10_to_15"
    assert age_band_of(incident(age_band="0-9")) == "not_known"
    hours = dt.timedelta(hours=1)
    assert duration_band_of(incident(until=since + 23 * hours)) == "less_than_1_day"
    assert duration_band_of(incident(until=since + 71 * hours)) == "1_to_2_days"
    assert duration_band_of(incident(until=since + 72 * hours)) == "3_to_7_days"
    assert duration_band_of(incident(until=since + 31 * 24 * hours)) == "more_than_30_days"
    assert time_to_first_band(48 * hours) == "within_48_hours"
    assert time_to_first_band(49 * hours) == "2_to_7_days"
    assert time_to_first_band(None) == "not_known"


def test_reporting_year_period() -> None:
    assert (YEAR.start, YEAR.end, YEAR.time_period) == (
        dt.date(2024, 4, 1),
        dt.date(2025, 3, 31),
        "2025",
    )
    assert YEAR.quarters() == ["2024-04", "2024-07", "2024-10", "2025-01"]
    assert (
        Period.between(dt.date(2024, 5, 3), dt.date(2024, 6, 1)).time_period == "20240503-20240601"
    )


def _date_only_incident(b: FeedBuilder, child: str, since: str, until: str) -> None:
    """A missing incident as the example agreement shares it: dates, exact times in occurred_at."""
    start, end = when(since), when(until)
    b.add(
        "child.missing.started",
        f"council.{LA}",
        child,
        start,
        {"missing_type": "M", "trafficking_concern": True},
        {"missing_date": start.date().isoformat(), "age_years": 14},
    )
    b.add(
        "child.missing.ended",
        f"council.{LA}",
        child,
        end,
        {"missing_type": "M"},
        {"missing_date": start.date().isoformat(), "returned_date": end.date().isoformat()},
    )


def test_date_only_incidents_pair_up_in_any_order() -> None:
    b = FeedBuilder()
    b.care_started(LA, "A", when("2024-06-01T22:00:00"), trafficking=True)
    _date_only_incident(b, "A", "2024-06-03T09:00:00", "2024-06-03T11:00:00")
    _date_only_incident(b, "A", "2024-06-03T20:00:00", "2024-06-05T08:00:00")
    for events in (b.events, list(reversed(b.events)), b.events + b.events):
        got = council(events)
        assert got["missing.incidents"] == 2
        assert got["missing.incidents_by_duration.less_than_1_day"] == 1
        assert got["missing.incidents_by_duration.1_to_2_days"] == 1
        assert got["missing.children_at_period_end"] == 0
        # 35 hours after care started, from the started event's exact time
        assert got["trafficking.missing.first_within_48_hours_of_care_start"] == 1
