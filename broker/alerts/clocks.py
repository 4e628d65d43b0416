"""Per-child clocks on event time: the pure core of the alerts service.

For each child (council id, the council's child id) the engine keeps what it has seen of the
child's events (type, when it occurred, the few values rules use, which rules it starts or
stops) and the alerts already raised. Clocks are not stored as timers but derived from that
history whenever asked, so an event that arrives late counts as if it had come on time:

- a clock of rule R started by event S has one due time per stage: `S.occurred_at + duration`;
- a stage is stopped by any stop event of R for the same child that occurred at or after S and
  at or before that due time, whenever it arrived (also before S: out of order across agencies);
- a stage is due at service time `now` when `now >= due` and it is neither stopped nor raised.

An alert has an id derived from (service, rule, start event, stage), recorded as raised in the
same Kafka transaction that publishes it, so no alert is raised twice; the router's
de-duplication of event ids backs that up.
"""

from __future__ import annotations

import json
import string
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from broker.agreements.conditions import (
    EVENT_NAMES,
    Condition,
    ConditionFailed,
    compile_condition,
    to_cel,
)
from broker.agreements.evaluate import EventView
from broker.alerts.model import AlertRule, Trigger

# Names a rule condition may use beside the event's fields (no `recipient`: nobody receives).
HISTORY_NAMES = frozenset({"episodes_90d", "hours_since_placement", "guardian_appointed",
                           "nrm_referred"})
RULE_NAMES = (EVENT_NAMES - {"recipient"}) | HISTORY_NAMES
# Placeholders a message or action may use: context, never a personal value.
MESSAGE_NAMES = frozenset({"stage", "risk_level", "hours_since_placement", "episodes_90d",
                           "due_at", "clock_started_at", "local_authority", "priority"})
# Values kept from every event besides those rule conditions use (for the alert's context).
KEPT_FIELDS = frozenset({"risk_level", "trafficking_concern", "uasc", "guardian_service",
                         "missing_type"})
EPISODE_WINDOW = timedelta(days=90)
PLACEMENT_TYPES = ("child.care.started", "child.placement.changed")
ALERT_NAMESPACE = uuid.UUID("5b0f4a52-4c7e-4f58-9d7e-6f1d2b0a7c11")
ALERT_EVENT_TYPE = "alert.raised"

ChildKey = tuple[str, str]  # (council agency id, the council's child id)
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def child_key(view: EventView) -> ChildKey | None:
    """Which child an event is about: council events by their issuer, police and NRM events by
    their `local_authority` field; None when the event names no council child id."""
    council = view.issuer if view.issuer.startswith("council.") else view.fields.get(
        "local_authority")
    child = view.fields.get("la_child_id")
    if not isinstance(council, str) or not council or not isinstance(child, str) or not child:
        return None
    return council, child


