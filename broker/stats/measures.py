"""The measures: DOMAIN.md's official definitions and the inquiry's, per council and England.

Definitions (docs/statistics.md says the same for readers):
- Period: whole days `start`..`end` inclusive, in UTC (the council connector dates events at
  midnight UTC of the recorded date). A reporting year runs 1 April to 31 March.
- Looked after during the period: the child has a care episode overlapping the period whose legal
  status is not an agreed series of short-term breaks (SSDA903 `V3`, `V4`). An episode that ends
  on the first day of the period overlaps it. Only these children are counted anywhere.
- A missing (`M`) or away (`A`) incident is "during the period" when it starts in the period;
  a child is missing at the period end when an incident started before the end of the last day
  and had not ended by then.
- Breakdowns count incidents: by age at the start of the incident, by duration in whole days
  (ended incidents; open ones are "not ended"), by whether the placement in force when the
  incident started was inside the council's boundary. UASC children missing at the period end
  count the UASC status recorded when the open incident started.
- Trafficking cohort: children looked after during the period who, before its end, had a
  trafficking concern (`trafficking_concern`, or `trafficking` among `exploitation_concerns`)
  or an NRM referral by their council.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from broker.stats.disclosure import (
    NOT_APPLICABLE,
    Ratio,
    Relation,
    UpperBound,
    format_average,
    round_half_up,
)
from broker.stats.events import (
    NRM_OUTCOMES,
    ChildFacts,
    Episode,
    IncidentFact,
    StatsState,
)
from broker.stats.exceptions import StatsError

SHORT_BREAK_LEGAL_STATUSES = frozenset({"V3", "V4"})
INCIDENT_TYPES = (("missing", "M"), ("away", "A"))

AGE_BANDS = ("under_1", "1_to_4", "5_to_9", "10_to_15", "16_and_over", "not_known")
# The department's bands (whole days from start to end), then incidents not yet ended.
DURATION_BANDS = (
    "less_than_1_day",
    "1_to_2_days",
    "3_to_7_days",
    "8_to_10_days",
    "11_to_15_days",
    "16_to_20_days",
    "21_to_30_days",
    "more_than_30_days",
    "not_ended",
)
PLACEMENT_BANDS = ("inside_boundary", "outside_boundary", "not_known")
# Not available (`x`) for a council whose feed never placed a placement inside or outside its
# boundary; its incidents still count as "not known", so the bands add up to the incidents.
UNKNOWN_WITHOUT_BOUNDARY = (
    ".incidents_by_placement.inside_boundary",
    ".incidents_by_placement.outside_boundary",
)
TIME_TO_FIRST_BANDS = (
    "within_48_hours",
    "2_to_7_days",
    "8_to_28_days",
    "more_than_28_days",
    "not_known",
)
STAGE_CODES = {"reasonable_grounds": "rg", "conclusive_grounds": "cg"}
NRM_COLUMNS = (*NRM_OUTCOMES, "total")

HOURS_48 = dt.timedelta(hours=48)
DAYS_7 = dt.timedelta(days=7)
DAYS_28 = dt.timedelta(days=28)
ONE_DAY = dt.timedelta(days=1)
ONE_MICROSECOND = dt.timedelta(microseconds=1)

# EVENTS.md age bands that map onto the official ones when no exact age is disclosed.
_AGE_BAND_FALLBACK = {
    "10-12": "10_to_15",
    "13-15": "10_to_15",
    "16-17": "16_and_over",
    "18+": "16_and_over",
}


@dataclass(frozen=True)
class Period:
    """Whole days `start`..`end` inclusive; `time_period` is what the CSV's column shows."""

    start: dt.date
    end: dt.date
    time_period: str

    @classmethod
    def reporting_year(cls, year: int) -> Period:
        """The year ending 31 March `year` (`2025` is 1 April 2024 to 31 March 2025)."""
        return cls(dt.date(year - 1, 4, 1), dt.date(year, 3, 31), str(year))

    @classmethod
    def reporting_years(cls, latest: int, count: int = 5) -> list[Period]:
        """The latest reporting year and the `count - 1` before it, oldest first."""
        return [cls.reporting_year(year) for year in range(latest - count + 1, latest + 1)]

    @classmethod
    def between(cls, start: dt.date, end: dt.date) -> Period:
        """Any period; shown as `YYYYMMDD-YYYYMMDD`."""
        if end < start:
            raise StatsError(f"period ends ({end}) before it starts ({start}); swap --from/--to")
        return cls(start, end, f"{start:%Y%m%d}-{end:%Y%m%d}")

    @property
    def start_at(self) -> dt.datetime:
        return dt.datetime.combine(self.start, dt.time(), tzinfo=dt.UTC)

    @property
    def end_at(self) -> dt.datetime:
        """The instant just after the last day (exclusive)."""
        return dt.datetime.combine(self.end + ONE_DAY, dt.time(), tzinfo=dt.UTC)

    def contains(self, at: dt.datetime) -> bool:
        return self.start_at <= at < self.end_at

    def months(self) -> list[str]:
        """`YYYY-MM` of every month the period touches."""
        out: list[str] = []
        year, month = self.start.year, self.start.month
        while (year, month) <= (self.end.year, self.end.month):
            out.append(f"{year:04d}-{month:02d}")
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return out

    def quarters(self) -> list[str]:
        """`YYYY-MM` of the first month of every calendar quarter the period touches."""
        return sorted({quarter_of(dt.date.fromisoformat(f"{m}-01")) for m in self.months()})


