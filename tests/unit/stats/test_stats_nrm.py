"""NRM tables comparable with the Home Office's, from what the statistics feed carries.

The feed's referrals carry `first_responder_type`, `age_at_exploitation`, `exploitation_types`
and `exploitation_location` (agreement `national-statistics.v1`); the subscriber keeps them, and
`nrm.csv` counts referrals and decisions by calendar year and quarter.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import yaml
from stats_samples import FeedBuilder, when

from broker.stats import StatsState
from broker.stats.nrm import NRM_COLUMNS, nrm_rows

ROOT = Path(__file__).resolve().parents[3]
AGREEMENT = ROOT / "agreements" / "examples" / "national-statistics.v1.yaml"
HOME_OFFICE_FIELDS = (
    "first_responder_type",
    "age_at_exploitation",
    "exploitation_types",
    "exploitation_location",
)
# Identifiers the statistics collection must never be given (it gets keyed pseudonyms instead).
IDENTIFIERS = {
    "subject",
    "la_child_id",
    "referral_id",
    "police_ref",
    "upn",
    "first_name",
    "last_name",
    "dob",
    "nationality",
    "first_responder",
    "local_authority",
    "police_force",
}


def referral(
    b: FeedBuilder, issuer: str, key: str, at: str, fields: dict[str, Any]
) -> dict[str, Any]:
    return b.add(
        "nrm.referral.submitted",
        issuer,
        key,
        when(at),
        fields,
        {"referral_pseudonym": key},
    )


def feed() -> list[dict[str, Any]]:
    b = FeedBuilder()
    base = {"first_responder_type": "local_authority", "age_at_exploitation": "child"}
    referral(
        b,
        "council.E09000033",
        "r1",
        "2026-11-21T15:30:00",
        {**base, "exploitation_types": ["criminal", "labour"], "exploitation_location": "both"},
    )
    referral(
        b,
        "council.E09000033",
        "r2",
        "2026-08-02T09:00:00",
        {**base, "exploitation_types": ["sexual"], "exploitation_location": "uk"},
    )
    # A police referral: cannot be linked to a looked-after child, but the NRM tables count it.
    referral(
        b,
        "police.met",
        "r3",
        "2026-11-25T09:00:00",
        {
            "first_responder_type": "police",
            "age_at_exploitation": "adult",
            "exploitation_types": ["labour"],
            "exploitation_location": "overseas",
        },
    )
    b.decision("r1", "reasonable_grounds", "positive", dt.date(2026, 11, 24))
    b.decision("r2", "reasonable_grounds", "negative", dt.date(2026, 9, 1))
    b.decision("r2", "conclusive_grounds", "negative", dt.date(2027, 1, 10))
    b.decision("unknown", "reasonable_grounds", "positive", dt.date(2026, 12, 1))
    return b.events


def table(rows: list[dict[str, str]], period: str, name: str, age: str) -> dict[str, str]:
    return {
        r["category"]: r["number"]
        for r in rows
        if r["period_label"] == period
        and r["nrm_table"] == name
        and r["age_at_exploitation"] == age
    }


def test_the_subscriber_keeps_the_home_office_fields_across_a_snapshot() -> None:
    state = StatsState()
    state.apply_all(feed())
    assert not state.rejected
    again = StatsState.restore(json.loads(json.dumps(state.snapshot())))
    kept = again.referrals["r1"]
    assert kept.first_responder_type == "local_authority"
    assert kept.age_at_exploitation == "child"
    assert kept.exploitation_types == ("criminal", "labour")
    assert kept.exploitation_location == "both"
    assert again.referrals["r3"].council == "" and again.referrals["r3"].child == ""


def test_nrm_tables_by_quarter_and_year() -> None:
    state = StatsState()
    state.apply_all(feed())
    rows = nrm_rows(state)
    assert all(tuple(r) == NRM_COLUMNS for r in rows)
    child, every = "Child (17 and under)", "All ages"
    q4 = "Quarter 4 2026: October to December"
    year = "January to December 2026"
    assert table(rows, q4, "Referrals", every) == {"Total": "2"}
    assert table(rows, q4, "Referrals", child) == {"Total": "1"}
    assert table(rows, year, "Referrals", child) == {"Total": "2"}
    by_type = table(rows, year, "Referrals by exploitation type", child)
    assert by_type["More than one exploitation type"] == "1"
    assert by_type["Sexual exploitation"] == "1"
    assert sum(map(int, by_type.values())) == 2
    location = table(rows, year, "Referrals by exploitation location", every)
    assert (location["UK and overseas"], location["UK only"], location["Overseas only"]) == (
        "1",
        "1",
        "1",
    )
    responders = table(rows, q4, "Referrals by first responder type", every)
    assert (responders["Local authority"], responders["Police"]) == ("1", "1")
    rg = table(rows, q4, "Reasonable grounds decisions", child)
    assert rg == {"Positive": "1", "Negative": "0", "Total": "1"}
    # A decision whose referral the feed never carried: age not known, still counted.
    unknown = table(rows, q4, "Reasonable grounds decisions", "Age not specified or unknown")
    assert unknown["Positive"] == "1"
    q3 = table(rows, "Quarter 3 2026: July to September", "Reasonable grounds decisions", child)
    assert q3["Negative"] == "1"
    cg = table(rows, "Quarter 1 2027: January to March", "Conclusive grounds decisions", child)
    assert cg == {"Positive": "0", "Negative": "1", "Total": "1"}
    periods = [r["period_label"] for r in rows]
    assert periods.index(year) < periods.index("Quarter 3 2026: July to September")
    identifiers = {r["time_identifier"] for r in rows}
    assert identifiers == {
        "Calendar year",
        "Calendar year Q3",
        "Calendar year Q4",
        "Calendar year Q1",
    }


def test_the_agreement_grants_the_fields_and_no_new_identifier() -> None:
    agreement = yaml.safe_load(AGREEMENT.read_text(encoding="utf-8"))
    assert agreement["recipient"] == "stats.national"
    rules = {r["name"]: r for r in agreement["rules"]}
    referrals = rules["nrm-referrals"]
    assert set(HOME_OFFICE_FIELDS) <= set(referrals["share"])
    for rule in agreement["rules"]:
        assert not set(rule.get("share", [])) & IDENTIFIERS, rule["name"]
        for derived in rule.get("derive", []):
            # identifiers reach the feed only as keyed pseudonyms
            if derived["field"] in IDENTIFIERS:
                assert derived["transform"] in {"pseudonym", "age_years"}, derived


def test_no_referral_no_nrm_rows() -> None:
    state = StatsState()
    b = FeedBuilder()
    b.care_started("E09000033", "a", when("2024-05-01T00:00:00"))
    state.apply_all(b.events)
    assert nrm_rows(state) == []
