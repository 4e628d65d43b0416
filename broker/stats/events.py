"""The statistics subscriber's state: what the feed has said about each child, kept per council.

The state holds facts, not totals: care episodes, missing incidents, trafficking flags, NRM
referrals and decisions, each keyed so that applying the same event twice changes nothing and the
order in which events arrive does not matter. Measures for any period are computed from the facts
(`broker.stats.measures`), so live, rebuilt-from-the-start and restored-from-a-snapshot states give
the same numbers. `snapshot()` / `StatsState.restore()` round-trip through plain JSON.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from broker.stats.exceptions import SnapshotError
from broker.stats.privacy import assert_no_personal_fields

# 2: episodes keep the placement type, children their sex and ethnicity, referrals the Home
# Office breakdown fields (a version 1 snapshot lacks them: rebuild from the feed).
SNAPSHOT_VERSION = 2

CARE_STARTED = "child.care.started"
PLACEMENT_CHANGED = "child.placement.changed"
CARE_ENDED = "child.care.ended"
MISSING_STARTED = "child.missing.started"
MISSING_ENDED = "child.missing.ended"
NRM_REFERRAL = "nrm.referral.submitted"
NRM_DECISION = "nrm.decision.made"
# Not in EVENTS.md yet: an episode that changes only the legal status (SSDA903 RNE L).
LEGAL_STATUS_CHANGED = "child.legal_status.changed"

# Names the statistics feed may use for the child, preferred first (the example agreement
# derives `child_pseudonym`).
CHILD_KEY_NAMES = ("child_pseudonym", "pseudonym")

# Child events whose common fields (uasc, trafficking_concern, ...) the state reads.
CHILD_EVENT_PREFIX = "child."
MISSING_TYPES = ("M", "A")
# SSDA903 RNE code for a new episode that changes only the legal status (same placement).
RNE_LEGAL_STATUS_ONLY = "L"


def parse_time(value: Any) -> dt.datetime:
    """An ISO 8601 time or date as an aware UTC datetime (a date means its midnight)."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) == 10:
            parsed = dt.datetime.combine(dt.date.fromisoformat(text), dt.time())
        else:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    else:
        raise ValueError("not a time")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _from_iso(value: Any) -> dt.datetime | None:
    return None if value is None else parse_time(value)


def disclosed(event: Mapping[str, Any], name: str) -> Any:
    """A value from the issuer-signed `fields`, else from the router's `derived` section."""
    fields = event.get("fields") or {}
    if fields.get(name) is not None:
        return fields[name]
    return (event.get("derived") or {}).get(name)


def first_disclosed(event: Mapping[str, Any], names: Iterable[str]) -> Any:
    """The first of `names` the event discloses (fields or derived), else None."""
    for name in names:
        value = disclosed(event, name)
        if value is not None:
            return value
    return None


def inside_boundary(event: Mapping[str, Any], council: str) -> bool | None:
    """Whether the placement is inside the council's area: a derived flag, or the ONS code of
    the placement's local authority compared with the council's own."""
    flag = _as_bool(disclosed(event, "placement_inside_boundary"))
    if flag is not None:
        return flag
    code = disclosed(event, "placement_local_authority")
    return None if not isinstance(code, str) else code == council


def _exact_time(
    event: Mapping[str, Any],
    time_name: str,
    date_name: str,
    occurred_at: dt.datetime,
    occurred_is_it: bool,
) -> dt.datetime | None:
    """A time the event gives as an exact time, or only as a date (`date_name`).

    When only the date is disclosed and the event's own `occurred_at` is that moment
    (`occurred_is_it`) on the same date, `occurred_at` gives the time of day.
    """
    exact = disclosed(event, time_name)
    if exact is not None:
        return parse_time(exact)
    on = disclosed(event, date_name)
    if on is None:
        return occurred_at if occurred_is_it else None
    midnight = parse_time(on)
    if occurred_is_it and occurred_at.date() == midnight.date():
        return occurred_at
    return midnight