def quarter_of(day: dt.date) -> str:
    """The calendar quarter of a date, named by its first month (`2024-04` is Apr-Jun 2024)."""
    return f"{day.year:04d}-{(day.month - 1) // 3 * 3 + 1:02d}"


@dataclass(frozen=True)
class MeasureDef:
    """One measure: a stable id, a human label, how it is made and where it is published.

    `group`: `published` (the department's thirteen, `statistics.csv`), `breakdown` (England
    only, `breakdowns.csv`), `inquiry` (`inquiry.csv`). `incident`, `breakdown` and `category`
    fill those files' columns. `statistic`: a mean or median (not a count), national only.
    """

    id: str
    label: str
    ratio: Ratio | None = None
    council: bool = True  # False: a national breakdown, not published per council
    group: str = "published"
    incident: str = ""
    breakdown: str = ""
    category: str = ""
    statistic: bool = False


@dataclass
class Results:
    """Unrounded, unsuppressed counts per council and for England, with the measures' order.

    A count of None means "not available" (`x`): the feed does not carry what it needs.
    """

    period: Period
    measures: list[MeasureDef]
    councils: dict[str, dict[str, int | None]]
    national: dict[str, int | None]
    relations: list[Relation] = field(default_factory=list)
    bounds: list[UpperBound] = field(default_factory=list)
    # National means and medians, already formatted (1 dp, `z` over no incidents).
    statistics: dict[str, str] = field(default_factory=dict)

    def ratios(self, council_level: bool) -> dict[str, Ratio]:
        return {
            m.id: m.ratio
            for m in self.measures
            if m.ratio is not None and (m.council or not council_level)
        }

    @property
    def council_measure_ids(self) -> set[str]:
        """Count measures published per council (and per region)."""
        return {m.id for m in self.measures if m.council and m.ratio is None and not m.statistic}

    def council_counts(self, code: str) -> dict[str, int | None]:
        """The counts published for one council (national-only breakdowns left out)."""
        published = {m.id for m in self.measures if m.council and m.ratio is None}
        return {k: v for k, v in self.councils[code].items() if k in published}

    def national_counts(self) -> dict[str, int | None]:
        """England's counts (every count measure)."""
        return dict(self.national)


def aggregate(
    defs: Iterable[MeasureDef], parts: Iterable[Mapping[str, int | None]]
) -> dict[str, int | None]:
    """Sums of councils' counts (England, a region); `None` (`x`) where no council has it."""
    rows = list(parts)
    total: dict[str, int | None] = {}
    for m in defs:
        if m.ratio is not None or m.statistic:
            continue
        values = [v for c in rows if (v := c.get(m.id)) is not None]
        total[m.id] = sum(values) if values else None
    return total


# -- the catalogue of measures ----------------------------------------------------------------

_TYPE_WORD = {"missing": "missing", "away": "away from placement without authorisation"}
_WENT = {
    "missing": "had a missing incident",
    "away": "were away from placement without authorisation",
}
INCIDENT_TYPE_LABELS = {
    "missing": "Missing",
    "away": "Away from placement without authorisation",
}

