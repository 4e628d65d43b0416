"""The alerts service sees and sends only what its agreements and its ACLs allow.

- Kafka: its principal reads its own feed and its own state topic, writes its own ingress and
  state topic and quarantine (feed records it cannot verify), uses its own group and
  transactional ids, and nothing else (every new permission
  is exercised by the service; the same operations are refused to an agency without it).
- Agreements: it receives only the fields and event types its agreements share; an event it
  issues outside the `alert.*` agreements goes nowhere; an `alert.raised` forged by a council goes
  nowhere.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))

from alerts_helpers import (
    GUARDIAN,
    MET,
    T0,
    WESTMINSTER,
    AlertsDeployment,
    alerts_in_feed,
    child_event,
    running,
    wait_applied,
    wait_for_alerts,
)
from router_helpers import decisions, publish, read_feed, wait_for_decisions
from security_helpers import ALLOW, DENY, actors

from broker.alerts.service import ManualClock
from broker.config import (
    TOPIC_AUDIT,
    TOPIC_QUARANTINE,
    TOPIC_ROUTER_STATE,
    topic_feed,
    topic_ingress,
)
from broker.kafka.credentials import principal_of
from broker.scaffold import ALERT_AGREEMENTS

pytestmark = pytest.mark.integration


def test_kafka_allows_the_alerts_service_its_own_resources_only(
    alerts_deployment: AlertsDeployment,
) -> None:
    dep = alerts_deployment
    config = dep.config
    assert config.alerts is not None
    me, council = config.alerts.id, dep.id(WESTMINSTER)
    state = config.alerts.state_topic
    txn = f"{config.alerts.transactional_prefix}probe"
    cast = {
        "alerts": (principal_of(me), txn),
        "council": (principal_of(council), None),
    }
    with actors(config.kafka, cast) as who:
        alerts, other = who["alerts"], who["council"]
        allowed = {
            "read own feed": alerts.attempt(lambda: alerts.consume(topic_feed(me))),
            "write own ingress": alerts.attempt(lambda: alerts.produce_aborted(topic_ingress(me))),
            "read state": alerts.attempt(lambda: alerts.consume(state)),
            "write state": alerts.attempt(lambda: alerts.produce_aborted(state)),
            "write quarantine": alerts.attempt(
                lambda: alerts.produce_aborted(TOPIC_QUARANTINE)),
            "own transactional id": alerts.attempt(lambda: alerts.init_transactions(txn)),
            "own group": alerts.attempt(lambda: alerts.commit(config.alerts.group_id,
                                                               topic_feed(me))),
        }
        denied = {
            "read police feed": alerts.attempt(lambda: alerts.consume(topic_feed(dep.id(MET)))),
            "read council ingress": alerts.attempt(lambda: alerts.consume(topic_ingress(council))),
            "read router state": alerts.attempt(lambda: alerts.consume(TOPIC_ROUTER_STATE)),
            "read audit": alerts.attempt(lambda: alerts.consume(TOPIC_AUDIT)),
            "write police feed": alerts.attempt(lambda: alerts.produce(topic_feed(dep.id(MET)))),
            "write council ingress": alerts.attempt(lambda: alerts.produce(topic_ingress(council))),
            "read quarantine": alerts.attempt(lambda: alerts.consume(TOPIC_QUARANTINE)),
            "router's transactional id": alerts.attempt(
                lambda: alerts.init_transactions(f"{config.router.group_id}-x")),
            "router's group": alerts.attempt(lambda: alerts.commit(config.router.group_id,
                                                                    topic_feed(me))),
            # The permissions the alerts section adds are needed: an agency without them is
            # refused the same operations.
            "council reads state": other.attempt(lambda: other.consume(state)),
            "council writes state": other.attempt(lambda: other.produce(state)),
            "council writes quarantine": other.attempt(lambda: other.produce(TOPIC_QUARANTINE)),
            "council takes the transactional id": other.attempt(
                lambda: other.init_transactions(txn)),
        }
    assert allowed == dict.fromkeys(allowed, ALLOW)
    assert denied == dict.fromkeys(denied, DENY)


def _shared_with_alerts() -> set[str]:
    import yaml

    names: set[str] = set()
    for path in ALERT_AGREEMENTS.glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        if data["recipient"] == "alerts.main":
            for rule in data["rules"]:
                names.update(rule["share"])
    return names


def test_the_alerts_service_sees_and_sends_only_what_agreements_allow(
    alerts_deployment: AlertsDeployment,
) -> None:
    dep = alerts_deployment
    clock = ManualClock(T0)
    me = dep.id("alerts.main")
    with running(dep, clock) as service:
        publish(dep, WESTMINSTER, [
            child_event(dep, "child.missing.started", "C-SEEN", "a", 0, first_name="Ana",
                        photo_ref="photo-1", trafficking_concern=True),
            child_event(dep, "child.care.ended", "C-SEEN", "b", 1),  # no agreement: not seen
        ])
        wait_applied(service, 1)
        wait_for_alerts(dep, MET, 1)
        # What the service issues outside its agreements goes nowhere ...
        outside = child_event(dep, "child.missing.started", "C-FAKE", "c", 0)
        publish(dep, "alerts.main", [outside])
        # ... and an alert forged by a council goes nowhere either.
        forged = child_event(dep, "child.missing.started", "C-FORGED", "d", 0)
        forged.update(event_type="alert.raised", fields=_alert_fields(dep))
        publish(dep, WESTMINSTER, [forged])
        wait_for_decisions(dep, 5)
    seen = [item.event for item in read_feed(dep, "alerts.main")]
    assert [e.event_type for e in seen if e is not None] == ["child.missing.started"]
    disclosed = {name for e in seen if e is not None for name, v in e.fields.items()}
    assert disclosed <= _shared_with_alerts()
    assert "first_name" not in disclosed and "photo_ref" not in disclosed
    by_event = {d.event_id: d for d in decisions(dep)}
    assert by_event[outside["event_id"]].recipients == ()
    assert by_event[forged["event_id"]].recipients == ()
    for base in (MET, WESTMINSTER, GUARDIAN):
        ids = [a["event_id"] for a in alerts_in_feed(dep, base)]
        assert forged["event_id"] not in ids
        assert all(a["issuer"] == me for a in alerts_in_feed(dep, base))


def _alert_fields(dep: AlertsDeployment) -> dict[str, Any]:
    return {
        "la_child_id": "C-FORGED", "local_authority": dep.id(WESTMINSTER),
        "rule": "missing-no-police-report@1", "title": "t", "priority": "high", "message": "m",
        "action": "a", "clock_started_at": "2026-11-24T18:00:00Z",
        "due_at": "2026-11-24T20:00:00Z", "stage": "PT2H", "trigger_event_type": "x",
        "trigger_event_id": "y",
    }
