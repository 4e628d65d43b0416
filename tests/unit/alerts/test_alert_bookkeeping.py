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
from datetime import timedelta
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


def _observe(service: AlertsService, child: ChildKey, hours: float) -> None:
    state = service.states.setdefault(child, ChildState())
    event = missing(T0 + timedelta(hours=hours))
    event = event.__class__(f"{child[1]}-{event.event_id}", event.event_type, event.issuer,
                            event.subject, event.occurred_at,
                            {**event.fields, "la_child_id": child[1]})
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


def test_the_gauges_count_what_the_engine_derives(service: AlertsService) -> None:
    for n in range(4):
        _observe(service, _child(n), hours=n)
    state = service.states[_child(0)]
    due = service.engine.due(_child(0), state, T0 + timedelta(hours=2))
    state.raised.update(a.alert_id for a in due)
    service._schedule(_child(0))
    for hours in (0.5, 2.5, 30, 24 * 40):
        now = T0 + timedelta(hours=hours)
        derived = sorted((c.council, c.rule, c.state, c.due_at)
                         for child, s in service.states.items()
                         for c in service.engine.clocks(child, s, now))
        kept = sorted((c.council, c.rule, c.state, c.due_at) for c in service.open_clocks(now))
        assert kept == derived and derived


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