# The thirteen measures of the department's published file, `CLA_group` word for word
# (DOMAIN.md, "National statistics"), in the order it lists them.
PUBLISHED_LABELS = {
    "children_looked_after": "Children looked after during the year",
    "missing.children": "Children who had a missing incident during the year",
    "missing.incidents": "Number of missing incidents during the year",
    "missing.children_more_than_once": "Children who went missing more than once during the year",
    "missing.children_at_period_end": "Children missing at 31 March",
    "missing.children_pct": "Percentage of children who had a missing incident during the year",
    "missing.incidents_per_child": (
        "Average number of missing incidents per looked after child who went missing"
    ),
    "away.children": (
        "Children who were away from placement without authorisation during the year"
    ),
    "away.incidents": (
        "Number of away from placement without authorisation incidents during the year"
    ),
    "away.children_more_than_once": (
        "Children who were away from placement without authorisation more than once during the year"
    ),
    "away.children_at_period_end": (
        "Children away from placement without authorisation at 31 March"
    ),
    "away.children_pct": (
        "Percentage of children who were away from placement without authorisation during the year"
    ),
    "away.incidents_per_child": (
        "Average number of away from placement without authorisation incidents per looked after "
        "child"
    ),
}

AGE_LABELS = {
    "under_1": "Under 1",
    "1_to_4": "1 to 4 years",
    "5_to_9": "5 to 9 years",
    "10_to_15": "10 to 15 years",
    "16_and_over": "16 years and over",
    "not_known": "Not known",
}
DURATION_LABELS = {
    "less_than_1_day": "Less than 1 day",
    "1_to_2_days": "1 to 2 days",
    "3_to_7_days": "3 to 7 days",
    "8_to_10_days": "8 to 10 days",
    "11_to_15_days": "11 to 15 days",
    "16_to_20_days": "16 to 20 days",
    "21_to_30_days": "21 to 30 days",
    "more_than_30_days": "More than 30 days",
    "not_ended": "Not ended",
}
PLACEMENT_LABELS = {
    "inside_boundary": "Placed inside the council boundary",
    "outside_boundary": "Placed outside the council boundary",
    "not_known": "Not known",
}
TIME_TO_FIRST_LABELS = {
    "within_48_hours": "Within 48 hours",
    "2_to_7_days": "More than 48 hours, within 7 days",
    "8_to_28_days": "More than 7 days, within 28 days",
    "more_than_28_days": "More than 28 days",
    "not_known": "Not known (started before the feed)",
}
SEX_LABELS = {"m": "Male", "f": "Female", "u": "Not known", "1": "Male", "2": "Female"}
NOT_KNOWN = "not_known"

# Breakdown names in the breakdowns file (`breakdown` column).
BREAKDOWN_NAMES = {
    "incidents_by_age": "Age at start of incident",
    "incidents_by_duration": "Duration of incident",
    "incidents_by_placement": "Placement inside or outside the council boundary",
    "incidents_by_placement_type": "Placement type (SSDA903 PLACE)",
    "incidents_by_gender": "Gender",
    "incidents_by_ethnicity": "Ethnicity (SSDA903 ETHNIC)",
    "incidents_by_month": "Month the incident started",
    "time_to_first_incident.from_care_start": "Time from start of care to first incident",
    "time_to_first_incident.from_placement_start": (
        "Time from start of placement to first incident"
    ),
    "children_at_period_end_uasc": (
        "Children missing at 31 March who are unaccompanied asylum-seeking children"
    ),
    "duration_days": "Duration of ended incidents, days",
}


@dataclass(frozen=True)
class Categories:
    """The codes the feed has used for the open-ended breakdowns (the same for every period of
    a run, so the years line up)."""

    placement_types: tuple[str, ...] = ()
    sexes: tuple[str, ...] = ()
    ethnicities: tuple[str, ...] = ()

    @classmethod
    def of(cls, state: StatsState) -> Categories:
        placement: set[str] = set()
        sexes: set[str] = set()
        ethnicities: set[str] = set()
        for child in state.children.values():
            placement.update(
                f.placement_type for f in child.episode_facts.values() if f.placement_type
            )
            if child.sex:
                sexes.add(child.sex)
            if child.ethnicity:
                ethnicities.add(child.ethnicity)
        return cls(tuple(sorted(placement)), tuple(sorted(sexes)), tuple(sorted(ethnicities)))


def _count(
    mid: str,
    label: str,
    council: bool = True,
    *,
    group: str = "published",
    incident: str = "",
    breakdown: str = "",
    category: str = "",
) -> MeasureDef:
    return MeasureDef(mid, label, None, council, group, incident, breakdown, category)


