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
from collections.abc import Iterable
from dataclasses import dataclass, field

from broker.stats.disclosure import Ratio, Relation, UpperBound
from broker.stats.events import (
    NRM_OUTCOMES,
    Episode,
    IncidentFact,
    StatsState,
)
from broker.stats.exceptions import StatsError

SHORT_BREAK_LEGAL_STATUSES = frozenset({"V3", "V4"})
INCIDENT_TYPES = (("missing", "M"), ("away", "A"))

AGE_BANDS = ("under_1", "1_to_4", "5_to_9", "10_to_15", "16_and_over", "not_known")
DURATION_BANDS = (
    "less_than_1_day",
    "1_to_2_days",
    "3_to_7_days",
    "8_to_14_days",
    "15_to_30_days",
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
    """One published measure: its id (the CSV's `measure`), a label, and how it is made."""

    id: str
    label: str
    ratio: Ratio | None = None
    council: bool = True  # False: a national breakdown, not published per council


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

    def ratios(self, council_level: bool) -> dict[str, Ratio]:
        return {
            m.id: m.ratio
            for m in self.measures
            if m.ratio is not None and (m.council or not council_level)
        }

    def council_counts(self, code: str) -> dict[str, int | None]:
        """The counts published for one council (national-only breakdowns left out)."""
        published = {m.id for m in self.measures if m.council and m.ratio is None}
        return {k: v for k, v in self.councils[code].items() if k in published}


# -- the catalogue of measures ----------------------------------------------------------------

_TYPE_WORD = {"missing": "missing", "away": "away from placement without authorisation"}


def _count(mid: str, label: str, council: bool = True) -> MeasureDef:
    return MeasureDef(mid, label, None, council)


def _pct(mid: str, label: str, num: str, den: str, council: bool = True) -> MeasureDef:
    return MeasureDef(mid, label, Ratio("percent", num, den), council)


def measure_defs(period: Period) -> list[MeasureDef]:
    """Every measure for `period`, in publication order."""
    defs = [_count("children_looked_after", "Children looked after during the year")]
    for t, _code in INCIDENT_TYPES:
        word = _TYPE_WORD[t]
        defs += [
            _count(f"{t}.children", f"Children who had a {word} incident during the year"),
            _count(f"{t}.incidents", f"Number of {word} incidents during the year"),
            _count(
                f"{t}.children_more_than_once",
                f"Children who went {word} more than once during the year",
            ),
            _count(f"{t}.children_at_period_end", f"Children {word} at 31 March (period end)"),
            _pct(
                f"{t}.children_pct",
                f"Percentage of children who had a {word} incident during the year",
                f"{t}.children",
                "children_looked_after",
            ),
            MeasureDef(
                f"{t}.incidents_per_child",
                f"Average number of {word} incidents per looked after child who went {word}",
                Ratio("average", f"{t}.incidents", f"{t}.children"),
            ),
        ]
        defs += [
            _count(f"{t}.incidents_by_age.{b}", f"{word} incidents, age at start: {b}", False)
            for b in AGE_BANDS
        ]
        defs += [
            _count(f"{t}.incidents_by_duration.{b}", f"{word} incidents lasting {b}", False)
            for b in DURATION_BANDS
        ]
        defs += [
            _count(f"{t}.incidents_by_placement.{b}", f"{word} incidents, placement {b}", False)
            for b in PLACEMENT_BANDS
        ]
        defs.append(
            _count(
                f"{t}.children_at_period_end_uasc",
                f"Children {word} at 31 March (period end) who are UASC",
                False,
            )
        )
        defs += [
            _count(f"{t}.incidents_by_month.{m}", f"{word} incidents starting in {m}", False)
            for m in period.months()
        ]
        for ref in ("care_start", "placement_start"):
            defs += [
                _count(
                    f"{t}.time_to_first_incident.from_{ref}.{b}",
                    f"Children by time from {ref} to first {word} incident: {b}",
                    False,
                )
                for b in TIME_TO_FIRST_BANDS
            ]
    defs += _inquiry_defs(period)
    return defs


def _inquiry_defs(period: Period) -> list[MeasureDef]:
    cohort = "trafficking.children_looked_after"
    defs = [
        _count(
            cohort,
            "Children looked after during the year with a trafficking concern or NRM referral",
        )
    ]
    for t, _code in INCIDENT_TYPES:
        word = _TYPE_WORD[t]
        base = f"trafficking.{t}"
        went = f"{base}.children"
        defs += [
            _count(went, f"Of them, children who had a {word} incident during the year"),
            _pct(f"{went}_pct", f"Percentage of them who had a {word} incident", went, cohort),
        ]
        for within, ref in (
            ("48_hours", "care_start"),
            ("7_days", "care_start"),
            ("48_hours", "placement_start"),
            ("7_days", "placement_start"),
        ):
            mid = f"{base}.first_within_{within}_of_{ref}"
            label = f"Of those, first {word} incident within {within} of {ref}"
            defs += [_count(mid, label), _pct(f"{mid}_pct", f"{label} (%)", mid, went)]
        for mid, label in (
            (f"{base}.children_missing_at_period_end", f"Of those, still {word} at period end"),
            (
                f"{base}.children_missing_28_days_or_more",
                f"Of those, still {word} 28 days or more after going {word}",
            ),
        ):
            defs += [_count(mid, label), _pct(f"{mid}_pct", f"{label} (%)", mid, went)]
    for stage, code in STAGE_CODES.items():
        for column in NRM_COLUMNS:
            for quarter in [*period.quarters(), "all"]:
                when = "the period" if quarter == "all" else f"the quarter from {quarter}"
                defs.append(
                    _count(
                        f"trafficking.nrm.{code}.{column}.{quarter}",
                        f"NRM {stage.replace('_', ' ')} decisions ({column}) in {when}",
                    )
                )
    return defs


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
    if days <= 14:
        return "8_to_14_days"
    if days <= 30:
        return "15_to_30_days"
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


def _elapsed(since: dt.datetime, start: dt.datetime | None) -> dt.timedelta | None:
    return None if start is None else since - start


def _empty(
    defs: list[MeasureDef], trafficking_known: bool, boundary_known: bool
) -> dict[str, int | None]:
    """Zero counts, with `None` (`x`) for what the council's feed has never carried."""
    counts: dict[str, int | None] = {}
    for m in defs:
        if m.ratio is not None:
            continue
        unknown = (not trafficking_known and m.id.startswith("trafficking.")) or (
            not boundary_known and m.id.endswith(UNKNOWN_WITHOUT_BOUNDARY)
        )
        counts[m.id] = None if unknown else 0
    return counts


def compute(state: StatsState, period: Period) -> Results:
    """Every measure for every council that has sent anything, and for England."""
    defs = measure_defs(period)
    councils = {
        code: _empty(defs, code in state.trafficking_reported, code in state.boundary_reported)
        for code in sorted(state.councils)
    }
    referred_from: dict[str, dt.datetime] = {}
    decisions_of: dict[str, list[str]] = {}
    for key, referral in state.referrals.items():
        first = referred_from.get(referral.child)
        if first is None or referral.submitted_at < first:
            referred_from[referral.child] = referral.submitted_at
        decisions_of.setdefault(referral.child, []).append(key)

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
            _count_incidents(counts, t, code, child.incidents.values(), episodes, period, in_cohort)
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

    national: dict[str, int | None] = {}
    for m in defs:
        if m.ratio is not None:
            continue
        values = [c[m.id] for c in councils.values() if c[m.id] is not None]
        national[m.id] = sum(v for v in values if v is not None) if values else None
    return Results(period, defs, councils, national, relations_for(period), bounds_for())


def _add(counts: dict[str, int | None], key: str, amount: int = 1) -> None:
    value = counts[key]
    if value is not None:
        counts[key] = value + amount


def _count_incidents(
    counts: dict[str, int | None],
    t: str,
    code: str,
    incidents: Iterable[IncidentFact],
    episodes: list[Episode],
    period: Period,
    in_cohort: bool,
) -> None:
    """Add one child's incidents of one type to the council's counts."""
    of_type = sorted((i for i in incidents if i.missing_type == code), key=lambda i: i.since)
    during = [i for i in of_type if period.contains(i.since)]
    open_at_end = [
        i
        for i in of_type
        if i.since < period.end_at and (i.until is None or i.until >= period.end_at)
    ]
    if open_at_end:
        _add(counts, f"{t}.children_at_period_end")
        if open_at_end[-1].uasc:
            _add(counts, f"{t}.children_at_period_end_uasc")
    if not during:
        return
    _add(counts, f"{t}.children")
    _add(counts, f"{t}.incidents", len(during))
    if len(during) > 1:
        _add(counts, f"{t}.children_more_than_once")
    for incident in during:
        _add(counts, f"{t}.incidents_by_age.{age_band_of(incident)}")
        _add(counts, f"{t}.incidents_by_duration.{duration_band_of(incident)}")
        episode = episode_at(episodes, incident.since)
        inside = incident.inside_boundary
        if inside is None and episode is not None:
            inside = episode.inside_boundary
        band = (
            "not_known" if inside is None else "inside_boundary" if inside else "outside_boundary"
        )
        _add(counts, f"{t}.incidents_by_placement.{band}")
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
        return
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


def _missing_at_least(incident: IncidentFact, span: dt.timedelta, period: Period) -> bool:
    """Still missing `span` after it started (an open incident is measured to the period end)."""
    end = incident.until if incident.until is not None else period.end_at
    return end - incident.since >= span
