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

from broker.audit import Outcome, verify_log
from broker.envelope import KeyRegistry
from broker.schemas import SchemaRegistry

pytestmark = pytest.mark.integration

POLICE = "dsa.london-councils-met.missing-children@2"
GUARD = "dsa.councils-ictg.appointed-children@1"
NRM_REF = "dsa.councils-nrm.referrals@1"
STAT = "dsa.national-collection.trafficked-children@1"
NRM_W = "dsa.nrm-westminster.decisions@1"
NRM_L = "dsa.nrm-lambeth.decisions@1"
MET_W = "dsa.met-westminster.missing-reports@1"

# Share lists of the example agreements' rules, copied from the YAML files.
GRAB_PACK = {
    "la_child_id", "first_name", "last_name", "dob", "age_band", "sex", "uasc",
    "trafficking_concern", "exploitation_concerns", "missing_type", "missing_since",
    "risk_level", "last_seen_location", "last_seen_postcode_district",
    "placement_postcode_district", "physical_description", "clothing", "associates",
    "places_frequented", "phone_numbers", "social_media", "medical_needs", "photo_ref",
}  # fmt: skip
AWAY = {
    "la_child_id", "age_band", "sex", "missing_type", "missing_since", "risk_level",
    "placement_postcode_district", "last_seen_postcode_district",
}  # fmt: skip
FOUND = {"la_child_id", "missing_type", "missing_since", "missing_until", "found_postcode_district"}
RHI_POLICE = {
    "la_child_id", "first_name", "last_name", "dob", "exploitation_concerns", "interview_date",
    "exploitation_disclosed",
}  # fmt: skip
APPOINTMENT = {
    "la_child_id", "first_name", "last_name", "dob", "age_band", "sex", "uasc",
    "trafficking_concern", "exploitation_concerns", "guardian_service", "appointed_on",
}  # fmt: skip
APPOINTED_CHILD = {
    "la_child_id", "first_name", "last_name", "dob", "age_band", "trafficking_concern",
    "exploitation_concerns", "missing_type", "missing_since", "missing_until", "risk_level",
    "last_seen_postcode_district", "found_postcode_district", "placement_type",
    "placement_postcode_district", "reason", "rhi_offered", "rhi_accepted", "within_72_hours",
    "exploitation_disclosed",
}  # fmt: skip
NRM_REFERRAL = {
    "referral_id", "first_responder", "first_responder_type", "local_authority", "police_force",
    "age_at_exploitation", "nationality", "gender", "exploitation_types",
    "exploitation_location", "la_child_id", "first_name", "last_name", "dob", "age_band",
}  # fmt: skip
NRM_DECISION = {"referral_id", "first_responder", "stage", "outcome", "decision_date"}
REPORT_OPENED = {
    "police_ref", "force", "risk_level", "la_child_id", "local_authority", "first_name",
    "last_name", "dob", "age_band", "trafficking_concern",
}  # fmt: skip
REPORT_CLOSED = {
    "police_ref", "force", "found_at", "found_postcode_district", "outcome", "la_child_id",
    "local_authority",
}  # fmt: skip
STATS_SHARE = {
    "child.care.started": {
        "age_band", "sex", "uasc", "trafficking_concern", "exploitation_concerns",
        "legal_status", "category_of_need", "placement_type", "placement_provider",
        "placement_postcode_district", "ethnicity",
    },
    "child.placement.changed": {
        "age_band", "placement_type", "placement_provider", "placement_postcode_district",
        "reason",
    },
    "child.care.ended": {"age_band", "reason"},
    "child.missing.started": {
        "age_band", "sex", "uasc", "trafficking_concern", "exploitation_concerns",
        "missing_type", "risk_level", "placement_postcode_district",
        "last_seen_postcode_district",
    },
    "child.missing.ended": {"age_band", "missing_type", "found_postcode_district"},
    "child.return_interview.recorded": {
        "age_band", "rhi_offered", "rhi_accepted", "within_72_hours", "exploitation_disclosed",
    },
    "nrm.referral.submitted": {
        "first_responder_type", "age_at_exploitation", "exploitation_types",
        "exploitation_location", "age_band",
    },
    "nrm.decision.made": {"stage", "outcome", "decision_date"},
    "police.missing_report.closed": {"outcome", "found_postcode_district"},
}  # fmt: skip
# Derived values of the statistics agreement: name -> (transform, source field).
STATS_DERIVE: dict[str, dict[str, tuple[str, str]]] = {
    "child.care.started": {
        "child_pseudonym": ("pseudonym", "la_child_id"),
        "home_postcode_district": ("postcode_district", "home_postcode"),
    },
    "child.placement.changed": {"child_pseudonym": ("pseudonym", "la_child_id")},
    "child.care.ended": {"child_pseudonym": ("pseudonym", "la_child_id")},
    "child.missing.started": {
        "child_pseudonym": ("pseudonym", "la_child_id"),
        "missing_date": ("date_only", "missing_since"),
        "age_years": ("age_years", "dob"),
    },
    "child.missing.ended": {
        "child_pseudonym": ("pseudonym", "la_child_id"),
        "missing_date": ("date_only", "missing_since"),
        "returned_date": ("date_only", "missing_until"),
    },
    "child.return_interview.recorded": {"child_pseudonym": ("pseudonym", "la_child_id")},
    "nrm.referral.submitted": {
        "referral_pseudonym": ("pseudonym", "referral_id"),
        "child_pseudonym": ("pseudonym", "la_child_id"),
    },
    "nrm.decision.made": {"referral_pseudonym": ("pseudonym", "referral_id")},
    "police.missing_report.closed": {
        "report_pseudonym": ("pseudonym", "police_ref"),
        "found_date": ("date_only", "found_at"),
    },
}