def _pct(
    mid: str,
    label: str,
    num: str,
    den: str,
    council: bool = True,
    *,
    group: str = "published",
    incident: str = "",
) -> MeasureDef:
    return MeasureDef(mid, label, Ratio("percent", num, den), council, group, incident)


def measure_defs(period: Period, categories: Categories | None = None) -> list[MeasureDef]:
    """Every measure for `period`: the thirteen published, the England breakdowns, the
    inquiry's, in publication order."""
    cats = categories or Categories()
    defs: list[MeasureDef] = []
    for mid, label in PUBLISHED_LABELS.items():
        t = mid.split(".")[0]
        if mid.endswith("_pct"):
            defs.append(
                _pct(mid, label, f"{t}.children", "children_looked_after", group="published")
            )
        elif mid.endswith("incidents_per_child"):
            defs.append(
                MeasureDef(
                    mid,
                    label,
                    Ratio("average", f"{t}.incidents", f"{t}.children"),
                    group="published",
                )
            )
        else:
            defs.append(_count(mid, label, group="published"))
    for t, _code in INCIDENT_TYPES:
        defs += _breakdown_defs(t, period, cats)
    defs += _inquiry_defs(period)
    return defs


def _breakdown_defs(t: str, period: Period, cats: Categories) -> list[MeasureDef]:
    word = INCIDENT_TYPE_LABELS[t]
    lists: list[tuple[str, Mapping[str, str]]] = [
        ("incidents_by_age", AGE_LABELS),
        ("incidents_by_duration", DURATION_LABELS),
        ("incidents_by_placement", PLACEMENT_LABELS),
        ("incidents_by_placement_type", {c: c for c in (*cats.placement_types, NOT_KNOWN)}),
        ("incidents_by_gender", {c: SEX_LABELS.get(c, c) for c in (*cats.sexes, NOT_KNOWN)}),
        ("incidents_by_ethnicity", {c: c for c in (*cats.ethnicities, NOT_KNOWN)}),
        (
            "incidents_by_month",
            {m: dt.date(int(m[:4]), int(m[5:]), 1).strftime("%B %Y") for m in period.months()},
        ),
        ("time_to_first_incident.from_care_start", TIME_TO_FIRST_LABELS),
        ("time_to_first_incident.from_placement_start", TIME_TO_FIRST_LABELS),
    ]
    defs: list[MeasureDef] = []
    for name, labels in lists:
        breakdown = BREAKDOWN_NAMES[name]
        for code, category in labels.items():
            category = "Not known" if code == NOT_KNOWN else category
            defs.append(
                _count(
                    f"{t}.{name}.{code}",
                    f"{word} incidents: {breakdown}: {category}",
                    False,
                    group="breakdown",
                    incident=word,
                    breakdown=breakdown,
                    category=category,
                )
            )
    defs.append(
        _count(
            f"{t}.children_at_period_end_uasc",
            f"{word}: {BREAKDOWN_NAMES['children_at_period_end_uasc']}",
            False,
            group="breakdown",
            incident=word,
            breakdown=BREAKDOWN_NAMES["children_at_period_end_uasc"],
            category="Total",
        )
    )
    for stat in ("mean", "median"):
        defs.append(
            MeasureDef(
                f"{t}.duration_days.{stat}",
                f"{word} incidents: {stat} duration of ended incidents, days",
                None,
                False,
                group="breakdown",
                incident=word,
                breakdown=BREAKDOWN_NAMES["duration_days"],
                category=stat.capitalize(),
                statistic=True,
            )
        )
    return defs


