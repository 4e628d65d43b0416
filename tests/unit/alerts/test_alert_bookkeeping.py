"""The alerts service's per-event bookkeeping (issue 17, cost per event): what it keeps so that a
transaction never looks at every child gives the same answers as deriving everything again.

- the children judged at a tick are those with a stage due (a heap, not a scan of every child);
- the clock gauges count each child's `ClockEntry` list, kept when the child changes, which
  judges exactly as `Engine.clocks` derives from the history;
- an alert id is derived once per stage and is the documented UUIDv5.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_alert_clocks import CHILD, COUNCIL, T0, missing, view

from broker.alerts import ChildState, Engine
from broker.alerts.clocks import ALERT_NAMESPACE, ChildKey
from broker.alerts.service import AlertsService, ManualClock
from broker.config import load_config
from broker.scaffold import ALERT_RULES, ALERTS_ID, DEMO_AGENCIES, write_deployment


@pytest.fixture()
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AlertsService:
    """The service's in-memory side only: a plaintext config naming no live cluster (the
    constructor connects to nothing; nothing here calls Kafka)."""
    monkeypatch.setenv("BROKER_ALERTS_STATE_SECRET", os.urandom(16).hex())
    path = write_deployment(tmp_path, bootstrap_servers="127.0.0.1:9", agencies={
        **DEMO_AGENCIES, ALERTS_ID: "alerts"}, alerts={"id": ALERTS_ID,
                                                       "rules_dir": str(ALERT_RULES)})
    return AlertsService(load_config(path), clock=ManualClock(T0))


def _child(n: int) -> ChildKey:
    return (COUNCIL, f"C{n}")


def _observe(service: AlertsService, child: ChildKey, hours: float, **fields: object) -> None:
    state = service.states.setdefault(child, ChildState())
    event = missing(T0 + timedelta(hours=hours))
    event = event.__class__(f"{child[1]}-{event.event_id}", event.event_type, event.issuer,
                            event.subject, event.occurred_at,
                            {**event.fields, "la_child_id": child[1], **fields})
    assert service.engine.observe(state, event, now=T0)
    service._schedule(child)


def test_the_children_judged_are_exactly_those_with_a_stage_due(service: AlertsService) -> None:
    for n in range(5):
        _observe(service, _child(n), hours=n)  # first due: 2 h after going missing
    assert service._ripe(T0 + timedelta(hours=1)) == set()
    assert service._ripe(T0 + timedelta(hours=3, minutes=30)) == {_child(0), _child(1)}
    assert service._ripe(T0 + timedelta(hours=3, minutes=30)) == set()  # taken until rescheduled
    # A child whose next due time moved: its old heap entry is skipped, the new one counts.
    police = view("police.missing_report.opened", T0 + timedelta(hours=2.5),
                  issuer="police.met", police_ref="p")
    police = police.__class__(police.event_id, police.event_type, police.issuer, police.subject,
                              police.occurred_at, {**police.fields, "la_child_id": "C2"})
    assert service.engine.observe(service.states[_child(2)], police, now=T0)
    service._schedule(_child(2))
    assert service.next_due[_child(2)] == T0 + timedelta(hours=26)  # still missing at 24 h
    assert service._ripe(T0 + timedelta(hours=4, minutes=30)) == set()  # its 4 h entry skipped
    assert service._ripe(T0 + timedelta(hours=5, minutes=30)) == {_child(3)}
    assert service._ripe(T0 + timedelta(hours=26)) == {_child(2), _child(4)}


def _reference(engine: Engine, child: ChildKey, state: ChildState,
               now: datetime) -> tuple[list[tuple[str, str, datetime]], datetime | None]:
    """Open clocks and the next due time straight from the rules' definition (docs/alerts.md,
    "Time"), stage by stage: what the kept entries must agree with."""
    clocks, pending = [], []
    end = datetime.max.replace(tzinfo=UTC)
    for start, key, compiled, index, _stage, due_at in engine._stages(state):
        raised = engine.alert_id(compiled.rule, start, index) in state.raised
        if not raised and not engine._stopped(state, key, start, due_at):
            pending.append(due_at)
        if compiled.rule.stop is None:
            if due_at > now:
                clocks.append((key, "running", due_at))
        elif not engine._stopped(state, key, start, end):
            late = raised or due_at <= now
            clocks.append((key, "overdue" if late else "running", due_at))
    return sorted(clocks), min(pending, default=None)


def test_the_kept_entries_judge_as_the_rules_define(service: AlertsService) -> None:
    engine = service.engine
    for n in range(6):
        _observe(service, _child(n), hours=n)
    _observe(service, _child(6), hours=2, trafficking_concern=True)  # an immediate alert too
    # A police report in time for C1, one too late for C2, the child found for C3; C0's
    # first alerts raised.
    for n, event_type, hours in ((1, "police.missing_report.opened", 2.5),
                                 (2, "police.missing_report.opened", 30),
                                 (3, "child.missing.ended", 4)):
        issuer = "police.met" if event_type.startswith("police.") else COUNCIL
        event = view(event_type, T0 + timedelta(hours=hours), issuer=issuer, police_ref="p",
                     missing_type="M")
        event = event.__class__(event.event_id, event.event_type, event.issuer, event.subject,
                                event.occurred_at, {**event.fields, "la_child_id": f"C{n}"})
        assert engine.observe(service.states[_child(n)], event, now=T0)
        service._schedule(_child(n))
    state = service.states[_child(0)]
    state.raised.update(a.alert_id for a in engine.due(_child(0), state, T0 + timedelta(hours=2)))
    service._schedule(_child(0))
    for hours in (0.5, 2, 2.5, 5, 30, 24 * 8, 24 * 40):  # 2: exactly when two are due
        now = T0 + timedelta(hours=hours)
        expected = []
        for child, child_state in service.states.items():
            clocks, next_due = _reference(engine, child, child_state, now)
            expected += [(child[0], *clock) for clock in clocks]
            assert service.next_due.get(child) == next_due
        kept = sorted((c.council, c.rule, c.state, c.due_at) for c in service.open_clocks(now))
        assert kept == sorted(expected) and expected
        derived = sorted((c.council, c.rule, c.state, c.due_at)
                         for child, s in service.states.items()
                         for c in engine.clocks(child, s, now))
        assert derived == kept


def test_an_alert_id_is_the_uuid5_of_service_rule_event_and_stage(engine: Engine) -> None:
    state = ChildState()
    engine.observe(state, missing(T0), now=T0)
    (alert, *_) = engine.due(CHILD, state, T0 + timedelta(days=30))
    start = alert.start
    name = f"alerts.main|{alert.rule.key}|{start.event_id}|0"
    assert engine.alert_id(alert.rule, start, 0) == str(uuid.uuid5(ALERT_NAMESPACE, name))
    assert start.ids  # kept on the event, never in its stored form
    assert "ids" not in state.to_bytes().decode()


@pytest.fixture(scope="module")
def engine() -> Engine:
    from broker.alerts import load_rules

    return Engine(load_rules(ALERT_RULES), service_id="alerts.main")
