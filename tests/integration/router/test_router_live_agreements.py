"""Issue 13, part 3: agreement versions published on `registry.agreements` while the router runs
take effect within seconds, without a restart; each decision records the registry position it
was made under and `audit replay` re-evaluates there; an agreement record signed by any key but
the registry authority's registry-admin key is ignored and counted; when the registry cannot be
read for longer than `router.registry_max_stale_s` the router holds (fails closed)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from router_helpers import (
    BTP,
    MET,
    WESTMINSTER,
    Deployment,
    copy_to_audit_topic,
    decisions,
    event,
    make_deployment,
    produce_raw,
    publish,
    read_audit,
    read_feed,
    read_topic,
    router_thread,
    wait_for_decisions,
)

from broker.agreements import AgreementSet
from broker.audit import Outcome
from broker.audit.cli import replay_log
from broker.audit.record import DecisionRecord
from broker.cli import main
from broker.config import TOPIC_REGISTRY_AGREEMENTS, TOPIC_REGISTRY_KEYS, topic_feed
from broker.feed import FeedReader
from broker.kafka import acl as acls
from broker.kafka.local import ClusterAccess
from broker.kafka.operator import operator_clients
from broker.registry.records import AgreementRecord
from broker.router.service import RouterService

pytestmark = pytest.mark.integration

MISSING = "dsa.london-councils-met.missing-children"
NARROW = ["subject", "la_child_id", "age_band", "missing_type", "risk_level"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def _missing(dep: Deployment, tag: str) -> dict[str, object]:
    return event("child.missing.started", f"child-{tag}", f"{dep.suffix}-{tag}", missing_type="M")


def _version_3(dep: Deployment, directory: Path) -> Path:
    """The police agreement's next version: the grab pack narrowed to five items."""
    doc: dict[str, Any] = yaml.safe_load(
        (dep.directory / "agreements" / "council-police-missing.v2.yaml").read_text()
    )
    doc["version"] = 3
    doc["rules"] = [
        {
            "name": "narrowed",
            "event_types": ["child.missing.started"],
            "when": 'missing_type == "M"',
            "share": NARROW,
        }
    ]
    path = directory / "council-police-missing.v3.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _police(record: DecisionRecord, dep: Deployment) -> Any:
    (police,) = [r for r in record.recipients if r.recipient == dep.id(MET)]
    return police


def _ignored(service: RouterService, reason: str) -> float:
    value = service.metrics.registry.get_sample_value(
        "broker_registry_ignored_total", {"reason": reason}
    )
    return value or 0.0


