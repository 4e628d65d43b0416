"""The department's rules where ours used to differ (issue 16, "Why"), each through the published
files: a zero average, England's small counts, incidents outside care, 31 March after care ended,
and the duration bands with mean and median days."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from stats_samples import FeedBuilder, when

from broker.cli import main

LA, OTHER = "E09000033", "E09000022"


def publish(events: list[dict[str, Any]], tmp_path: Path, year: str = "2025") -> dict[str, Any]:
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["stats", "--input", str(feed), "--out", str(out), "--year", year]) == 0
    files = {}
    for name in ("statistics", "breakdowns"):
        with (out / f"{name}.csv").open(newline="", encoding="utf-8-sig") as handle:
            files[name] = [r for r in csv.DictReader(handle) if r["time_period"] == year]
    return files


def cells(rows: list[dict[str, str]], level: str, code: str = "") -> dict[str, str]:
    return {
        r["CLA_group"]: r["number"]
        for r in rows
        if r["geographic_level"] == level and r["new_la_code"] == code
    }


def six_children(b: FeedBuilder, council: str = LA) -> None:
    for n in range(6):
        b.care_started(council, f"{council}-{n}", when("2024-04-02T00:00:00"))


def test_an_average_over_no_children_is_zero(tmp_path: Path) -> None:
    b = FeedBuilder()
    six_children(b)
    got = cells(publish(b.events, tmp_path)["statistics"], "Local authority", LA)
    assert got["Children who had a missing incident during the year"] == "0"
    assert got["Average number of missing incidents per looked after child who went missing"] == "0"
    assert got["Percentage of children who had a missing incident during the year"] == "0"


def test_england_small_counts_are_suppressed_not_rounded_to_zero(tmp_path: Path) -> None:
    """Three children away once each among 60: England must not say 0 children and 0 incidents
    next to a percentage of k and an average of 1.0."""
    b = FeedBuilder()
    for n in range(60):
        b.care_started(LA, f"c{n}", when("2024-04-02T00:00:00"))
    for n in range(3):
        b.missing(
            LA, f"c{n}", when("2024-06-01T00:00:00"), when("2024-06-02T00:00:00"), missing_type="A"
        )
    england = cells(publish(b.events, tmp_path)["statistics"], "National")
    away = "away from placement without authorisation"
    assert england[f"Children who were {away} during the year"] == "c"
    assert england[f"Number of {away} incidents during the year"] == "c"
    assert england[f"Percentage of children who were {away} during the year"] == "5"
    assert england[f"Average number of {away} incidents per looked after child"] == "1.0"
    assert england["Children looked after during the year"] == "60"
    assert england["Children who had a missing incident during the year"] == "0"  # a true 0


def test_incidents_count_only_when_they_start_in_care(tmp_path: Path) -> None:
    b = FeedBuilder()
    six_children(b)
    # Before care started, after it ended, and during a short break: none of them count.
    b.missing(LA, f"{LA}-0", when("2024-04-01T10:00:00"), when("2024-04-01T12:00:00"))
    b.care_ended(LA, f"{LA}-1", when("2024-08-01T00:00:00"))
    b.missing(LA, f"{LA}-1", when("2024-09-01T00:00:00"), when("2024-09-02T00:00:00"))
    b.care_started(LA, "short", when("2024-05-01T00:00:00"), legal_status="V3")
    b.placement_changed(LA, "short", when("2024-06-01T00:00:00"), legal_status="C2")
    b.placement_changed(LA, "short", when("2024-07-01T00:00:00"), legal_status="V4")
    b.missing(LA, "short", when("2024-07-10T00:00:00"), when("2024-07-11T00:00:00"))
    # While looked after: counts.
    b.missing(LA, f"{LA}-2", when("2024-10-01T00:00:00"), when("2024-10-01T05:00:00"))
    got = cells(publish(b.events, tmp_path)["statistics"], "Local authority", LA)
    assert got["Children looked after during the year"] == "7"
    assert got["Number of missing incidents during the year"] == "c"  # 1
    # The incident during care is the only one: the average is of one incident per child.
    assert got["Children who had a missing incident during the year"] == "c"


def test_incidents_outside_care_are_not_counted_in_the_counts(tmp_path: Path) -> None:
    """The same, at sizes that are not suppressed: 6 children each with an incident after care
    ended and 6 with one in care."""
    b = FeedBuilder()
    for n in range(12):
        b.care_started(LA, f"k{n}", when("2024-04-02T00:00:00"))
    for n in range(6):
        b.care_ended(LA, f"k{n}", when("2024-06-01T00:00:00"))
        b.missing(LA, f"k{n}", when("2024-07-01T00:00:00"), when("2024-07-02T00:00:00"))
        b.missing(LA, f"k{n + 6}", when("2024-07-01T00:00:00"), when("2024-07-02T00:00:00"))
    got = cells(publish(b.events, tmp_path)["statistics"], "Local authority", LA)
    assert got["Children who had a missing incident during the year"] == "6"
    assert got["Number of missing incidents during the year"] == "6"
    assert got["Percentage of children who had a missing incident during the year"] == "50"


def test_missing_at_31_march_needs_the_child_still_looked_after(tmp_path: Path) -> None:
    b = FeedBuilder()
    for n in range(12):
        child = f"m{n}"
        b.care_started(LA, child, when("2024-04-02T00:00:00"))
        b.missing(LA, child, when("2025-02-01T00:00:00"), None)
        if n < 6:  # care ended on 15 March while the child was still missing
            b.care_ended(LA, child, when("2025-03-15T00:00:00"))
    got = cells(publish(b.events, tmp_path)["statistics"], "Local authority", LA)
    assert got["Children who had a missing incident during the year"] == "12"
    assert got["Children missing at 31 March"] == "6"


def test_care_ending_on_31_march_is_not_looked_after_at_31_march(tmp_path: Path) -> None:
    b = FeedBuilder()
    for n in range(6):
        b.care_started(LA, f"e{n}", when("2024-04-02T00:00:00"))
        b.missing(LA, f"e{n}", when("2025-03-01T00:00:00"), None, missing_type="A")
        b.care_ended(LA, f"e{n}", when("2025-03-31T00:00:00"))
    got = cells(publish(b.events, tmp_path)["statistics"], "Local authority", LA)
    assert got["Children away from placement without authorisation at 31 March"] == "0"


def test_duration_bands_are_the_departments_with_mean_and_median(tmp_path: Path) -> None:
    b = FeedBuilder()
    # days: 5 or 15 incidents of each length, so that the bands read 10 or 20 after rounding
    lengths = [
        d for n, d in enumerate([0, 2, 5, 9, 12, 18, 25, 31]) for _ in range(5 + 10 * (n % 2))
    ]
    for n, days in enumerate(lengths):
        child = f"d{n}"
        start = when("2024-05-01T00:00:00")
        b.care_started(LA, child, start)
        b.missing(
            LA, child, start + dt.timedelta(days=1), start + dt.timedelta(days=1 + days, hours=2)
        )
    rows = publish(b.events, tmp_path)["breakdowns"]
    got = {
        r["category"]: r["number"]
        for r in rows
        if r["incident_type"] == "Missing"
        and r["breakdown"] in ("Duration of incident", "Duration of ended incidents, days")
    }
    assert got == {
        "Less than 1 day": "10",
        "1 to 2 days": "20",
        "3 to 7 days": "10",
        "8 to 10 days": "20",
        "11 to 15 days": "10",
        "16 to 20 days": "20",
        "21 to 30 days": "10",
        "More than 30 days": "20",
        "Not ended": "0",
        "Mean": "13.9",  # 1110 days / 80 incidents = 13.875
        "Median": "10.5",  # the 40th and 41st of 80: 9 and 12 days
    }


@pytest.mark.parametrize("council", [LA, OTHER])
def test_every_council_row_has_the_thirteen_labels(tmp_path: Path, council: str) -> None:
    b = FeedBuilder()
    six_children(b, council)
    got = cells(publish(b.events, tmp_path)["statistics"], "Local authority", council)
    assert len(got) == 13
