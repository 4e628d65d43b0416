"""NRM tables in the Home Office's terms: referrals and decisions by calendar quarter and year.

The Home Office's quarterly "National Referral Mechanism statistics" count referrals of potential
victims by the quarter they were made, broken down by age at exploitation, exploitation type,
where the exploitation happened and the first responder's type, and reasonable- and
conclusive-grounds decisions by the quarter they were made and outcome. These tables do the same
from the statistics feed: every referral the feed carries (a council's or a police force's), and
every decision, whether or not the child is looked after. Like the Home Office's, they are UK
counts published unrounded; the feed holds no names, only a keyed pseudonym per referral.

Periods: each calendar quarter and each calendar year in which the feed has a referral or a
decision (not limited to the reporting years of the looked-after tables: referrals are counted
from the date they were made).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from broker.stats.events import NRM_OUTCOMES, NRM_STAGES, Referral, StatsState

NRM_COLUMNS = (
    "time_period",
    "time_identifier",
    "period_label",
    "geographic_level",
    "country_code",
    "country_name",
    "nrm_table",
    "age_at_exploitation",
    "category",
    "number",
)

AGE_GROUPS = {
    "child": "Child (17 and under)",
    "adult": "Adult (18 and over)",
    None: "Age not specified or unknown",
}
ALL_AGES = "All ages"
EXPLOITATION_TYPES = {
    "criminal": "Criminal exploitation",
    "labour": "Labour exploitation",
    "sexual": "Sexual exploitation",
    "domestic_servitude": "Domestic servitude",
    "organ_harvesting": "Organ harvesting",
    "other": "Other exploitation",
}
MORE_THAN_ONE_TYPE = "More than one exploitation type"
NOT_SPECIFIED = "Not specified or unknown"
LOCATIONS = {"uk": "UK only", "overseas": "Overseas only", "both": "UK and overseas"}
FIRST_RESPONDER_TYPES = {
    "local_authority": "Local authority",
    "police": "Police",
    "government": "Government agency",
    "ngo": "Non-governmental organisation",
}
TABLES = {
    "referrals": "Referrals",
    "type": "Referrals by exploitation type",
    "location": "Referrals by exploitation location",
    "first_responder": "Referrals by first responder type",
    "reasonable_grounds": "Reasonable grounds decisions",
    "conclusive_grounds": "Conclusive grounds decisions",
}
TOTAL = "Total"


@dataclass(frozen=True)
class NrmPeriod:
    """A calendar year (`quarter` 0) or one of its quarters (1 to 4)."""

    year: int
    quarter: int = 0

    @property
    def time_identifier(self) -> str:
        return "Calendar year" if not self.quarter else f"Calendar year Q{self.quarter}"

    @property
    def label(self) -> str:
        """As the Home Office names its releases: `Quarter 4 2026: October to December`."""
        if not self.quarter:
            return f"January to December {self.year}"
        first = dt.date(self.year, 3 * self.quarter - 2, 1).strftime("%B")
        last = dt.date(self.year, 3 * self.quarter, 1).strftime("%B")
        return f"Quarter {self.quarter} {self.year}: {first} to {last}"

    def contains(self, day: dt.date) -> bool:
        return day.year == self.year and (
            not self.quarter or (day.month - 1) // 3 + 1 == self.quarter
        )


def periods_of(days: Iterable[dt.date]) -> list[NrmPeriod]:
    """Every year and quarter holding one of `days`, each year followed by its quarters."""
    quarters = {(d.year, (d.month - 1) // 3 + 1) for d in days}
    out: list[NrmPeriod] = []
    for year in sorted({y for y, _ in quarters}):
        out.append(NrmPeriod(year))
        out += [NrmPeriod(year, q) for y, q in sorted(quarters) if y == year]
    return out


def _type_of(referral: Referral) -> str:
    types = [t for t in referral.exploitation_types if t in EXPLOITATION_TYPES]
    if not types:
        return NOT_SPECIFIED
    if len(types) > 1:
        return MORE_THAN_ONE_TYPE
    return EXPLOITATION_TYPES[types[0]]


def _age_of(referral: Referral | None) -> str:
    age = referral.age_at_exploitation if referral is not None else None
    return AGE_GROUPS.get(age if age in AGE_GROUPS else None, AGE_GROUPS[None])


def nrm_rows(state: StatsState) -> list[dict[str, str]]:
    """The NRM tables' rows (columns `NRM_COLUMNS`), periods oldest first."""
    referrals = list(state.referrals.items())
    decisions = [
        (key, decision) for key, staged in state.decisions.items() for decision in staged.values()
    ]
    days = [r.submitted_at.date() for _, r in referrals] + [d.decision_date for _, d in decisions]
    rows: list[dict[str, str]] = []
    ages = [*AGE_GROUPS.values(), ALL_AGES]
    categories = {
        "type": [*EXPLOITATION_TYPES.values(), MORE_THAN_ONE_TYPE, NOT_SPECIFIED],
        "location": [*LOCATIONS.values(), NOT_SPECIFIED],
        "first_responder": [*FIRST_RESPONDER_TYPES.values(), NOT_SPECIFIED],
    }
    for period in periods_of(days):
        counts: Counter[tuple[str, str, str]] = Counter()

        def add(table: str, age: str, category: str, counts: Counter[Any] = counts) -> None:
            for a in (age, ALL_AGES):
                counts[(table, a, category)] += 1

        for _, referral in referrals:
            if not period.contains(referral.submitted_at.date()):
                continue
            age = _age_of(referral)
            add("referrals", age, TOTAL)
            add("type", age, _type_of(referral))
            add("location", age, LOCATIONS.get(referral.exploitation_location or "", NOT_SPECIFIED))
            add(
                "first_responder",
                age,
                FIRST_RESPONDER_TYPES.get(referral.first_responder_type or "", NOT_SPECIFIED),
            )
        for key, decision in decisions:
            if period.contains(decision.decision_date):
                age = _age_of(state.referrals.get(key))
                add(decision.stage, age, decision.outcome.capitalize())
                add(decision.stage, age, TOTAL)
        layout: list[tuple[str, list[str]]] = [
            ("referrals", [TOTAL]),
            *((name, categories[name]) for name in ("type", "location", "first_responder")),
            *((stage, [*(o.capitalize() for o in NRM_OUTCOMES), TOTAL]) for stage in NRM_STAGES),
        ]
        for table, cats in layout:
            for age in ages:
                for category in cats:
                    rows.append(
                        {
                            "time_period": str(period.year),
                            "time_identifier": period.time_identifier,
                            "period_label": period.label,
                            "geographic_level": "National",
                            "country_code": "K02000001",
                            "country_name": "United Kingdom",
                            "nrm_table": TABLES[table],
                            "age_at_exploitation": age,
                            "category": category,
                            "number": str(counts.get((table, age, category), 0)),
                        }
                    )
    return rows