def _inquiry_defs(period: Period) -> list[MeasureDef]:
    cohort = "trafficking.children_looked_after"
    defs = [
        _count(
            cohort,
            "Children looked after during the year with a trafficking concern or NRM referral",
            group="inquiry",
        )
    ]
    refs = {"care_start": "starting care", "placement_start": "starting the placement"}
    for t, _code in INCIDENT_TYPES:
        word = _TYPE_WORD[t]
        incident = INCIDENT_TYPE_LABELS[t]
        base = f"trafficking.{t}"
        went = f"{base}.children"
        defs += [
            _count(
                went,
                f"Of them, children who {_WENT[t]} during the year",
                group="inquiry",
                incident=incident,
            ),
            _pct(
                f"{went}_pct",
                f"Percentage of them who {_WENT[t]} during the year",
                went,
                cohort,
                group="inquiry",
                incident=incident,
            ),
        ]
        for within, within_label in (("48_hours", "48 hours"), ("7_days", "7 days")):
            for ref in ("care_start", "placement_start"):
                mid = f"{base}.first_within_{within}_of_{ref}"
                label = f"Of those, first {word} within {within_label} of {refs[ref]}"
                defs += [
                    _count(mid, label, group="inquiry", incident=incident),
                    _pct(
                        f"{mid}_pct", f"{label} (%)", mid, went, group="inquiry", incident=incident
                    ),
                ]
        for mid, label in (
            (f"{base}.children_missing_at_period_end", f"Of those, still {word} at 31 March"),
            (
                f"{base}.children_missing_28_days_or_more",
                f"Of those, {word} for 28 days or more in one incident",
            ),
        ):
            defs += [
                _count(mid, label, group="inquiry", incident=incident),
                _pct(f"{mid}_pct", f"{label} (%)", mid, went, group="inquiry", incident=incident),
            ]
    for stage, code in STAGE_CODES.items():
        stage_label = stage.replace("_", " ").capitalize()
        for column in NRM_COLUMNS:
            for quarter in [*period.quarters(), "all"]:
                when = "the year" if quarter == "all" else quarter_label(quarter)
                defs.append(
                    _count(
                        f"trafficking.nrm.{code}.{column}.{quarter}",
                        f"Of them, NRM {stage_label.lower()} decisions, {column}, {when}",
                        group="inquiry",
                        incident="NRM",
                    )
                )
    return defs


def quarter_label(quarter: str) -> str:
    """`2024-04` -> `April to June 2024` (the Home Office names quarters by their months)."""
    year, month = int(quarter[:4]), int(quarter[5:7])
    first = dt.date(year, month, 1).strftime("%B")
    last = dt.date(year, month + 2, 1).strftime("%B")
    return f"{first} to {last} {year}"


def relations_for(period: Period) -> list[Relation]:
    """Exact totals among the measures published per council (for secondary suppression)."""
    relations: list[Relation] = []
    quarters = period.quarters()
    for code in STAGE_CODES.values():
        cell = f"trafficking.nrm.{code}"
        for quarter in [*quarters, "all"]:
            relations.append(
                Relation(
                    f"{cell}.total.{quarter}",
                    tuple(f"{cell}.{o}.{quarter}" for o in NRM_OUTCOMES),
                )
            )
        for column in NRM_COLUMNS:
            relations.append(
                Relation(f"{cell}.{column}.all", tuple(f"{cell}.{column}.{q}" for q in quarters))
            )
    return relations


def bounds_for() -> list[UpperBound]:
    """Inequalities anyone can use against suppressed cells (see `UpperBound`)."""
    return [
        UpperBound(f"{t}.children_more_than_once", f"{t}.incidents", f"{t}.children")
        for t, _code in INCIDENT_TYPES
    ]


# -- computing ------------------------------------------------------------------------------


def age_band_of(incident: IncidentFact) -> str:
    """The official age band at the start of an incident."""
    age = incident.age_years
    if age is None:
        return _AGE_BAND_FALLBACK.get(incident.age_band or "", "not_known")
    if age < 0:
        return "not_known"
    if age < 1:
        return "under_1"
    if age < 5:
        return "1_to_4"
    if age < 10:
        return "5_to_9"
    if age < 16:
        return "10_to_15"
    return "16_and_over"


def duration_band_of(incident: IncidentFact) -> str:
    """The duration band of an incident, in whole days from start to end."""
    if incident.until is None:
        return "not_ended"
    days = (incident.until - incident.since) // ONE_DAY
    if days < 1:
        return "less_than_1_day"
    if days <= 2:
        return "1_to_2_days"
    if days <= 7:
        return "3_to_7_days"
    for upper, band in ((10, "8_to_10_days"), (15, "11_to_15_days"), (20, "16_to_20_days")):
        if days <= upper:
            return band
    if days <= 30:
        return "21_to_30_days"
    return "more_than_30_days"


def time_to_first_band(elapsed: dt.timedelta | None) -> str:
    """The band of the time from a start of care or placement to the first incident."""
    if elapsed is None or elapsed < dt.timedelta(0):
        return "not_known"
    if elapsed <= HOURS_48:
        return "within_48_hours"
    if elapsed <= DAYS_7:
        return "2_to_7_days"
    if elapsed <= DAYS_28:
        return "8_to_28_days"
    return "more_than_28_days"