def _as_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class EpisodeFact:
    """An event that opens or closes a care episode, as the feed reported it."""

    kind: str  # CARE_STARTED, PLACEMENT_CHANGED or CARE_ENDED
    at: dt.datetime
    legal_status: str | None = None
    inside_boundary: bool | None = None
    new_placement: bool = True
    placement_type: str | None = None  # SSDA903 PLACE

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "at": _iso(self.at),
            "legal_status": self.legal_status,
            "inside_boundary": self.inside_boundary,
            "new_placement": self.new_placement,
            "placement_type": self.placement_type,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EpisodeFact:
        at = _from_iso(data["at"])
        assert at is not None
        return cls(
            kind=data["kind"],
            at=at,
            legal_status=data.get("legal_status"),
            inside_boundary=data.get("inside_boundary"),
            new_placement=bool(data.get("new_placement", True)),
            placement_type=data.get("placement_type"),
        )


@dataclass
class IncidentFact:
    """One missing (`M`) or away (`A`) incident, merged from its started and ended events."""

    missing_type: str
    since: dt.datetime
    until: dt.datetime | None = None
    age_years: int | None = None
    age_band: str | None = None  # EVENTS.md band, used only when age_years is not disclosed
    uasc: bool | None = None
    inside_boundary: bool | None = None
    started_seen: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "missing_type": self.missing_type,
            "since": _iso(self.since),
            "until": _iso(self.until),
            "age_years": self.age_years,
            "age_band": self.age_band,
            "uasc": self.uasc,
            "inside_boundary": self.inside_boundary,
            "started_seen": self.started_seen,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IncidentFact:
        since = _from_iso(data["since"])
        assert since is not None
        return cls(
            missing_type=data["missing_type"],
            since=since,
            until=_from_iso(data.get("until")),
            age_years=data.get("age_years"),
            age_band=data.get("age_band"),
            uasc=data.get("uasc"),
            inside_boundary=data.get("inside_boundary"),
            started_seen=bool(data.get("started_seen", False)),
        )


@dataclass(frozen=True)
class Episode:
    """A stretch of care in one legal status and placement, derived from the episode facts.

    `end` is exclusive (None: still open). `care_start` / `placement_start` are None when the
    feed began after that start.
    """

    start: dt.datetime | None
    end: dt.datetime | None
    legal_status: str | None
    inside_boundary: bool | None
    care_start: dt.datetime | None
    placement_start: dt.datetime | None
    placement_type: str | None = None

    def in_force_at(self, at: dt.datetime) -> bool:
        """Whether this episode covers the instant `at`."""
        return (self.start is None or self.start <= at) and (self.end is None or at < self.end)


_KIND_ORDER = {CARE_ENDED: 0, CARE_STARTED: 1, PLACEMENT_CHANGED: 2}


class _Timeline:
    """Builds `Episode`s from episode facts applied in time order."""

    def __init__(self) -> None:
        self.done: list[Episode] = []
        self.current: Episode | None = None

    def close(self, at: dt.datetime) -> None:
        if self.current is not None:
            c = self.current
            self.done.append(
                Episode(
                    c.start,
                    at,
                    c.legal_status,
                    c.inside_boundary,
                    c.care_start,
                    c.placement_start,
                    c.placement_type,
                )
            )
            self.current = None

    def apply(self, fact: EpisodeFact) -> None:
        at = fact.at
        if fact.kind == CARE_ENDED:
            if self.current is None and not self.done:
                # Looked after since before the feed began.
                self.done.append(Episode(None, at, None, None, None, None))
            self.close(at)
            return
        previous = self.current
        self.close(at)
        placement_start = at if fact.new_placement else None
        if fact.kind == CARE_STARTED:
            self.current = Episode(
                at,
                None,
                fact.legal_status,
                fact.inside_boundary,
                at,
                placement_start,
                fact.placement_type,
            )
        elif previous is None:
            self.current = Episode(
                at,
                None,
                fact.legal_status,
                fact.inside_boundary,
                None,
                placement_start,
                fact.placement_type,
            )
        else:
            same_place = not fact.new_placement
            self.current = Episode(
                at,
                None,
                fact.legal_status or previous.legal_status,
                fact.inside_boundary
                if fact.inside_boundary is not None or not same_place
                else previous.inside_boundary,
                previous.care_start,
                previous.placement_start if same_place else at,
                fact.placement_type or (previous.placement_type if same_place else None),
            )

    def finish(self) -> list[Episode]:
        return [*self.done, *([self.current] if self.current is not None else [])]


