"""The alerts service's ACLs come from `registry_acls` alone: its agency rules plus exactly the
state topic, write on quarantine and its transactional ids, and only when the config has an
`alerts` section."""

from __future__ import annotations

from pathlib import Path

import yaml

from broker.config import TOPIC_QUARANTINE, load_config
from broker.kafka.acl import (
    DESCRIBE,
    LITERAL,
    PREFIXED,
    READ,
    TOPIC,
    TRANSACTIONAL_ID,
    WRITE,
    Acl,
    registry_acls,
)
from broker.kafka.credentials import principal_of
from broker.scaffold import ALERTS_ID, DEMO_AGENCIES, write_deployment


def _config(tmp_path: Path, *, alerts: bool) -> Path:
    agencies = {**DEMO_AGENCIES, ALERTS_ID: "alerts"}
    return write_deployment(tmp_path, bootstrap_servers="x:1", agencies=agencies,
                            alerts={"id": ALERTS_ID} if alerts else None)


def test_the_alerts_section_adds_its_state_topic_quarantine_and_transactional_ids_only(
    tmp_path: Path,
) -> None:
    with_alerts = set(registry_acls(load_config(_config(tmp_path / "a", alerts=True))))
    without = set(registry_acls(load_config(_config(tmp_path / "b", alerts=False))))
    me = principal_of(ALERTS_ID)
    assert with_alerts - without == {
        Acl(me, TOPIC, LITERAL, f"state.{ALERTS_ID}", READ),
        Acl(me, TOPIC, LITERAL, f"state.{ALERTS_ID}", WRITE),
        Acl(me, TOPIC, LITERAL, f"state.{ALERTS_ID}", DESCRIBE),
        Acl(me, TOPIC, LITERAL, TOPIC_QUARANTINE, WRITE),
        Acl(me, TOPIC, LITERAL, TOPIC_QUARANTINE, DESCRIBE),
        Acl(me, TRANSACTIONAL_ID, PREFIXED, f"{ALERTS_ID}-", WRITE),
        Acl(me, TRANSACTIONAL_ID, PREFIXED, f"{ALERTS_ID}-", DESCRIBE),
    }
    assert without - with_alerts == set()
    # Nobody else may touch the state topic.
    assert {a.principal for a in with_alerts if a.name == f"state.{ALERTS_ID}"} == {me}
    # Quarantine: written by the router and the alerts service, read by the auditor only.
    quarantine = {(a.principal, a.operation) for a in with_alerts if a.name == TOPIC_QUARANTINE}
    assert {p for p, op in quarantine if op == WRITE} == {principal_of("router.main"), me}
    assert {p for p, op in quarantine if op == READ} == {"auditor"}


def test_an_alerts_service_must_be_a_registered_agency(tmp_path: Path) -> None:
    path = _config(tmp_path, alerts=True)
    raw = yaml.safe_load(path.read_text())
    raw["agencies"] = [a for a in raw["agencies"] if a["id"] != ALERTS_ID]
    path.write_text(yaml.safe_dump(raw))
    try:
        load_config(path)
    except Exception as exc:
        assert "alerts.id alerts.main is not in the `agencies` registry" in str(exc)
    else:
        raise AssertionError("a config with an unregistered alerts service was accepted")
