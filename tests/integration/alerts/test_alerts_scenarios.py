"""Scenario tests of the alert rules on the real Kafka, with the alerts service's clock injected.

Each scenario publishes signed agency events, lets the real router forward them by agreement to
the alerts service, moves the service's clock, and reads the verified alerts the router forwarded
to the police, council and guardian feeds. For each rule: raised when due (and not before), not
raised when the stopping event came in time.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from alerts_helpers import (
    GUARDIAN,
    MET,
    T0,
    WESTMINSTER,
    AlertsDeployment,
    alerts_in_feed,
    child_event,
    police_report,
    rules_of,
    running,
    wait_applied,
    wait_for_alerts,
    wait_until,
)
from router_helpers import publish

from broker.alerts.service import AlertsService, ManualClock
from broker.cli import main

pytestmark = pytest.mark.integration


def test_missing_without_police_report(
    alerts_deployment: AlertsDeployment, capsys: pytest.CaptureFixture[str]
) -> None:
    dep = alerts_deployment
    clock = ManualClock(T0)
    with running(dep, clock) as service:
        publish(dep, WESTMINSTER, [
            child_event(dep, "child.missing.started", "C-REPORTED", "a", 0),
            child_event(dep, "child.missing.started", "C-UNREPORTED", "b", 0),
        ])
        publish(dep, MET, [police_report(dep, "C-REPORTED", "a", 1.5)])
        wait_applied(service, 3)
        clock.set(T0 + timedelta(hours=1, minutes=59))
        service_raised_before = service.raised_total
        clock.set(T0 + timedelta(hours=2, minutes=1))
        alerts = wait_for_alerts(dep, MET, 1)
        wait_until(lambda: metric(service, "raised") == 1, what="the raised metric")
        overdue = metric(service, "clocks_overdue")
    assert service_raised_before == 0
    assert overdue == 1  # the unreported child's clock: past due, still no report
    assert rules_of(alerts) == [("missing-no-police-report", "PT2H")]
    (alert,) = alerts
    assert alert["fields"]["la_child_id"] == "C-UNREPORTED"
    assert alert["fields"]["priority"] == "high"
    assert alert["issuer"] == dep.id("alerts.main")
    council = [a for a in alerts_in_feed(dep, WESTMINSTER)]
    assert rules_of(council) == [("missing-no-police-report", "PT2H")]
    assert alerts_in_feed(dep, GUARDIAN) == []  # no guardian appointed: nothing to tell it

    # For people: the feed says it plainly; the status lists clocks without child ids.
    assert main(["feed", "--config", str(dep.config_path), "--agency", dep.id(MET),
                 "--from-beginning"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (shown,) = [e for e in lines if e["event_type"] == "alert.raised"]
    assert shown["alert"].startswith("HIGH ALERT: Missing child with no police missing-person "
                                     "report - child C-UNREPORTED")
    assert "Do: Council: phone the police" in shown["alert"]
    at = (T0 + timedelta(hours=3)).isoformat()
    assert main(["alerts", "status", "--config", str(dep.config_path), "--at", at]) == 0
    status = capsys.readouterr().out
    assert dep.id(WESTMINSTER) in status and "missing-no-police-report@1" in status
    assert "C-UNREPORTED" not in status and "C-REPORTED" not in status


def metric(service: AlertsService, name: str, rule: str = "missing-no-police-report@1") -> float:
    return getattr(service.metrics, name).labels(rule)._value.get()  # type: ignore[no-any-return]


def test_trafficked_child_missing_is_raised_at_once_with_risk_context(
    alerts_deployment: AlertsDeployment,
) -> None:
    dep = alerts_deployment
    clock = ManualClock(T0 + timedelta(minutes=1))
    with running(dep, clock) as service:
        publish(dep, WESTMINSTER, [
            child_event(dep, "child.care.started", "C-TRAFFICKED", "a", -30,
                        trafficking_concern=True),
            child_event(dep, "child.missing.started", "C-TRAFFICKED", "b", -24 * 40,
                        missing_type="A"),  # before the concern was known: no immediate alert
            child_event(dep, "child.missing.started", "C-TRAFFICKED", "c", 0,
                        trafficking_concern=True, risk_level="high"),
            child_event(dep, "child.missing.started", "C-NO-CONCERN", "d", 0),
        ])
        wait_applied(service, 4)
        alerts = wait_for_alerts(dep, MET, 1)
        later = alerts_in_feed(dep, MET)
    assert rules_of(later) == [("trafficked-child-missing", "PT0S")]
    (alert,) = [a for a in alerts if a["fields"]["rule"].startswith("trafficked-child-missing@")]
    fields = alert["fields"]
    assert fields["la_child_id"] == "C-TRAFFICKED"
    # Risk context: 30 hours since the placement began; one earlier episode in 90 days.
    assert (fields["hours_since_placement"], fields["episodes_90d"]) == (30, 1)
    assert fields["priority"] == "high" and fields["risk_level"] == "high"


def test_return_interview_overdue(alerts_deployment: AlertsDeployment) -> None:
    dep = alerts_deployment
    clock = ManualClock(T0)
    with running(dep, clock) as service:
        publish(dep, WESTMINSTER, [
            child_event(dep, "guardian.appointed", "C-NO-RHI", "g", -48,
                        guardian_service=dep.id(GUARDIAN), appointed_on="2026-11-22"),
            child_event(dep, "child.missing.ended", "C-NO-RHI", "a", 0, missing_type="A"),
            child_event(dep, "child.missing.ended", "C-RHI", "b", 0, missing_type="A"),
            child_event(dep, "child.return_interview.recorded", "C-RHI", "c", 50),
        ])
        wait_applied(service, 4)
        clock.set(T0 + timedelta(hours=71, minutes=59))
        assert service.raised_total == 0
        clock.set(T0 + timedelta(hours=72, minutes=1))
        council = wait_for_alerts(dep, WESTMINSTER, 1)
        guardian = wait_for_alerts(dep, GUARDIAN, 1)
    assert rules_of(council) == [("return-interview-overdue", "P3D")]
    assert council[0]["fields"]["la_child_id"] == "C-NO-RHI"
    assert rules_of(guardian) == [("return-interview-overdue", "P3D")]  # the appointed guardian
    assert alerts_in_feed(dep, MET) == []  # the council's job: not sent to the police


def test_nrm_referral_and_guardian_overdue(alerts_deployment: AlertsDeployment) -> None:
    dep = alerts_deployment
    clock = ManualClock(T0)
    referral = child_event(dep, "nrm.referral.submitted", "C-DONE", "r", 24,
                           local_authority=dep.id(WESTMINSTER))
    with running(dep, clock) as service:
        publish(dep, WESTMINSTER, [
            child_event(dep, "child.care.started", "C-DONE", "a", 0, trafficking_concern=True),
            referral,
            child_event(dep, "guardian.appointed", "C-DONE", "g", 30,
                        guardian_service=dep.id(GUARDIAN), appointed_on="2026-11-25"),
            child_event(dep, "child.care.started", "C-WAITING", "b", 0, trafficking_concern=True),
        ])
        wait_applied(service, 4)
        clock.set(T0 + timedelta(days=3, minutes=1))
        guardian = wait_for_alerts(dep, GUARDIAN, 1)
        clock.set(T0 + timedelta(days=5, minutes=1))
        council = wait_for_alerts(dep, WESTMINSTER, 2)
    assert rules_of(guardian, "C-WAITING") == [("guardian-not-appointed", "P3D")]
    assert rules_of(guardian, "C-DONE") == []
    assert rules_of(council) == [("guardian-not-appointed", "P3D"),
                                 ("nrm-referral-overdue", "P5D")]
    assert rules_of(council, "C-DONE") == []


def test_still_missing_escalations(alerts_deployment: AlertsDeployment) -> None:
    dep = alerts_deployment
    clock = ManualClock(T0)
    with running(dep, clock) as service:
        publish(dep, WESTMINSTER, [
            child_event(dep, "child.missing.started", "C-FOUND", "a", 0),
            child_event(dep, "child.missing.started", "C-GONE", "b", 0),
            child_event(dep, "child.missing.ended", "C-FOUND", "c", 30),
        ])
        publish(dep, MET, [police_report(dep, "C-FOUND", "a", 0.5),
                           police_report(dep, "C-GONE", "b", 0.5)])
        wait_applied(service, 5)
        clock.set(T0 + timedelta(hours=48, minutes=1))
        wait_for_alerts(dep, MET, 3)
        clock.set(T0 + timedelta(days=7, minutes=1))
        wait_for_alerts(dep, MET, 4)
        clock.set(T0 + timedelta(days=28, minutes=1))
        police = wait_for_alerts(dep, MET, 5)
    assert rules_of(police, "C-GONE") == [("still-missing", "P1D"), ("still-missing", "P28D"),
                                          ("still-missing", "P2D"), ("still-missing", "P7D")]
    assert rules_of(police, "C-FOUND") == [("still-missing", "P1D")]  # found at 30 h
    assert not [a for a in police if a["fields"]["rule"].startswith("missing-no-police-report")]


def test_third_episode_in_90_days(alerts_deployment: AlertsDeployment) -> None:
    dep = alerts_deployment
    clock = ManualClock(T0)
    away = {"missing_type": "A", "risk_level": "low"}
    with running(dep, clock) as service:
        publish(dep, WESTMINSTER, [
            child_event(dep, "child.missing.started", "C-THREE", "a", -24 * 80, **away),
            child_event(dep, "child.missing.started", "C-THREE", "b", -24 * 30, **away),
            child_event(dep, "child.missing.started", "C-THREE", "c", 0, **away),
            child_event(dep, "child.missing.started", "C-TWO", "d", -24 * 100, **away),
            child_event(dep, "child.missing.started", "C-TWO", "e", -24 * 30, **away),
            child_event(dep, "child.missing.started", "C-TWO", "f", 0, **away),
        ])
        wait_applied(service, 6)
        council = wait_for_alerts(dep, WESTMINSTER, 1)
    assert rules_of(council) == [("repeat-missing-review", "PT0S")]
    assert council[0]["fields"]["la_child_id"] == "C-THREE"
    assert council[0]["fields"]["episodes_90d"] == 2