@dataclass
class ChildFacts:
    """Everything the statistics feed has said about one child of one council."""

    council: str
    episode_facts: dict[str, EpisodeFact] = field(default_factory=dict)
    incidents: dict[str, IncidentFact] = field(default_factory=dict)
    trafficking_from: dt.datetime | None = None
    sex: str | None = None  # as the latest event that gave it said (EVENTS.md m/f/u)
    ethnicity: str | None = None  # SSDA903 ETHNIC code
    seen_at: dt.datetime | None = None  # occurred_at of the event that gave sex/ethnicity

    def note_characteristics(self, at: dt.datetime, sex: Any, ethnicity: Any) -> None:
        """Keep the latest sex and ethnicity the feed gave (order of arrival does not matter)."""
        if self.seen_at is not None and at < self.seen_at:
            self.sex = self.sex or (sex if isinstance(sex, str) else None)
            self.ethnicity = self.ethnicity or (ethnicity if isinstance(ethnicity, str) else None)
            return
        self.seen_at = at
        self.sex = sex if isinstance(sex, str) else self.sex
        self.ethnicity = ethnicity if isinstance(ethnicity, str) else self.ethnicity

    def note_trafficking(self, at: dt.datetime) -> None:
        """Record a trafficking concern known at `at` (the earliest one counts)."""
        if self.trafficking_from is None or at < self.trafficking_from:
            self.trafficking_from = at

    def episodes(self) -> list[Episode]:
        """The child's care timeline: later episodes supersede earlier ones from their start.

        Facts at the same instant: an end closes the spell that was open before it when a new
        care period starts at that instant (left care and came back the same day); otherwise
        the episodes starting at that instant come first and the end closes them (a one-day
        episode, or a move on the day care ended).
        """
        by_instant: dict[dt.datetime, list[tuple[str, EpisodeFact]]] = {}
        for key, fact in self.episode_facts.items():
            by_instant.setdefault(fact.at, []).append((key, fact))
        timeline = _Timeline()
        for at in sorted(by_instant):
            group = sorted(by_instant[at], key=lambda item: (_KIND_ORDER[item[1].kind], item[0]))
            ends = [f for _, f in group if f.kind == CARE_ENDED]
            starts = [f for _, f in group if f.kind != CARE_ENDED]
            restart = timeline.current is not None and any(f.kind == CARE_STARTED for f in starts)
            ordered = [*ends, *starts] if restart else [*starts, *ends]
            for fact in ordered:
                timeline.apply(fact)
        return timeline.finish()

    def to_json(self) -> dict[str, Any]:
        return {
            "council": self.council,
            "episode_facts": {k: v.to_json() for k, v in self.episode_facts.items()},
            "incidents": {k: v.to_json() for k, v in self.incidents.items()},
            "trafficking_from": _iso(self.trafficking_from),
            "sex": self.sex,
            "ethnicity": self.ethnicity,
            "seen_at": _iso(self.seen_at),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChildFacts:
        return cls(
            council=data["council"],
            episode_facts={
                k: EpisodeFact.from_json(v) for k, v in data.get("episode_facts", {}).items()
            },
            incidents={k: IncidentFact.from_json(v) for k, v in data.get("incidents", {}).items()},
            trafficking_from=_from_iso(data.get("trafficking_from")),
            sex=data.get("sex"),
            ethnicity=data.get("ethnicity"),
            seen_at=_from_iso(data.get("seen_at")),
        )


@dataclass
class Referral:
    """An NRM referral, with what the Home Office's tables break referrals down by.

    `council` and `child` are empty for a referral another kind of first responder (the police)
    made: it counts in the NRM tables but cannot be linked to a looked-after child.
    """

    council: str
    child: str
    submitted_at: dt.datetime
    first_responder_type: str | None = None
    age_at_exploitation: str | None = None
    exploitation_types: tuple[str, ...] = ()
    exploitation_location: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "council": self.council,
            "child": self.child,
            "submitted_at": _iso(self.submitted_at),
            "first_responder_type": self.first_responder_type,
            "age_at_exploitation": self.age_at_exploitation,
            "exploitation_types": list(self.exploitation_types),
            "exploitation_location": self.exploitation_location,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Referral:
        submitted_at = _from_iso(data["submitted_at"])
        assert submitted_at is not None
        return cls(
            council=data["council"],
            child=data["child"],
            submitted_at=submitted_at,
            first_responder_type=data.get("first_responder_type"),
            age_at_exploitation=data.get("age_at_exploitation"),
            exploitation_types=tuple(data.get("exploitation_types") or ()),
            exploitation_location=data.get("exploitation_location"),
        )


@dataclass
class Decision:
    """An NRM decision (`reasonable_grounds` / `conclusive_grounds`, `positive` / `negative`)."""

    stage: str
    outcome: str
    decision_date: dt.date

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "outcome": self.outcome,
            "decision_date": self.decision_date.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Decision:
        return cls(
            stage=data["stage"],
            outcome=data["outcome"],
            decision_date=dt.date.fromisoformat(data["decision_date"]),
        )


NRM_STAGES = ("reasonable_grounds", "conclusive_grounds")
NRM_OUTCOMES = ("positive", "negative")


def council_code(issuer: str) -> str | None:
    """`council.E09000033` -> `E09000033`; None for other kinds of agency."""
    kind, _, code = issuer.partition(".")
    return code if kind == "council" and code else None


def referral_key(event: Mapping[str, Any]) -> str | None:
    """The referral's identity as the statistics feed sees it (pseudonym preferred)."""
    value = disclosed(event, "referral_pseudonym") or disclosed(event, "referral_id")
    return str(value) if value is not None else None


@dataclass
class StatsState:
    """The statistics subscriber's state, built incrementally from verified feed events."""

    children: dict[str, ChildFacts] = field(default_factory=dict)
    referrals: dict[str, Referral] = field(default_factory=dict)
    decisions: dict[str, dict[str, Decision]] = field(default_factory=dict)
    # Councils that have ever said something about trafficking (else those measures are `x`).
    trafficking_reported: set[str] = field(default_factory=set)
    # Councils whose feed has ever placed a placement inside or outside their boundary (else
    # that breakdown is `x` for them and their incidents count as "not known").
    boundary_reported: set[str] = field(default_factory=set)
    councils: set[str] = field(default_factory=set)
    events_applied: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    # Where the source stood when the state was last saved (e.g. Kafka offsets); opaque here.
    position: dict[str, Any] = field(default_factory=dict)

    # -- consuming -------------------------------------------------------------------------

    def apply_all(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Apply events in the order given."""
        for event in events:
            self.apply(event)

    def apply(self, event: Mapping[str, Any]) -> bool:
        """Apply one feed event; False if it was rejected (counted in `rejected` by reason).

        Raises `PersonalFieldError` if the event carries personal data: the subscriber fails
        closed rather than hold what no agreement may give it.
        """
        assert_no_personal_fields(event)
        if event.get("verified") is not True:
            self.rejected["unverified"] += 1
            return False
        try:
            reason = self._apply(event)
        except (KeyError, TypeError, ValueError):
            reason = "malformed"
        if reason is not None:
            self.rejected[reason] += 1
            return False
        self.events_applied += 1
        return True

    def _child(self, event: Mapping[str, Any], council: str) -> tuple[str, ChildFacts]:
        """The child's key and facts (new, empty facts if the feed never mentioned it)."""
        # Without a pseudonym (no child id to derive it from) the event is its own child: the
        # statistics feed never holds the issuer's subject reference to group by.
        pseudonym = first_disclosed(event, CHILD_KEY_NAMES) or f"event:{event['event_id']}"
        key = f"{council}/{pseudonym}"
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = ChildFacts(council=council)
        return key, child

    def _apply(self, event: Mapping[str, Any]) -> str | None:
        event_type = str(event["event_type"])
        occurred_at = parse_time(event["occurred_at"])
        issuer = str(event["issuer"])
        if event_type == NRM_DECISION:
            return self._apply_decision(event)
        council = council_code(issuer)
        if event_type == NRM_REFERRAL:
            return self._apply_referral(event, council, occurred_at)
        if council is None:
            return "not_from_a_council"
        if not event_type.startswith(CHILD_EVENT_PREFIX):
            return "not_counted"
        self.councils.add(council)
        _, child = self._child(event, council)
        sex, ethnicity = disclosed(event, "sex"), disclosed(event, "ethnicity")
        if sex is not None or ethnicity is not None:
            child.note_characteristics(occurred_at, sex, ethnicity)
        concern = _as_bool(disclosed(event, "trafficking_concern"))
        concerns = disclosed(event, "exploitation_concerns")
        if concern is not None or isinstance(concerns, list):
            self.trafficking_reported.add(council)
        if concern or (isinstance(concerns, list) and "trafficking" in concerns):
            child.note_trafficking(occurred_at)
        event_id = str(event.get("event_id") or f"{event_type}@{occurred_at.isoformat()}")
        inside = inside_boundary(event, council)
        if inside is not None:
            self.boundary_reported.add(council)
        if event_type in (CARE_STARTED, PLACEMENT_CHANGED, LEGAL_STATUS_CHANGED):
            rne = disclosed(event, "reason_new_episode")
            only_legal = event_type == LEGAL_STATUS_CHANGED or rne == RNE_LEGAL_STATUS_ONLY
            child.episode_facts[event_id] = EpisodeFact(
                kind=CARE_STARTED if event_type == CARE_STARTED else PLACEMENT_CHANGED,
                at=occurred_at,
                legal_status=disclosed(event, "legal_status"),
                inside_boundary=inside,
                new_placement=not only_legal,
                placement_type=_as_str(disclosed(event, "placement_type")),
            )
        elif event_type == CARE_ENDED:
            child.episode_facts[event_id] = EpisodeFact(kind=CARE_ENDED, at=occurred_at)
        elif event_type in (MISSING_STARTED, MISSING_ENDED):
            return self._apply_missing(event, child, event_type, occurred_at, inside)
        return None

    def _apply_missing(
        self,
        event: Mapping[str, Any],
        child: ChildFacts,
        event_type: str,
        occurred_at: dt.datetime,
        inside: bool | None,
    ) -> str | None:
        """Merge a started or ended event into its incident.

        The statistics agreement may give only the date an incident started (`missing_date`),
        so an ended event is matched to its started one by type and start date; the exact
        start time comes from the started event's `occurred_at` when the date agrees.
        """
        missing_type = disclosed(event, "missing_type")
        if missing_type not in MISSING_TYPES:
            return "unknown_missing_type"
        since = _exact_time(
            event, "missing_since", "missing_date", occurred_at, event_type == MISSING_STARTED
        )
        if since is None:
            return "missing_since_absent"
        if event_type == MISSING_STARTED:
            incident = self._started_incident(child, missing_type, since)
            incident.started_seen = True
            incident.age_years = _as_int(disclosed(event, "age_years"))
            band = disclosed(event, "age_band")
            incident.age_band = band if isinstance(band, str) else None
            incident.uasc = _as_bool(disclosed(event, "uasc"))
            incident.inside_boundary = inside
        else:
            until = _exact_time(event, "missing_until", "returned_date", occurred_at, True)
            assert until is not None
            exact = disclosed(event, "missing_since") is not None
            incident = self._ended_incident(child, missing_type, since, until, exact)
            incident.until = until
            if not incident.started_seen and incident.uasc is None:
                incident.uasc = _as_bool(disclosed(event, "uasc"))
        return None

    @staticmethod
    def _started_incident(child: ChildFacts, missing_type: str, since: dt.datetime) -> IncidentFact:
        key = f"{missing_type}@{since.isoformat()}"
        if key in child.incidents:
            return child.incidents[key]
        # An ended event that came first made a placeholder at the start date: take it over.
        for other_key, other in sorted(child.incidents.items()):
            if (
                not other.started_seen
                and other.missing_type == missing_type
                and other.since.date() == since.date()
            ):
                del child.incidents[other_key]
                other.since = since
                child.incidents[key] = other
                return other
        incident = child.incidents[key] = IncidentFact(missing_type=missing_type, since=since)
        return incident

    @staticmethod
    def _ended_incident(
        child: ChildFacts,
        missing_type: str,
        since: dt.datetime,
        until: dt.datetime,
        since_is_exact: bool,
    ) -> IncidentFact:
        key = f"{missing_type}@{since.isoformat()}"
        exact = child.incidents.get(key)
        if since_is_exact:
            if exact is None:
                exact = child.incidents[key] = IncidentFact(missing_type=missing_type, since=since)
            return exact
        same_day = sorted(
            (
                i
                for i in child.incidents.values()
                if i.missing_type == missing_type
                and i.since.date() == since.date()
                and i.since <= until
            ),
            key=lambda i: i.since,
        )
        for incident in same_day:  # the replay of this end, else the first still open
            if incident.until == until:
                return incident
        for incident in same_day:
            if incident.until is None:
                return incident
        if exact is not None:
            return exact
        incident = child.incidents[key] = IncidentFact(missing_type=missing_type, since=since)
        return incident

    def _apply_referral(
        self, event: Mapping[str, Any], council: str | None, occurred_at: dt.datetime
    ) -> str | None:
        """A referral: a council's is linked to its child (the inquiry's cohort); any first
        responder's counts in the NRM tables."""
        key = referral_key(event)
        if key is None:
            return "referral_id_absent"
        child_key = ""
        if council is not None:
            self.councils.add(council)
            self.trafficking_reported.add(council)
            child_key, _ = self._child(event, council)
        types = disclosed(event, "exploitation_types")
        known = self.referrals.get(key)
        if known is None or occurred_at < known.submitted_at:
            self.referrals[key] = Referral(
                council or "",
                child_key,
                occurred_at,
                first_responder_type=_as_str(disclosed(event, "first_responder_type")),
                age_at_exploitation=_as_str(disclosed(event, "age_at_exploitation")),
                exploitation_types=tuple(
                    sorted({t for t in types if isinstance(t, str)})
                    if isinstance(types, list)
                    else ()
                ),
                exploitation_location=_as_str(disclosed(event, "exploitation_location")),
            )
        return None

    def _apply_decision(self, event: Mapping[str, Any]) -> str | None:
        key = referral_key(event)
        stage = disclosed(event, "stage")
        outcome = disclosed(event, "outcome")
        if key is None or stage not in NRM_STAGES or outcome not in NRM_OUTCOMES:
            return "malformed_decision"
        date_value = disclosed(event, "decision_date") or event["occurred_at"]
        decision_date = parse_time(date_value).date()
        self.decisions.setdefault(key, {})[stage] = Decision(stage, outcome, decision_date)
        return None

    # -- snapshot --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain JSON-compatible data (see `restore`)."""
        return {
            "version": SNAPSHOT_VERSION,
            "children": {k: v.to_json() for k, v in sorted(self.children.items())},
            "referrals": {k: v.to_json() for k, v in sorted(self.referrals.items())},
            "decisions": {
                k: {stage: d.to_json() for stage, d in sorted(v.items())}
                for k, v in sorted(self.decisions.items())
            },
            "trafficking_reported": sorted(self.trafficking_reported),
            "boundary_reported": sorted(self.boundary_reported),
            "councils": sorted(self.councils),
            "events_applied": self.events_applied,
            "rejected": dict(sorted(self.rejected.items())),
            "position": self.position,
        }

    @classmethod
    def restore(cls, data: Mapping[str, Any]) -> StatsState:
        """Rebuild a state from `snapshot()` output."""
        if not isinstance(data, Mapping) or data.get("version") != SNAPSHOT_VERSION:
            raise SnapshotError(
                f"statistics snapshot is not version {SNAPSHOT_VERSION}; "
                "delete it and rebuild from the feed's beginning"
            )
        try:
            return cls(
                children={k: ChildFacts.from_json(v) for k, v in data["children"].items()},
                referrals={k: Referral.from_json(v) for k, v in data["referrals"].items()},
                decisions={
                    k: {stage: Decision.from_json(d) for stage, d in v.items()}
                    for k, v in data["decisions"].items()
                },
                trafficking_reported=set(data["trafficking_reported"]),
                boundary_reported=set(data.get("boundary_reported", [])),
                councils=set(data["councils"]),
                events_applied=int(data["events_applied"]),
                rejected=Counter({str(k): int(v) for k, v in data["rejected"].items()}),
                position=dict(data.get("position") or {}),
            )
        except (KeyError, TypeError, ValueError, AssertionError) as exc:
            raise SnapshotError(
                f"statistics snapshot is damaged ({type(exc).__name__}); "
                "delete it and rebuild from the feed's beginning"
            ) from None