# What a recipient expects of one event: shared fields and the agreements (id@version) cited.
Expect = dict[str, tuple[set[str], set[str]]]


def _story(dep: Deployment) -> list[tuple[str, dict[str, Any], Expect]]:
    """(issuer, event, expectation per recipient) for every event type of EVENTS.md."""
    w, lam, g = dep.id(WESTMINSTER), dep.id(LAMBETH), dep.id(GUARDIAN)
    postcodes = {"placement_postcode": "SW1A 2AA", "placement_postcode_district": "SW1A"}
    child = {"la_child_id": "LA-1", "age_band": "13-15"}
    return [
        # An appointment entitles the guardian service to this child's later events.
        ("W", event("guardian.appointed", "child-1", "ga", guardian_service=g, **child),
         {GUARDIAN: (APPOINTMENT, {GUARD})}),
        ("W", event("child.care.started", "child-1", "cs", home_postcode="SW1P 4DR",
                    **postcodes, **child),
         {STATS: (STATS_SHARE["child.care.started"], {STAT})}),
        ("W", event("child.missing.started", "child-1", "ms", missing_type="M",
                    risk_level="high", **child),
         {MET: (GRAB_PACK, {POLICE}), GUARDIAN: (APPOINTED_CHILD, {GUARD}),
          STATS: (STATS_SHARE["child.missing.started"], {STAT})}),
        ("W", event("child.missing.ended", "child-1", "me", missing_type="M", **child),
         {MET: (FOUND, {POLICE}), GUARDIAN: (APPOINTED_CHILD, {GUARD}),
          STATS: (STATS_SHARE["child.missing.ended"], {STAT})}),
        ("W", event("child.placement.changed", "child-1", "pc", **postcodes, **child),
         {GUARDIAN: (APPOINTED_CHILD, {GUARD}),
          STATS: (STATS_SHARE["child.placement.changed"], {STAT})}),
        ("W", event("child.return_interview.recorded", "child-1", "ri",
                    exploitation_disclosed=True, **child),
         {MET: (RHI_POLICE, {POLICE}), GUARDIAN: (APPOINTED_CHILD, {GUARD}),
          STATS: (STATS_SHARE["child.return_interview.recorded"], {STAT})}),
        ("W", event("child.care.ended", "child-1", "ce", **child),
         {GUARDIAN: (APPOINTED_CHILD, {GUARD}), STATS: (STATS_SHARE["child.care.ended"], {STAT})}),
        ("W", event("nrm.referral.submitted", "child-1", "nr", first_responder=w,
                    first_responder_type="local_authority", local_authority=w, **child),
         {NRM: (NRM_REFERRAL, {NRM_REF}), STATS: (STATS_SHARE["nrm.referral.submitted"], {STAT})}),
        # Another child, away from placement with no concern: the minimum; no guardian.
        ("W", event("child.missing.started", "child-2", "ms2", missing_type="A",
                    risk_level="low", trafficking_concern=False, la_child_id="LA-2"),
         {MET: (AWAY, {POLICE}), STATS: (STATS_SHARE["child.missing.started"], {STAT})}),
        # A referral the council holds but did not make goes to nobody but statistics.
        ("W", event("nrm.referral.submitted", "child-2", "nr2", first_responder=dep.id(MET),
                    first_responder_type="police", la_child_id="LA-2"),
         {STATS: (STATS_SHARE["nrm.referral.submitted"], {STAT})}),
        ("S", event("child.missing.started", "child-9", "ms9", missing_type="M",
                    la_child_id="LA-9"),
         {MET: (GRAB_PACK, {POLICE}), STATS: (STATS_SHARE["child.missing.started"], {STAT})}),
        ("P", event("police.missing_report.opened", "case-1", "po", local_authority=w),
         {WESTMINSTER: (REPORT_OPENED, {MET_W})}),
        # Lambeth has no agreement with the police: denied for everyone.
        ("P", event("police.missing_report.opened", "case-2", "po2", local_authority=lam), {}),
        ("P", event("police.missing_report.closed", "case-1", "pcl", local_authority=w),
         {WESTMINSTER: (REPORT_CLOSED, {MET_W}),
          STATS: (STATS_SHARE["police.missing_report.closed"], {STAT})}),
        ("N", event("nrm.decision.made", "ref-1", "nd", first_responder=w),
         {WESTMINSTER: (NRM_DECISION, {NRM_W}), STATS: (STATS_SHARE["nrm.decision.made"], {STAT})}),
        ("N", event("nrm.decision.made", "ref-2", "nd2", first_responder=lam),
         {LAMBETH: (NRM_DECISION, {NRM_L}), STATS: (STATS_SHARE["nrm.decision.made"], {STAT})}),
    ]  # fmt: skip