def looked_after_during(episodes: Iterable[Episode], period: Period) -> bool:
    """Whether a non-short-break episode overlaps the period."""
    return any(
        e.legal_status not in SHORT_BREAK_LEGAL_STATUSES
        and (e.start is None or e.start < period.end_at)
        and (e.end is None or e.end >= period.start_at)
        for e in episodes
    )


def episode_at(episodes: Iterable[Episode], at: dt.datetime) -> Episode | None:
    """The episode in force at an instant (the latest to start, if the feed overlaps)."""
    found = None
    for episode in episodes:
        if episode.in_force_at(at):
            found = episode
    return found


def looked_after_at(episodes: Iterable[Episode], at: dt.datetime) -> bool:
    """Whether the child is looked after at an instant, short breaks (V3/V4) not counting."""
    episode = episode_at(episodes, at)
    return episode is not None and episode.legal_status not in SHORT_BREAK_LEGAL_STATUSES


def _elapsed(since: dt.datetime, start: dt.datetime | None) -> dt.timedelta | None:
    return None if start is None else since - start


def _empty(
    defs: list[MeasureDef], trafficking_known: bool, boundary_known: bool
) -> dict[str, int | None]:
    """Zero counts, with `None` (`x`) for what the council's feed has never carried."""
    counts: dict[str, int | None] = {}
    for m in defs:
        if m.ratio is not None or m.statistic:
            continue
        unknown = (not trafficking_known and m.id.startswith("trafficking.")) or (
            not boundary_known and m.id.endswith(UNKNOWN_WITHOUT_BOUNDARY)
        )
        counts[m.id] = None if unknown else 0
    return counts


def compute(state: StatsState, period: Period, categories: Categories | None = None) -> Results:
    """Every measure for every council that has sent anything, and for England."""
    cats = categories or Categories.of(state)
    defs = measure_defs(period, cats)
    councils = {
        code: _empty(defs, code in state.trafficking_reported, code in state.boundary_reported)
        for code in sorted(state.councils)
    }
    referred_from: dict[str, dt.datetime] = {}
    decisions_of: dict[str, list[str]] = {}
    for key, referral in state.referrals.items():
        if not referral.child:
            continue
        first = referred_from.get(referral.child)
        if first is None or referral.submitted_at < first:
            referred_from[referral.child] = referral.submitted_at
        decisions_of.setdefault(referral.child, []).append(key)
    durations: dict[str, list[int]] = {t: [] for t, _ in INCIDENT_TYPES}

    for child_key, child in state.children.items():
        episodes = child.episodes()
        if not looked_after_during(episodes, period):
            continue
        counts = councils[child.council]
        _add(counts, "children_looked_after")
        referred = referred_from.get(child_key)
        in_cohort = (
            child.trafficking_from is not None and child.trafficking_from < period.end_at
        ) or (referred is not None and referred < period.end_at)
        if in_cohort and counts["trafficking.children_looked_after"] is not None:
            _add(counts, "trafficking.children_looked_after")
        for t, code in INCIDENT_TYPES:
            durations[t] += _count_incidents(
                counts, t, code, child, episodes, period, in_cohort, cats
            )
        if in_cohort:
            for referral_id in decisions_of.get(child_key, []):
                for decision in state.decisions.get(referral_id, {}).values():
                    if not period.start <= decision.decision_date <= period.end:
                        continue
                    cell = f"trafficking.nrm.{STAGE_CODES[decision.stage]}"
                    quarter = quarter_of(decision.decision_date)
                    for column in (decision.outcome, "total"):
                        _add(counts, f"{cell}.{column}.{quarter}")
                        _add(counts, f"{cell}.{column}.all")

    national = aggregate(defs, councils.values())
    statistics: dict[str, str] = {}
    for t, days in durations.items():
        statistics[f"{t}.duration_days.mean"] = (
            format_average(sum(days), len(days)) if days else NOT_APPLICABLE
        )
        statistics[f"{t}.duration_days.median"] = (
            f"{round_half_up(Fraction(exact_median(days)), 1):.1f}" if days else NOT_APPLICABLE
        )
    return Results(
        period, defs, councils, national, relations_for(period), bounds_for(), statistics
    )


