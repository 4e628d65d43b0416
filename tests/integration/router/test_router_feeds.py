"""Acceptance 1: every recipient's feed holds exactly what its agreements permit, verifiably.

The expectations are written out by hand from the example agreements (agreements/examples), not
computed with the agreement evaluator the router uses, so a wrong evaluation or a wrong
disclosure fails here.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from datetime import date
from typing import Any

import pytest
import yaml
from router_helpers import (
    BASE_AGENCIES,
    BTP,
    GUARDIAN,
    LAMBETH,
    MET,
    NRM,
    SOUTHWARK,
    STATS,
    WESTMINSTER,
    Deployment,
    decisions,
    event,
    feeds,
    publish,
    read_audit,
    read_checkpoints,
    read_quarantine,
    route_all,
)

from broker.alerts.clocks import ALERT_EVENT_TYPE
from broker.audit import Outcome, verify_log
from broker.envelope import KeyRegistry
from broker.scaffold import EXAMPLE_AGREEMENTS
from broker.schemas import SchemaRegistry

pytestmark = pytest.mark.integration

POLICE = "dsa.london-councils-met.missing-children@2"
GUARD = "dsa.councils-ictg.appointed-children@1"
NRM_REF = "dsa.councils-nrm.referrals@1"
STAT = "dsa.national-collection.trafficked-children@1"
NRM_W = "dsa.nrm-westminster.decisions@1"
NRM_L = "dsa.nrm-lambeth.decisions@1"
MET_W = "dsa.met-westminster.missing-reports@1"

# The example agreements' rules by (id@version, rule name): the share and derive lists are read
# from the files, which rules apply to which event (conditions, providers, recipients, versions
# in force) is written out by hand below.
RULES: dict[tuple[str, str], dict[str, Any]] = {
    (f"{data['id']}@{data['version']}", rule["name"]): rule
    for data in (yaml.safe_load(p.read_text()) for p in sorted(EXAMPLE_AGREEMENTS.glob("*.yaml")))
    for rule in data["rules"]
}
STATS_RULE = {
    "child.care.started": "care-started",
    "child.placement.changed": "placement-changed",
    "child.care.ended": "care-ended",
    "child.missing.started": "missing-started",
    "child.missing.ended": "missing-ended",
    "child.return_interview.recorded": "return-interviews",
    "nrm.referral.submitted": "nrm-referrals",
    "nrm.decision.made": "nrm-decisions",
    "police.missing_report.closed": "police-reports-closed",
}
# What a recipient expects of one event: the rules that grant it something.
Expect = dict[str, list[tuple[str, str]]]


def _stats(event_type: str) -> list[tuple[str, str]]:
    return [(STAT, STATS_RULE[event_type])]


def _story(dep: Deployment) -> list[tuple[str, dict[str, Any], Expect]]:
    """(issuer, event, expectation per recipient) for every event type of EVENTS.md."""
    w, lam, g = dep.id(WESTMINSTER), dep.id(LAMBETH), dep.id(GUARDIAN)
    postcodes = {"placement_postcode": "SW1A 2AA", "placement_postcode_district": "SW1A"}
    child = {"la_child_id": "LA-1", "age_band": "13-15"}
    return [
        # An appointment entitles the guardian service to this child's later events.
        ("W", event("guardian.appointed", "child-1", "ga", guardian_service=g, **child),
         {GUARDIAN: [(GUARD, "appointment")]}),
        ("W", event("child.care.started", "child-1", "cs", home_postcode="SW1P 4DR",
                    **postcodes, **child),
         {STATS: _stats("child.care.started")}),
        ("W", event("child.missing.started", "child-1", "ms", missing_type="M",
                    risk_level="high", **child),
         {MET: [(POLICE, "philomena-grab-pack")], GUARDIAN: [(GUARD, "appointed-child")],
          STATS: _stats("child.missing.started")}),
        ("W", event("child.missing.ended", "child-1", "me", missing_type="M", **child),
         {MET: [(POLICE, "found")], GUARDIAN: [(GUARD, "appointed-child")],
          STATS: _stats("child.missing.ended")}),
        ("W", event("child.placement.changed", "child-1", "pc", **postcodes, **child),
         {GUARDIAN: [(GUARD, "appointed-child")], STATS: _stats("child.placement.changed")}),
        ("W", event("child.return_interview.recorded", "child-1", "ri",
                    exploitation_disclosed=True, **child),
         {MET: [(POLICE, "exploitation-disclosed")], GUARDIAN: [(GUARD, "appointed-child")],
          STATS: _stats("child.return_interview.recorded")}),
        ("W", event("child.care.ended", "child-1", "ce", **child),
         {GUARDIAN: [(GUARD, "appointed-child")], STATS: _stats("child.care.ended")}),
        ("W", event("nrm.referral.submitted", "child-1", "nr", first_responder=w,
                    first_responder_type="local_authority", local_authority=w, **child),
         {NRM: [(NRM_REF, "own-referrals")], STATS: _stats("nrm.referral.submitted")}),
        # Another child, away from placement with no concern: the minimum; no guardian.
        ("W", event("child.missing.started", "child-2", "ms2", missing_type="A",
                    risk_level="low", trafficking_concern=False, la_child_id="LA-2"),
         {MET: [(POLICE, "away-notification")], STATS: _stats("child.missing.started")}),
        # A referral the council holds but did not make goes to nobody but statistics.
        ("W", event("nrm.referral.submitted", "child-2", "nr2", first_responder=dep.id(MET),
                    first_responder_type="police", la_child_id="LA-2"),
         {STATS: _stats("nrm.referral.submitted")}),
        ("S", event("child.missing.started", "child-9", "ms9", missing_type="M",
                    la_child_id="LA-9"),
         {MET: [(POLICE, "philomena-grab-pack")], STATS: _stats("child.missing.started")}),
        ("P", event("police.missing_report.opened", "case-1", "po", local_authority=w),
         {WESTMINSTER: [(MET_W, "report-opened")]}),
        # Lambeth has no agreement with the police: denied for everyone.
        ("P", event("police.missing_report.opened", "case-2", "po2", local_authority=lam), {}),
        ("P", event("police.missing_report.closed", "case-1", "pcl", local_authority=w),
         {WESTMINSTER: [(MET_W, "report-closed")], STATS: _stats("police.missing_report.closed")}),
        ("N", event("nrm.decision.made", "ref-1", "nd", first_responder=w),
         {WESTMINSTER: [(NRM_W, "own-referral-decisions")], STATS: _stats("nrm.decision.made")}),
        ("N", event("nrm.decision.made", "ref-2", "nd2", first_responder=lam),
         {LAMBETH: [(NRM_L, "own-referral-decisions")], STATS: _stats("nrm.decision.made")}),
    ]  # fmt: skip


ISSUERS = {"W": WESTMINSTER, "S": SOUTHWARK, "P": MET, "N": NRM}


def _expected_derived(
    dep: Deployment, recipient: str, evt: dict[str, Any], rules: list[tuple[str, str]]
) -> dict[str, Any]:
    """The derived values, computed here with the transforms' published definitions."""
    key = dep.config.pseudonym_key(dep.id(recipient))
    occurred = date.fromisoformat(evt["occurred_at"][:10])
    out: dict[str, Any] = {}
    for ref in rules:
        for item in RULES[ref].get("derive", []):
            value = evt["fields"].get(item["field"])
            if value is None or item["name"] in out:
                continue
            transform = item["transform"]
            if transform == "pseudonym":
                derived: Any = hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()
            elif transform == "date_only":
                derived = value[:10]
            elif transform == "postcode_district":
                derived = value.split()[0]
            elif transform in ("age_years", "age_band", "birth_year"):
                born = date.fromisoformat(value[:10])
                years = (
                    occurred.year
                    - born.year
                    - ((occurred.month, occurred.day) < (born.month, born.day))
                )
                bands = ((10, "0-9"), (13, "10-12"), (16, "13-15"), (18, "16-17"))
                derived = {
                    "age_years": years,
                    "birth_year": born.year,
                    "age_band": next((b for limit, b in bands if years < limit), "18+"),
                }[transform]
            else:
                pytest.fail(f"no expectation for transform {transform}: add it to this test")
            out[item["name"]] = derived
    return out