@dataclass
class Seen:
    """One event of a child as the engine remembers it."""

    event_id: str
    event_type: str
    at: datetime
    values: dict[str, Any]
    starts: list[str]  # rule keys this event starts a clock of
    stops: list[str]  # rule keys this event stops clocks of
    context: dict[str, Any]  # history values at `at` (episodes_90d, hours_since_placement)
    # The alert ids of its clocks' stages, by (rule key, stage): derived (a UUIDv5 each), so
    # computed once, not at every look at the child's clocks; never stored.
    ids: dict[tuple[str, int], str] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class ChildState:
    """What the engine remembers of one child."""

    seen: list[Seen] = field(default_factory=list)
    raised: set[str] = field(default_factory=set)  # alert ids

    def to_bytes(self) -> bytes:
        return json.dumps({
            "seen": [[s.event_id, s.event_type, s.at.isoformat(), s.values, s.starts, s.stops,
                      s.context] for s in self.seen],
            "raised": sorted(self.raised),
        }, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ChildState:
        raw = json.loads(data)
        seen = [Seen(i, t, datetime.fromisoformat(a), dict(v), list(s1), list(s2), dict(c))
                for i, t, a, v, s1, s2, c in raw["seen"]]
        if not all(isinstance(s.event_id, str) and s.at.tzinfo for s in seen):
            raise ValueError("malformed child state")
        return cls(seen, {str(r) for r in raw["raised"]})


@dataclass(frozen=True)
class AlertDue:
    """One stage of one clock that has run out: the alert to raise."""

    alert_id: str
    rule: AlertRule
    child: ChildKey
    start: Seen
    stage: timedelta
    due_at: datetime
    guardian_service: str | None

    def event(self) -> dict[str, Any]:
        """The EVENTS.md JSON form of the `alert.raised` event."""
        council, child = self.child
        values = self.start.values
        context = self.message_context()
        fields = {
            "la_child_id": child,
            "local_authority": council,
            "rule": self.rule.key,
            "title": self.rule.title,
            "priority": self.rule.priority,
            "message": _render(self.rule.message, context),
            "action": _render(self.rule.action, context),
            "clock_started_at": _iso(self.start.at),
            "due_at": _iso(self.due_at),
            "stage": iso_duration(self.stage),
            "trigger_event_type": self.start.event_type,
            "trigger_event_id": self.start.event_id,
            "risk_level": values.get("risk_level"),
            "uasc": _bool_or_none(values.get("uasc")),
            "trafficking_concern": _bool_or_none(values.get("trafficking_concern")),
            "hours_since_placement": self.start.context.get("hours_since_placement"),
            "episodes_90d": self.start.context.get("episodes_90d"),
            "guardian_service": self.guardian_service,
        }
        return {"event_type": ALERT_EVENT_TYPE, "event_id": self.alert_id,
                "subject": f"{council}/{child}", "occurred_at": _iso(self.due_at),
                "fields": fields}

    def message_context(self) -> dict[str, str]:
        values = self.start.values
        hours = self.start.context.get("hours_since_placement")
        return {
            "stage": human_duration(self.stage),
            "risk_level": str(values.get("risk_level") or "not graded"),
            "hours_since_placement": "unknown" if hours is None else str(hours),
            "episodes_90d": str(self.start.context.get("episodes_90d", 0)),
            "due_at": _iso(self.due_at),
            "clock_started_at": _iso(self.start.at),
            "local_authority": self.child[0],
            "priority": self.rule.priority,
        }


@dataclass(frozen=True)
class Clock:
    """A clock as `status` reports it: no child id, no value."""

    council: str
    rule: str
    state: str  # "running" (not due yet) or "overdue" (raised, still not stopped)
    due_at: datetime


@dataclass(frozen=True, slots=True)
class ClockEntry:
    """One stage of a child's clock as the gauges count it, without the history: whether it is
    running or overdue at a time depends only on these (`state_at`). Kept per child by the
    service and renewed when the child changes, so counting open clocks never re-derives them."""

    rule: str
    due_at: datetime
    stoppable: bool  # the rule has a stopping event (else an immediate or escalation alert)
    raised: bool

    def state_at(self, now: datetime) -> str | None:
        """"running" (not due yet), "overdue" (due or raised, not stopped), None (not open)."""
        if not self.stoppable:
            return "running" if self.due_at > now else None
        return "overdue" if self.raised or self.due_at <= now else "running"


@dataclass(frozen=True)
class _Compiled:
    rule: AlertRule
    start: Condition | None
    stop: Condition | None


class Engine:
    """Applies alert rules to children's histories (pure: no Kafka, no wall clock)."""

    def __init__(self, rules: Iterable[AlertRule], *, service_id: str) -> None:
        self.service_id = service_id
        self.rules = {r.key: _Compiled(r, _compile(r.start), _compile(r.stop)) for r in rules}
        longest = max((d for r in self.rules.values() for d in _all_stages(r.rule)),
                      default=timedelta(0))
        # How long a child's history is kept: the longest clock plus the episode window.
        self.horizon = longest + EPISODE_WINDOW + timedelta(days=1)
        self.errors: list[tuple[str, str]] = []  # (rule key, reason) of failed conditions
        used = {n for c in self.rules.values() for cond in (c.start, c.stop) if cond
                for n in cond.names}
        self._kept = KEPT_FIELDS | (used - RULE_NAMES)

    def observe(self, state: ChildState, view: EventView, *, now: datetime) -> bool:
        """Remember `view` for its child; False if it was already seen (same event id)."""
        if any(s.event_id == view.event_id for s in state.seen):
            return False
        at = view.occurred_at.astimezone(UTC)
        context = _history(state, at)
        values = {k: _plain(view.fields.get(k)) for k in self._kept if k in view.fields}
        starts, stops = [], []
        for key, compiled in self.rules.items():
            if self._matches(compiled, compiled.rule.start, compiled.start, view, context, now):
                starts.append(key)
            stop = compiled.rule.stop
            if stop is not None and self._matches(compiled, stop, compiled.stop, view, context,
                                                  now):
                stops.append(key)
        state.seen.append(Seen(view.event_id, view.event_type, at, values, starts, stops,
                               context))
        state.seen.sort(key=lambda s: (s.at, s.event_id))
        return True

    def due(self, child: ChildKey, state: ChildState, now: datetime) -> list[AlertDue]:
        """Every stage whose time has come and that is neither stopped nor raised yet."""
        found = []
        for start, key, compiled, index, stage, due_at in self._stages(state):
            if due_at > now:
                continue
            alert_id = self.alert_id(compiled.rule, start, index)
            if alert_id in state.raised or self._stopped(state, key, start, due_at):
                continue
            found.append(AlertDue(alert_id, compiled.rule, child, start, stage, due_at,
                                  _guardian(state)))
        return sorted(found, key=lambda a: (a.due_at, a.alert_id))

    def next_due(self, state: ChildState) -> datetime | None:
        """The earliest due time of a stage neither raised nor stopped (None: nothing pending),
        so that the service looks only at children with something due."""
        return self.outlook(state)[0]

    def outlook(self, state: ChildState) -> tuple[datetime | None, list[ClockEntry]]:
        """`next_due` and `clock_entries` in one pass over the child's stages (what the service
        keeps of a child each time it changes)."""
        pending: datetime | None = None
        entries = []
        for start, key, compiled, index, _stage, due_at in self._stages(state):
            raised = self.alert_id(compiled.rule, start, index) in state.raised
            if compiled.rule.stop is None:
                entries.append(ClockEntry(key, due_at, False, False))
            elif not self._stopped(state, key, start, _END_OF_TIME):
                entries.append(ClockEntry(key, due_at, True, raised))
            elif self._stopped(state, key, start, due_at):
                continue  # stopped in time: neither pending nor open
            if not raised and (pending is None or due_at < pending):
                pending = due_at
        return pending, entries

    def clocks(self, child: ChildKey, state: ChildState, now: datetime) -> list[Clock]:
        """Open clocks of a child: stages still running, and raised ones not stopped since."""
        return [Clock(child[0], entry.rule, at, entry.due_at)
                for entry in self.clock_entries(state)
                if (at := entry.state_at(now)) is not None]

    def clock_entries(self, state: ChildState) -> list[ClockEntry]:
        """Every stage of the child's clocks not stopped for good, whatever the time (what
        `clocks` judges at a time)."""
        return self.outlook(state)[1]

    def prune(self, state: ChildState, now: datetime) -> None:
        """Forget what is older than the horizon (its alerts can no longer come due)."""
        cutoff = now - self.horizon
        kept = [s for s in state.seen if s.at >= cutoff]
        if len(kept) != len(state.seen):
            state.seen = kept
            live = {self.alert_id(c.rule, s, i) for s, _, c, i, _, _ in self._stages(state)}
            state.raised &= live

    def alert_id(self, rule: AlertRule, start: Seen, stage: int) -> str:
        cached = start.ids.get((rule.key, stage))
        if cached is None:
            name = f"{self.service_id}|{rule.key}|{start.event_id}|{stage}"
            cached = start.ids[(rule.key, stage)] = str(uuid.uuid5(ALERT_NAMESPACE, name))
        return cached

    def _stages(self, state: ChildState) -> Iterable[tuple[Seen, str, _Compiled, int, timedelta,
                                                           datetime]]:
        for start in state.seen:
            for key in start.starts:
                compiled = self.rules.get(key)
                if compiled is None:  # a rule since removed: its clocks stop
                    continue
                for index, stage in enumerate(compiled.rule.stages(start.values.get("risk_level"))):
                    yield start, key, compiled, index, stage, start.at + stage

    @staticmethod
    def _stopped(state: ChildState, key: str, start: Seen, due_at: datetime) -> bool:
        # In time means by the due time: a report made exactly when it was due stops the clock.
        return any(key in s.stops and s is not start and start.at <= s.at <= due_at
                   for s in state.seen)

    def _matches(self, compiled: _Compiled, trigger: Trigger, condition: Condition | None,
                 view: EventView, context: Mapping[str, Any], now: datetime) -> bool:
        if view.event_type not in trigger.event_types:
            return False
        if condition is None:
            return True
        values: dict[str, Any] = {"issuer": view.issuer, "event_type": view.event_type,
                                  "occurred_at": view.occurred_at, "now": now, **context}
        for name in condition.names:
            if name not in values:
                values[name] = to_cel(view.fields.get(name))
        try:
            return condition.evaluate(values)
        except ConditionFailed as failed:
            self.errors.append((compiled.rule.key, failed.reason))
            return False


def _compile(trigger: Trigger | None) -> Condition | None:
    if trigger is None or trigger.when is None:
        return None
    return compile_condition(trigger.when)  # check_rules_dir has compiled it once already


def _all_stages(rule: AlertRule) -> list[timedelta]:
    return [*rule.after, *(d for stages in rule.after_by_risk.values() for d in stages)]


def _history(state: ChildState, at: datetime) -> dict[str, Any]:
    """The history names of a rule condition, as they stood when an event occurred."""
    earlier = [s for s in state.seen if s.at < at]
    episodes = sum(1 for s in earlier
                   if s.event_type == "child.missing.started" and s.at >= at - EPISODE_WINDOW)
    placed = [s.at for s in earlier if s.event_type in PLACEMENT_TYPES]
    hours = int((at - max(placed)).total_seconds() // 3600) if placed else None
    return {
        "episodes_90d": episodes,
        "hours_since_placement": hours,
        "guardian_appointed": any(s.event_type == "guardian.appointed" for s in earlier),
        "nrm_referred": any(s.event_type == "nrm.referral.submitted" for s in earlier),
    }


def _guardian(state: ChildState) -> str | None:
    for seen in reversed(state.seen):
        service = seen.values.get("guardian_service")
        if seen.event_type == "guardian.appointed" and isinstance(service, str):
            return service
    return None


def _plain(value: Any) -> Any:
    """A JSON-able scalar for the state (anything else is not kept)."""
    value = to_cel(value)
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return None


def _bool_or_none(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_duration(value: timedelta) -> str:
    """ISO 8601 duration of whole seconds: PT0S, PT4H, P3D, P1DT2H."""
    seconds = int(value.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    text = f"P{days}D" if days else "P"
    if time:
        text += f"T{time}"
    return "PT0S" if text == "P" else text


def human_duration(value: timedelta) -> str:
    """`48 hours`, `7 days`, `at once` (for messages)."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "at once"
    if seconds % 86400 == 0 and seconds >= 3 * 86400:
        days = seconds // 86400
        return f"{days} day{'s' if days != 1 else ''}"
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = seconds // 60
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def placeholders(text: str) -> list[str]:
    """The `{name}` placeholders of a message or action text."""
    return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]


def _render(text: str, context: Mapping[str, str]) -> str:
    return text.format_map(context)