def exact_median(values: list[int]) -> Fraction:
    """The median as an exact fraction (the mean of the two middle values for an even count)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return Fraction(ordered[middle])
    return Fraction(ordered[middle - 1] + ordered[middle], 2)


def _add(counts: dict[str, int | None], key: str, amount: int = 1) -> None:
    value = counts[key]
    if value is not None:
        counts[key] = value + amount


def _count_incidents(
    counts: dict[str, int | None],
    t: str,
    code: str,
    child: ChildFacts,
    episodes: list[Episode],
    period: Period,
    in_cohort: bool,
    cats: Categories,
) -> list[int]:
    """Add one child's incidents of one type to the council's counts; the whole-day durations
    of its ended incidents during the period (for the national mean and median).

    An incident counts only if it started while the child was looked after (an episode in
    force that is not a short break); a child counts as missing at the period end only if an
    incident that started in care is still open then and the child is still looked after.
    """
    of_type = sorted(
        (
            i
            for i in child.incidents.values()
            if i.missing_type == code and looked_after_at(episodes, i.since)
        ),
        key=lambda i: i.since,
    )
    during = [i for i in of_type if period.contains(i.since)]
    still_in_care = looked_after_at(episodes, period.end_at - ONE_MICROSECOND)
    open_at_end = [
        i
        for i in of_type
        if still_in_care
        and i.since < period.end_at
        and (i.until is None or i.until >= period.end_at)
    ]
    if open_at_end:
        _add(counts, f"{t}.children_at_period_end")
        if open_at_end[-1].uasc:
            _add(counts, f"{t}.children_at_period_end_uasc")
    if not during:
        return []
    _add(counts, f"{t}.children")
    _add(counts, f"{t}.incidents", len(during))
    if len(during) > 1:
        _add(counts, f"{t}.children_more_than_once")
    sex = child.sex if child.sex in cats.sexes else NOT_KNOWN
    ethnicity = child.ethnicity if child.ethnicity in cats.ethnicities else NOT_KNOWN
    days: list[int] = []
    for incident in during:
        _add(counts, f"{t}.incidents_by_age.{age_band_of(incident)}")
        _add(counts, f"{t}.incidents_by_duration.{duration_band_of(incident)}")
        if incident.until is not None:
            days.append((incident.until - incident.since) // ONE_DAY)
        episode = episode_at(episodes, incident.since)
        inside = incident.inside_boundary
        if inside is None and episode is not None:
            inside = episode.inside_boundary
        band = (
            "not_known" if inside is None else "inside_boundary" if inside else "outside_boundary"
        )
        _add(counts, f"{t}.incidents_by_placement.{band}")
        placement_type = episode.placement_type if episode is not None else None
        if placement_type not in cats.placement_types:
            placement_type = NOT_KNOWN
        _add(counts, f"{t}.incidents_by_placement_type.{placement_type}")
        _add(counts, f"{t}.incidents_by_gender.{sex}")
        _add(counts, f"{t}.incidents_by_ethnicity.{ethnicity}")
        _add(counts, f"{t}.incidents_by_month.{incident.since:%Y-%m}")
    first = during[0]
    episode = episode_at(episodes, first.since)
    from_care = _elapsed(first.since, episode.care_start if episode else None)
    from_placement = _elapsed(first.since, episode.placement_start if episode else None)
    _add(counts, f"{t}.time_to_first_incident.from_care_start.{time_to_first_band(from_care)}")
    _add(
        counts,
        f"{t}.time_to_first_incident.from_placement_start.{time_to_first_band(from_placement)}",
    )
    if not in_cohort or counts["trafficking.children_looked_after"] is None:
        return days
    base = f"trafficking.{t}"
    _add(counts, f"{base}.children")
    for limit, within in ((HOURS_48, "48_hours"), (DAYS_7, "7_days")):
        if from_care is not None and dt.timedelta(0) <= from_care <= limit:
            _add(counts, f"{base}.first_within_{within}_of_care_start")
        if from_placement is not None and dt.timedelta(0) <= from_placement <= limit:
            _add(counts, f"{base}.first_within_{within}_of_placement_start")
    if open_at_end:
        _add(counts, f"{base}.children_missing_at_period_end")
    if any(_missing_at_least(i, DAYS_28, period) for i in during):
        _add(counts, f"{base}.children_missing_28_days_or_more")
    return days


def _missing_at_least(incident: IncidentFact, span: dt.timedelta, period: Period) -> bool:
    """Still missing `span` after it started (an open incident is measured to the period end)."""
    end = incident.until if incident.until is not None else period.end_at
    return end - incident.since >= span