def test_a_new_agreement_version_takes_effect_within_5_s_and_replay_uses_the_recorded_position(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    dep = deployment
    config = str(dep.config_path)
    v3 = _version_3(dep, tmp_path)

    with router_thread(dep) as service:
        assert service.live_agreements is not None
        publish(dep, WESTMINSTER, [_missing(dep, "before")])
        wait_for_decisions(dep, 1)

        status, out = _run(capsys, "agreements", "publish", "--config", config, str(v3))
        assert status == 0, out
        assert f"published {MISSING}@3" in out
        published = time.monotonic()
        publish(dep, WESTMINSTER, [_missing(dep, f"after-{i}") for i in range(3)])
        wait_for_decisions(dep, 4, timeout=5.0)
        took = time.monotonic() - published
        assert service.live_agreements.applied == 1

    with capsys.disabled():
        print(f"\n[agreement v3 published -> 3 events routed under it in {took:.2f} s]")
    assert took < 5.0, took
    records = sorted(decisions(dep), key=lambda r: r.event_id or "")
    before = [r for r in records if r.event_id and r.event_id.endswith("before")]
    after = [r for r in records if r not in before]
    assert len(before) == 1 and len(after) == 3
    assert _police(before[0], dep).agreements == (f"{MISSING}@2",)
    assert "first_name" in _police(before[0], dep).fields_forwarded
    for record in after:
        assert record.outcome == Outcome.FORWARDED
        police = _police(record, dep)
        assert police.agreements == (f"{MISSING}@3",)
        assert set(police.fields_forwarded) == set(NARROW) & (
            set(police.fields_forwarded) | set(police.fields_withheld)
        )
        assert "first_name" in police.fields_withheld
        # The registry position it was decided under: past the new version's record.
        assert record.schema_version == 2 and record.registry_agreements is not None
        assert before[0].registry_agreements is not None
        assert record.registry_agreements > before[0].registry_agreements

    # The police's feed reader follows the same registry: each forward names a version it
    # holds for the police (v2 before, v3 after), so all four verify.
    feed = read_feed(dep, MET)
    assert len(feed) == 4 and all(item.event is not None for item in feed), feed
    assert {a for item in feed if item.event for a in item.event.agreements} == {
        f"{MISSING}@2",
        f"{MISSING}@3",
    }
    # A reader whose registry does not hold the named version refuses the forward.
    reader = FeedReader(dep.config, dep.id(MET), from_beginning=True)
    try:
        assert reader.verifier.agreements is not None
        stale = dataclasses.replace(reader.verifier, agreements=AgreementSet())
        item = feed[0]
        raw = next(
            m
            for m in read_topic(dep, topic_feed(dep.id(MET)))
            if m.offset == item.offset and m.partition == item.partition
        )
        refused = stale.verify(raw.partition, raw.offset, raw.value or b"", raw.timestamp)
        assert refused.event is None and refused.error is not None
        assert refused.error.code == "unknown_agreement"
    finally:
        reader.close()

    status, out = _run(capsys, "agreements", "list", "--config", config)
    assert status == 0, out
    line_3 = next(line for line in out.splitlines() if line.startswith(f"{MISSING}@3"))
    line_2 = next(line for line in out.splitlines() if line.startswith(f"{MISSING}@2"))
    assert "registry" in line_3 and "in force" in line_3
    assert "ended" in line_2

    audit = copy_to_audit_topic(dep, read_audit(dep), "agreements")
    status, out = _run(
        capsys, "audit", "replay", "--config", config, "--audit-topic", audit, "--no-progress"
    )
    assert status == 0, out
    assert "FINDING" not in out and "4 decision(s) re-evaluated and compared" in out, out

    # A later change: a new agreement, in force since 2025, that would have given the British
    # Transport Police these events. The decisions were made before it existed.
    late = yaml.safe_load(v3.read_text())
    late.update(id="dsa.test.btp-late", version=1, recipient=dep.id(BTP), title="Late")
    late["contacts"][0]["agency"] = dep.id(BTP)
    late_path = tmp_path / "late.yaml"
    late_path.write_text(yaml.safe_dump(late, sort_keys=False))
    status, out = _run(capsys, "agreements", "publish", "--config", config, str(late_path))
    assert status == 0, out

    # Replay at the recorded positions still agrees with what was decided then...
    report = replay_log(dep.config, audit_topic=audit)
    assert report.ok, [f.message for f in report.findings]
    # ...while judging with the registry as it is now would not (the position matters).
    now = replay_log(dep.config, audit_topic=audit, at_positions=False)
    assert any(f"recipient {dep.id(BTP)}" in f.message for f in now.findings), now.findings


def test_agreements_publish_refuses_an_invalid_agreement_and_publishes_nothing(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    dep = deployment
    bad = _version_3(dep, tmp_path)
    bad.write_text(bad.read_text().replace("- la_child_id", "- no_such_field"))
    before = len([r for r in _registry(dep) if r.startswith(MISSING.encode())])
    status, out = _run(capsys, "agreements", "publish", "--config", str(dep.config_path), str(bad))
    assert status != 0
    assert "no_such_field" in out and "fix:" in out, out
    assert len([r for r in _registry(dep) if r.startswith(MISSING.encode())]) == before


def _registry(dep: Deployment) -> list[bytes]:
    return [m.key or b"" for m in read_topic(dep, TOPIC_REGISTRY_AGREEMENTS)]


def test_an_agreement_record_signed_by_a_non_admin_key_is_ignored_and_counted(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Someone able to write `registry.agreements` (here the operator, a super user; the ACLs
    stop everyone else) publishes a wider agreement version signed with the police's issuer key,
    also under the registry authority's name. The router ignores and counts both; events go on
    under the version in force."""
    dep = deployment
    v3 = _version_3(dep, tmp_path).read_text()
    police = dep.key(MET)
    forged = AgreementRecord.sign(MISSING, 3, v3, police)
    assert dep.config.registry is not None
    in_its_name = AgreementRecord.sign(MISSING, 3, v3, police)
    in_its_name = dataclasses.replace(in_its_name, signer=dep.config.registry.id)
    produce_raw(
        dep,
        TOPIC_REGISTRY_AGREEMENTS,
        [(forged.kafka_key, forged.to_bytes()), (in_its_name.kafka_key, in_its_name.to_bytes())],
    )
    with router_thread(dep) as service:
        publish(dep, WESTMINSTER, [_missing(dep, "forged")])
        wait_for_decisions(dep, 1)
        assert service.live_agreements is not None
        assert service.live_agreements.agreements.get(f"{MISSING}@3") is None
        assert _ignored(service, "unknown_signer") >= 2

    (record,) = decisions(dep)
    assert _police(record, dep).agreements == (f"{MISSING}@2",)


def _registry_read_acls(dep: Deployment) -> list[acls.Acl]:
    router = dep.config.router.id.lower().replace("_", "-")
    return [
        rule
        for rule in acls.registry_acls(dep.config)
        if rule.principal == router
        and rule.name in (TOPIC_REGISTRY_KEYS, TOPIC_REGISTRY_AGREEMENTS)
    ]


def test_the_router_holds_while_the_registry_cannot_be_read_and_resumes_after(
    tmp_path: Path, kafka_access: ClusterAccess
) -> None:
    """Fail closed: the operator removes the router's right to read `registry.*`. Within
    `registry_max_stale_s` (2 s here) the router stops routing (no decision, no commit, health
    `registry_unavailable`), and routes what waited once the right is back."""
    dep = make_deployment(tmp_path / "deployment", kafka_access, router={"registry_max_stale_s": 2})
    rules = _registry_read_acls(dep)
    assert rules, "the router may read the registry topics"
    clients = operator_clients(dep.config)
    try:
        with router_thread(dep) as service:
            publish(dep, WESTMINSTER, [_missing(dep, "first")])
            wait_for_decisions(dep, 1)
            with clients.admin() as admin:
                admin.delete_acls([acls.exact_filter(acls.to_kafka(r)) for r in rules])
            deadline = time.monotonic() + 60
            while service.metrics.progress.registry_hold_since is None:
                assert time.monotonic() < deadline, "the router never held"
                time.sleep(0.2)
            assert service.metrics.progress.health()["status"] == "registry_unavailable"
            publish(dep, WESTMINSTER, [_missing(dep, "held")])
            time.sleep(5)  # several polls and hold cycles: nothing may be decided meanwhile
            assert len(decisions(dep)) == 1
            assert service.stats.records == 1

            with clients.admin() as admin:
                admin.create_acls([acls.to_kafka(r) for r in rules])
            wait_for_decisions(dep, 2, timeout=60)
            assert service.metrics.progress.registry_hold_since is None
    finally:
        with clients.admin() as admin:  # never leave the shared router principal without it
            admin.create_acls([acls.to_kafka(r) for r in rules])
    records = decisions(dep)
    assert [r.outcome for r in records] == [Outcome.FORWARDED, Outcome.FORWARDED]
