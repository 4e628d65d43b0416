"""Scenario tests of the alert rules on the real Kafka, with the alerts service's clock injected.

Each scenario publishes signed agency events, lets the real router forward them by agreement to
the alerts service, moves the service's clock, and reads the verified alerts the router forwarded
to the police, council and guardian feeds. For each rule: raised when due (and not before), not
raised when the stopping event came in time.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from alerts_helpers import (
    GUARDIAN,
    MET,
    T0,
    WESTMINSTER,
    AlertsDeployment,
    ManualClock,
    alerts_in_feed,
    child_event,
    police_report,
    rules_of,
    running,
    wait_applied,
    wait_for_alerts,
)
from router_helpers import publish

pytestmark = pytest.mark.integration


def test_missing_without_police_report(alerts_deployment: AlertsDeployment) -> None:
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
    assert service_raised_before == 0
    assert rules_of(alerts) == [("missing-no-police-report", "PT2H")]
    (alert,) = alerts
    assert alert["fields"]["la_child_id"] == "C-UNREPORTED"
    assert alert["fields"]["priority"] == "high"
    assert alert["issuer"] == dep.id("alerts.main")
    council = [a for a in alerts_in_feed(dep, WESTMINSTER)]
    assert rules_of(council) == [("missing-no-police-report", "PT2H")]
    assert alerts_in_feed(dep, GUARDIAN) == []  # no guardian appointed: nothing to tell it