def test_each_feed_holds_exactly_the_permitted_fields(deployment: Deployment) -> None:
    dep = deployment
    story = _story(dep)
    registry = SchemaRegistry.default()
    # Every type an agency issues; `alert.raised` comes from the alerts service alone and its
    # forwarding is tested with that service (tests/integration/alerts).
    assert {e["event_type"] for _, e, _ in story} == set(registry.event_types()) - {
        ALERT_EVENT_TYPE
    }
    for code, issuer in ISSUERS.items():
        publish(dep, issuer, [e for c, e, _ in story if c == code])
    route_all(dep, len(story))

    received = feeds(dep)
    for base, items in received.items():
        failed = [item.error.code for item in items if item.error is not None]
        assert not failed, f"{base}: events failing verification: {failed}"
    got = {
        base: {item.event.event_id: item.event for item in items if item.event}
        for base, items in received.items()
    }
    for base, items in received.items():
        assert len(items) == len(got[base]), f"{base} received an event twice"

    expected_counts: Counter[str] = Counter()
    for code, evt, expect in story:
        event_id = evt["event_id"]
        schema_fields = set(registry.fields(evt["event_type"]))
        for recipient in BASE_AGENCIES:
            forwarded = got[recipient].get(event_id)
            if recipient not in expect:
                assert forwarded is None, f"{event_id} must not reach {recipient}"
                continue
            expected_counts[recipient] += 1
            assert forwarded is not None, f"{event_id} did not reach {recipient}"
            rules = expect[recipient]
            fields = {name for ref in rules for name in RULES[ref]["share"]}
            as_json = forwarded.to_json(registry)
            assert as_json["fields"] == {
                name: evt["fields"][name] for name in sorted(fields & schema_fields)
            }, f"{event_id} -> {recipient}"
            assert as_json["derived"] == _expected_derived(dep, recipient, evt, rules)
            assert set(forwarded.agreements) == {agreement for agreement, _ in rules}
            assert forwarded.issuer == dep.id(ISSUERS[code])
            assert forwarded.recipient == dep.id(recipient)
            # The issuer's subject reference only where a rule shares `subject` (issue 13).
            assert forwarded.subject == (evt["subject"] if "subject" in fields else None)
    assert {b: len(v) for b, v in got.items()} == {b: expected_counts[b] for b in BASE_AGENCIES}
    # Recipients with no agreement naming them receive nothing.
    assert got[BTP] == {} and got[SOUTHWARK] == {}

    # One audit decision per event, none quarantined, and no personal value in the log.
    records = decisions(dep)
    assert len(records) == len(story)
    by_event = {r.event_id: r for r in records}
    for _, evt, expect in story:
        record = by_event[evt["event_id"]]
        assert record.outcome == (Outcome.FORWARDED if expect else Outcome.DENIED)
        assert {r.recipient for r in record.recipients} == {dep.id(b) for b in expect}
        for decision in record.recipients:
            shared = set(decision.fields_forwarded)
            assert shared | set(decision.fields_withheld) == set(evt["fields"]) | {"subject"}
            assert not shared & set(decision.fields_withheld)
    audit_bytes = b"".join(r.value or b"" for r in read_audit(dep))
    for _, evt, _ in story:
        for name, value in evt["fields"].items():
            if isinstance(value, str) and value.startswith(f"{name}-"):
                assert value.encode() not in audit_bytes, f"{name} value leaked to the audit log"
    assert read_quarantine(dep) == []

    # The audit chains and the router's signed checkpoints verify.
    keys = KeyRegistry.from_dir(dep.keys_dir)
    report = verify_log(
        [(r.partition, r.offset, r.value or b"") for r in read_audit(dep)],
        [(r.partition, r.offset, r.value or b"") for r in read_checkpoints(dep)],
        lambda agency, key_id, at: keys.lookup(agency, key_id, at, role="checkpoint").public_key,
    )
    assert report.ok, report.findings
    assert report.records == len(story)
    assert report.checkpoints >= 1
    assert sum(report.unsigned_tail.values()) == 0
