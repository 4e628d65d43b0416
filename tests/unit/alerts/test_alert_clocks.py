"""The pure clock engine: clocks on event time, late and out-of-order events, raised once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from broker.agreements.evaluate import EventView
from broker.alerts import ChildState, Engine, load_rules
from broker.alerts.clocks import child_key
from broker.scaffold import REPO_ROOT

T0 = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
COUNCIL = "council.E09000033"
CHILD = (COUNCIL, "C123")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_rules(REPO_ROOT / "alerts" / "rules"), service_id="alerts.main")


def view(event_type: str, at: datetime, issuer: str = COUNCIL, **fields: Any) -> EventView:
    base = {"la_child_id": "C123"}
    if not issuer.startswith("council."):
        base["local_authority"] = COUNCIL
    return EventView(f"{event_type}-{at.isoformat()}", event_type, issuer, "s", at,
                     {**base, **fields})


def missing(at: datetime, **fields: Any) -> EventView:
    return view("child.missing.started", at, missing_type="M", risk_level="medium",
                trafficking_concern=False, uasc=False, **fields)


def rules_due(engine: Engine, state: ChildState, now: datetime) -> list[tuple[str, str]]:
    return [(a.rule.id, a.event()["fields"]["stage"]) for a in engine.due(CHILD, state, now)]


def raise_all(engine: Engine, state: ChildState, now: datetime) -> list[tuple[str, str]]:
    due = engine.due(CHILD, state, now)
    state.raised.update(a.alert_id for a in due)
    return [(a.rule.id, a.event()["fields"]["stage"]) for a in due]


def test_child_key_from_council_and_from_police() -> None:
    assert child_key(missing(T0)) == CHILD
    police = view("police.missing_report.opened", T0, issuer="police.met", police_ref="p")
    assert child_key(police) == CHILD
    assert child_key(EventView("e", "police.missing_report.opened", "police.met", "s", T0,
                               {"police_ref": "p"})) is None


def test_missing_without_police_report_is_raised_when_due_and_once(engine: Engine) -> None:
    state = ChildState()
    engine.observe(state, missing(T0), now=T0)
    assert rules_due(engine, state, T0 + timedelta(hours=1, minutes=59)) == []
    assert raise_all(engine, state, T0 + timedelta(hours=2)) == [
        ("missing-no-police-report", "PT2H")]
    assert rules_due(engine, state, T0 + timedelta(hours=3)) == []


def test_high_risk_has_the_shorter_clock(engine: Engine) -> None:
    state = ChildState()
    engine.observe(state, view("child.missing.started", T0, missing_type="M",
                               risk_level="high"), now=T0)
    assert ("missing-no-police-report", "PT30M") in rules_due(engine, state,
                                                              T0 + timedelta(minutes=30))


def test_a_police_report_in_time_stops_the_clock_even_when_it_arrives_first(
    engine: Engine,
) -> None:
    state = ChildState()
    report = view("police.missing_report.opened", T0 + timedelta(minutes=40),
                  issuer="police.met", police_ref="p")
    engine.observe(state, report, now=T0 + timedelta(hours=1))  # out of order
    engine.observe(state, missing(T0), now=T0 + timedelta(hours=1))
    assert "missing-no-police-report" not in {r for r, _ in rules_due(
        engine, state, T0 + timedelta(hours=5))}


def test_a_late_report_that_occurred_after_the_due_time_does_not_stop_it(engine: Engine) -> None:
    state = ChildState()
    engine.observe(state, missing(T0), now=T0)
    late = view("police.missing_report.opened", T0 + timedelta(hours=3), issuer="police.met",
                police_ref="p")
    engine.observe(state, late, now=T0 + timedelta(hours=3))
    assert ("missing-no-police-report", "PT2H") in rules_due(engine, state,
                                                            T0 + timedelta(hours=3))


def test_escalations_and_return_interview(engine: Engine) -> None:
    state = ChildState()
    engine.observe(state, missing(T0), now=T0)
    engine.observe(state, view("police.missing_report.opened", T0 + timedelta(minutes=5),
                               issuer="police.met", police_ref="p"), now=T0)
    raised = raise_all(engine, state, T0 + timedelta(days=8))
    assert [s for r, s in raised if r == "still-missing"] == ["P1D", "P2D", "P7D"]
    found = T0 + timedelta(days=8, hours=1)
    engine.observe(state, view("child.missing.ended", found, missing_type="M"), now=found)
    assert raise_all(engine, state, T0 + timedelta(days=40)) == [
        ("return-interview-overdue", "P3D")]  # no 28-day escalation: found after 8 days


def test_return_interview_in_time_means_no_alert(engine: Engine) -> None:
    state = ChildState()
    engine.observe(state, view("child.missing.ended", T0, missing_type="M"), now=T0)
    engine.observe(state, view("child.return_interview.recorded", T0 + timedelta(hours=50)),
                   now=T0)
    assert rules_due(engine, state, T0 + timedelta(days=5)) == []


def test_trafficked_child_missing_carries_risk_context(engine: Engine) -> None:
    state = ChildState()
    engine.observe(state, view("child.care.started", T0 - timedelta(hours=30),
                               trafficking_concern=True), now=T0)
    engine.observe(state, missing(T0 - timedelta(days=20)), now=T0)
    engine.observe(state, view("child.missing.started", T0, missing_type="M",
                               trafficking_concern=True, risk_level="high"), now=T0)
    (alert,) = [a for a in engine.due(CHILD, state, T0) if a.rule.id == "trafficked-child-missing"]
    fields = alert.event()["fields"]
    assert (fields["hours_since_placement"], fields["episodes_90d"]) == (30, 1)
    assert fields["priority"] == "high"
    assert "30 hour(s)" in fields["message"] and "1 earlier" in fields["message"]
    assert "C123" not in fields["message"] + fields["action"]


def test_third_episode_in_90_days(engine: Engine) -> None:
    state = ChildState()
    for days in (80, 30):
        engine.observe(state, view("child.missing.started", T0 - timedelta(days=days),
                                   missing_type="A"), now=T0)
    assert not [r for r, _ in raise_all(engine, state, T0) if r == "repeat-missing-review"]
    engine.observe(state, view("child.missing.started", T0, missing_type="A"), now=T0)
    assert [r for r, _ in raise_all(engine, state, T0) if r == "repeat-missing-review"] == [
        "repeat-missing-review"]


def test_nrm_and_guardian_clocks(engine: Engine) -> None:
    state = ChildState()
    engine.observe(state, view("child.care.started", T0, trafficking_concern=True), now=T0)
    assert {r for r, _ in rules_due(engine, state, T0 + timedelta(days=6))} == {
        "nrm-referral-overdue", "guardian-not-appointed"}
    engine.observe(state, view("nrm.referral.submitted", T0 + timedelta(days=1),
                               issuer="council.E09000033", referral_id="r"), now=T0)
    engine.observe(state, view("guardian.appointed", T0 + timedelta(days=2),
                               guardian_service="guardian.ictg"), now=T0)
    assert rules_due(engine, state, T0 + timedelta(days=6)) == []


def test_guardian_rule_only_where_the_service_covers_the_council(engine: Engine) -> None:
    state = ChildState()
    other = view("child.care.started", T0, issuer="council.E08000003", trafficking_concern=True)
    engine.observe(state, other, now=T0)
    assert "guardian-not-appointed" not in {a.rule.id for a in engine.due(
        ("council.E08000003", "C123"), state, T0 + timedelta(days=6))}


def test_state_round_trip_keeps_clocks_and_raised(engine: Engine) -> None:
    state = ChildState()
    engine.observe(state, missing(T0), now=T0)
    raise_all(engine, state, T0 + timedelta(hours=2))
    copy = ChildState.from_bytes(state.to_bytes())
    assert rules_due(engine, copy, T0 + timedelta(hours=2)) == []
    assert [r for r, _ in rules_due(engine, copy, T0 + timedelta(hours=24))] == ["still-missing"]


def test_clocks_running_and_overdue(engine: Engine) -> None:
    state = ChildState()
    engine.observe(state, missing(T0), now=T0)
    clocks = engine.clocks(CHILD, state, T0 + timedelta(hours=3))
    overdue = {c.rule for c in clocks if c.state == "overdue"}
    assert overdue == {"missing-no-police-report@1"}
    engine.observe(state, view("child.missing.ended", T0 + timedelta(hours=4),
                               missing_type="M"), now=T0)
    # The child's return stops the missing clocks (overdue or not); the interview clock runs.
    assert [(c.rule, c.state) for c in engine.clocks(CHILD, state, T0 + timedelta(hours=5))] == [
        ("return-interview-overdue@1", "running")]


def test_the_same_event_twice_is_seen_once(engine: Engine) -> None:
    state = ChildState()
    assert engine.observe(state, missing(T0), now=T0)
    assert not engine.observe(state, missing(T0), now=T0)


def test_feed_shows_alerts_first_and_plainly() -> None:
    from broker.alerts.display import alerts_first, plain

    other = {"event_type": "child.missing.started", "fields": {}}
    low = {"event_type": "alert.raised", "fields": {"priority": "low"}}
    high = {"event_type": "alert.raised", "fields": {
        "priority": "high", "title": "Child still missing", "la_child_id": "C1",
        "local_authority": COUNCIL, "clock_started_at": "2026-11-24T18:00:00Z",
        "due_at": "2026-11-26T18:00:00Z", "message": "Missing for\n 48 hours.",
        "action": "Escalate."}}
    assert alerts_first([other, low, high]) == [high, low, other]
    assert plain(high) == (
        f"HIGH ALERT: Child still missing - child C1 ({COUNCIL}), since 2026-11-24T18:00:00Z, "
        "due 2026-11-26T18:00:00Z: Missing for 48 hours. Do: Escalate.")
    assert "child (withheld)" in plain(low)
