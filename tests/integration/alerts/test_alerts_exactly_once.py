"""Raised once across SIGKILLs of the alerts service at random moments; a clock that runs out
while the service is down fires once when it is back; late and out-of-order events count as if
they had come on time."""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from alerts_helpers import (
    MET,
    T0,
    WESTMINSTER,
    AlertsDeployment,
    AlertsProcess,
    alerts_in_feed,
    child_event,
    police_report,
    rules_of,
    running,
    wait_applied,
    wait_for_alerts,
)
from router_helpers import publish, read_topic, router_thread

from broker.alerts.service import ManualClock
from broker.config import topic_ingress

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHILDREN = [f"C-K{n}" for n in range(4)]
# Every rule, each raised once per child and stage (the council gets all its children's alerts).
EXPECTED = {
    *{(c, "missing-no-police-report", "PT2H") for c in CHILDREN},
    *{(c, "still-missing", s) for c in CHILDREN for s in ("P1D", "P2D", "P7D")},
    ("C-T", "nrm-referral-overdue", "P5D"),
    ("C-T", "guardian-not-appointed", "P3D"),
    ("C-R", "return-interview-overdue", "P3D"),
    ("C-M", "trafficked-child-missing", "PT0S"),
    ("C-M", "repeat-missing-review", "PT0S"),
}


def test_raised_once_across_sigkills(alerts_deployment: AlertsDeployment, tmp_path: Path) -> None:
    dep = alerts_deployment
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    dep.set_clock(T0)
    proc = AlertsProcess(dep, tmp_path / "alerts.log")
    away = {"missing_type": "A", "risk_level": "low"}
    with router_thread(dep):
        try:
            proc.start()
            publish(dep, WESTMINSTER, [
                *[child_event(dep, "child.missing.started", c, c, 0) for c in CHILDREN],
                child_event(dep, "child.care.started", "C-T", "t", 0, trafficking_concern=True),
                child_event(dep, "child.missing.ended", "C-R", "r", 0, missing_type="A"),
                child_event(dep, "child.missing.started", "C-M", "m1", -24 * 60, **away),
                child_event(dep, "child.missing.started", "C-M", "m2", -24 * 30, **away),
                child_event(dep, "child.missing.started", "C-M", "m3", 0, uasc=True, **away),
            ])
            # Stage by stage: move the clock past due times, kill the service at a random
            # moment (before, during or after it raises), start it again.
            for hours, expected in ((0, 2), (2.1, 6), (24.1, 10), (48.1, 14), (73, 16)):
                dep.set_clock(T0 + timedelta(hours=hours))
                time.sleep(rng.uniform(0.0, 4.0))
                proc.kill()
                proc.start()
                wait_for_alerts(dep, WESTMINSTER, expected, timeout=120)
            # Clocks that run out while the service is down fire once when it is back.
            proc.kill()
            dep.set_clock(T0 + timedelta(days=7, minutes=1))
            time.sleep(1.0)
            proc.start()
            wait_for_alerts(dep, WESTMINSTER, len(EXPECTED), timeout=120)
            time.sleep(3.0)  # anything raised twice would have arrived by now
            council = alerts_in_feed(dep, WESTMINSTER)
        finally:
            proc.cleanup()
    log = (tmp_path / "alerts.log").read_text(errors="replace")
    counts = Counter((a["fields"]["la_child_id"], a["fields"]["rule"].split("@")[0],
                      a["fields"]["stage"]) for a in council)
    assert all(n == 1 for n in counts.values()), (seed, counts, log[-3000:])
    assert set(counts) == EXPECTED, (seed, set(counts) ^ EXPECTED)
    # Exactly once at the source too: the service's committed output holds each alert once.
    published = read_topic(dep, topic_ingress(dep.id("alerts.main")))
    assert len(published) == len(EXPECTED), seed
    police = alerts_in_feed(dep, MET)  # the police get the missing-child rules only
    assert {a["fields"]["rule"].split("@")[0] for a in police} == {
        "missing-no-police-report", "still-missing", "trafficked-child-missing",
        "repeat-missing-review"}


def test_late_and_out_of_order_events(alerts_deployment: AlertsDeployment) -> None:
    dep = alerts_deployment
    clock = ManualClock(T0)
    with running(dep, clock) as service:
        # The police report (40 minutes in) arrives before the council's missing report.
        publish(dep, MET, [police_report(dep, "C-OUT-OF-ORDER", "a", 40 / 60)])
        wait_applied(service, 1)
        publish(dep, WESTMINSTER, [child_event(dep, "child.missing.started", "C-OUT-OF-ORDER",
                                               "a", 0),
                                   child_event(dep, "child.missing.started", "C-LATE-STOP",
                                               "b", 0)])
        wait_applied(service, 3)
        clock.set(T0 + timedelta(hours=1, minutes=30))
        # A report that occurred at 1 h arrives late (at 1.5 h), still before the due time.
        publish(dep, MET, [police_report(dep, "C-LATE-STOP", "b", 1)])
        wait_applied(service, 4)
        clock.set(T0 + timedelta(hours=3))
        # A missing episode that began 2.5 hours ago arrives only now: already overdue.
        publish(dep, WESTMINSTER, [child_event(dep, "child.missing.started", "C-LATE-START",
                                               "c", 0.5)])
        police = wait_for_alerts(dep, MET, 1)
        time.sleep(2.0)
        police = [a for a in alerts_in_feed(dep, MET)
                  if a["fields"]["rule"].startswith("missing-no-police-report@")]
    assert rules_of(police) == [("missing-no-police-report", "PT2H")]
    (alert,) = police
    assert alert["fields"]["la_child_id"] == "C-LATE-START"
    # Due when it should have been:
    assert alert["fields"]["due_at"].startswith("2026-11-24T20:30:00")