ISSUERS = {"W": WESTMINSTER, "S": SOUTHWARK, "P": MET, "N": NRM}


def _expected_derived(dep: Deployment, recipient: str, evt: dict[str, Any]) -> dict[str, Any]:
    if recipient != STATS:
        return {}
    key = dep.config.pseudonym_key(dep.id(STATS))
    out: dict[str, Any] = {}
    for name, (transform, source) in STATS_DERIVE.get(evt["event_type"], {}).items():
        value = evt["fields"][source]
        if transform == "pseudonym":
            out[name] = hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()
        elif transform == "date_only":
            out[name] = value[:10]
        elif transform == "age_years":
            born, on = date.fromisoformat(value), date.fromisoformat(evt["occurred_at"][:10])
            out[name] = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
        else:
            out[name] = value.split()[0]
    return out


def test_each_feed_holds_exactly_the_permitted_fields(deployment: Deployment) -> None:
    dep = deployment
    story = _story(dep)
    registry = SchemaRegistry.default()
    assert {e["event_type"] for _, e, _ in story} == set(registry.event_types())
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
            fields, agreements = expect[recipient]
            as_json = forwarded.to_json(registry)
            assert as_json["fields"] == {
                name: evt["fields"][name] for name in sorted(fields & schema_fields)
            }, f"{event_id} -> {recipient}"
            assert as_json["derived"] == _expected_derived(dep, recipient, evt)
            assert set(forwarded.agreements) == agreements
            assert forwarded.issuer == dep.id(ISSUERS[code])
            assert forwarded.recipient == dep.id(recipient)
            assert forwarded.header.subject == evt["subject"]
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
            assert shared | set(decision.fields_withheld) == set(evt["fields"])
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
        lambda agency, key_id, at: keys.lookup(agency, key_id, at).public_key,
    )
    assert report.ok, report.findings
    assert report.records == len(story)
    assert report.checkpoints >= 1
    assert sum(report.unsigned_tail.values()) == 0
