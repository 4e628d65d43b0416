"""Evaluation: deny by default, validity, revocation, union of rules, failures that deny."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from agreement_samples import NOW, VALID, WESTMINSTER, missing_event

from broker.agreements import (
    AgreementError,
    AgreementSet,
    EventView,
    RuleOutcome,
    RuleRef,
    SubjectContext,
    load_agreements,
)
from broker.schemas import SchemaRegistry

KEYS = {"stats.national": b"s" * 32, "police.met": b"p" * 32}


def _one(write: Callable[..., Path], registry: SchemaRegistry, text: str = VALID) -> AgreementSet:
    return load_agreements(write(a=text), registry)


def test_no_agreement_no_forwarding(write: Callable[..., Path], registry: SchemaRegistry) -> None:
    agreements = _one(write, registry)
    closed = EventView("e", "police.missing_report.closed", "police.met", "s", NOW, {})
    assert agreements.decide(closed, now=NOW).grants == {}
    from_police = missing_event(registry, issuer="police.met")
    assert agreements.decide(from_police, now=NOW).grants == {}


def test_condition_false_denies(write: Callable[..., Path], registry: SchemaRegistry) -> None:
    agreements = _one(write, registry)
    decision = agreements.decide(missing_event(registry, risk_level="low"), now=NOW)
    assert decision.grants == {}
    assert decision.errors == []


def test_grant_names_fields_shared_withheld_and_derived(
    write: Callable[..., Path], registry: SchemaRegistry
) -> None:
    event = missing_event(registry)
    grant = _one(write, registry).decide(event, now=NOW).grants["police.met"]
    assert grant.fields_shared == {"la_child_id", "risk_level"}
    # The subject is withheld too: this agreement does not list it under `share`.
    withheld = (set(event.fields) | {"subject"}) - {"la_child_id", "risk_level"}
    assert grant.fields_withheld == withheld
    assert grant.derived == {"dob_band": "13-15"}
    assert grant.agreements == ("dsa.test.sharing@1",)
    assert grant.rules == (RuleRef("dsa.test.sharing@1", "missing"),)


@pytest.mark.parametrize(("now", "in_force"), [
    (datetime(2025, 3, 31, 23, 59, tzinfo=UTC), False),  # not yet valid
    (datetime(2025, 4, 1, 0, 0, tzinfo=UTC), True),
    (datetime(2027, 3, 31, 23, 59, tzinfo=UTC), True),   # valid_until is a whole day
    (datetime(2027, 4, 1, 0, 0, tzinfo=UTC), False),     # expired
])
def test_validity_window(
    write: Callable[..., Path], registry: SchemaRegistry, now: datetime, in_force: bool
) -> None:
    decision = _one(write, registry).decide(missing_event(registry), now=now)
    assert ("police.met" in decision.grants) is in_force


def test_revocation_stops_forwarding_at_once_and_keeps_the_version(
    write: Callable[..., Path], registry: SchemaRegistry
) -> None:
    agreements = _one(write, registry)
    at = NOW + timedelta(minutes=1)
    agreements.revoke("dsa.test.sharing", 1, at)
    event = missing_event(registry)
    assert "police.met" in agreements.decide(event, now=at - timedelta(seconds=1)).grants
    assert agreements.decide(event, now=at).grants == {}
    (version,) = agreements.versions()
    assert version.key == "dsa.test.sharing@1"
    assert version.revoked_at == at


def test_revoking_an_unknown_version_is_an_error(
    write: Callable[..., Path], registry: SchemaRegistry
) -> None:
    with pytest.raises(AgreementError, match="is not loaded"):
        _one(write, registry).revoke("dsa.test.sharing", 2, NOW)


def test_versions_are_never_overwritten(
    write: Callable[..., Path], registry: SchemaRegistry
) -> None:
    agreements = _one(write, registry)
    (version,) = agreements.versions()
    with pytest.raises(AgreementError, match="already loaded"):
        agreements.add(version.agreement)


def test_union_of_matching_rules_for_one_recipient(
    write: Callable[..., Path], registry: SchemaRegistry
) -> None:
    second = VALID.replace(
        "id: dsa.test.sharing", "id: dsa.test.other"
    ).replace('risk_level == "high"', 'missing_type == "M"').replace(
        "share: [la_child_id, risk_level]", "share: [la_child_id, clothing]"
    )
    agreements = load_agreements(write(a=VALID, b=second), registry)
    grant = agreements.decide(missing_event(registry), now=NOW).grants["police.met"]
    assert grant.fields_shared == {"la_child_id", "risk_level", "clothing"}
    assert grant.agreements == ("dsa.test.other@1", "dsa.test.sharing@1")
    assert set(grant.reasons["la_child_id"]) == {
        RuleRef("dsa.test.sharing@1", "missing"), RuleRef("dsa.test.other@1", "missing")
    }
    assert grant.reasons["clothing"] == (RuleRef("dsa.test.other@1", "missing"),)


def test_runtime_condition_error_denies_reports_and_does_not_crash(
    write: Callable[..., Path], registry: SchemaRegistry
) -> None:
    # `trafficking_concern` is null here: using it as a boolean is a CEL error.
    text = VALID.replace('risk_level == "high"', 'trafficking_concern || last_name == "Smith"')
    event = missing_event(registry, trafficking_concern=None, last_name="Example")
    decision = _one(write, registry, text).decide(event, now=NOW)
    assert decision.grants == {}
    (error,) = decision.errors
    assert (error.rule.rule, error.recipient, error.stage) == ("missing", "police.met", "condition")
    for value in ("Example", "Smith", "Amira", "WCC-000123"):
        assert value not in str(error)


def test_conversion_failure_message_never_quotes_the_value(
    write: Callable[..., Path], registry: SchemaRegistry
) -> None:
    text = VALID.replace('risk_level == "high"', "int(last_name) > 3")
    decision = _one(write, registry, text).decide(missing_event(registry), now=NOW)
    assert decision.grants == {}
    assert "Example" not in str(decision.errors[0])


def test_error_in_one_rule_leaves_other_rules_working(
    examples: AgreementSet, registry: SchemaRegistry
) -> None:
    event = missing_event(registry, dob="2030-01-01")  # birth after the event: no age band
    decision = examples.decide(event, now=NOW, pseudonym_key=KEYS.__getitem__)
    assert "police.met" in decision.grants
    assert decision.grants["stats.national"].derived["child_pseudonym"]


def test_missing_pseudonym_key_is_reported_and_value_not_produced(
    examples: AgreementSet, registry: SchemaRegistry
) -> None:
    decision = examples.decide(missing_event(registry), now=NOW)
    stats = decision.grants["stats.national"]
    assert "child_pseudonym" not in stats.derived
    assert stats.derived["missing_date"] == "2026-11-24"
    assert [(e.recipient, e.stage, e.reason) for e in decision.errors] == [
        ("stats.national", "transform", "child_pseudonym: no pseudonym key for this recipient")
    ]


def test_pseudonyms_differ_per_recipient_key(
    examples: AgreementSet, registry: SchemaRegistry
) -> None:
    event = missing_event(registry)
    one = examples.decide(event, now=NOW, pseudonym_key=lambda r: b"1" * 32)
    two = examples.decide(event, now=NOW, pseudonym_key=lambda r: b"2" * 32)
    first = one.grants["stats.national"].derived["child_pseudonym"]
    assert first != two.grants["stats.national"].derived["child_pseudonym"]
    assert "WCC-000123" not in first


def test_null_optional_fields_do_not_crash_conditions(
    examples: AgreementSet, registry: SchemaRegistry
) -> None:
    # SSDA903 carries no risk level or trafficking flag: they stay null.
    event = missing_event(registry, risk_level=None, trafficking_concern=None, missing_type="A")
    decision = examples.decide(event, now=NOW, pseudonym_key=KEYS.__getitem__)
    assert decision.errors == []
    assert decision.grants["police.met"].rules == (
        RuleRef("dsa.london-councils-met.missing-children@2", "away-notification"),
    )


def test_provider_kind_covers_every_agency_of_that_kind(
    examples: AgreementSet, registry: SchemaRegistry
) -> None:
    event = missing_event(registry, issuer="council.E08000025")  # Birmingham: not a Met borough
    decision = examples.decide(event, now=NOW, pseudonym_key=KEYS.__getitem__)
    assert set(decision.grants) == {"stats.national"}


def test_an_agency_never_receives_its_own_event(
    write: Callable[..., Path], registry: SchemaRegistry
) -> None:
    text = VALID.replace("recipient: police.met", f"recipient: {WESTMINSTER}")
    assert _one(write, registry, text).decide(missing_event(registry), now=NOW).grants == {}


def _decision_event(registry: SchemaRegistry, first_responder: str) -> EventView:
    fields = registry.validate_fields("nrm.decision.made", {
        "referral_id": "NRM-1", "first_responder": first_responder,
        "stage": "reasonable_grounds", "outcome": "positive", "decision_date": "2026-11-20",
    })
    return EventView("e", "nrm.decision.made", "nrm.sca", "NRM-1", NOW, fields)


def test_nrm_decision_goes_only_to_the_referring_council(
    examples: AgreementSet, registry: SchemaRegistry
) -> None:
    decision = examples.decide(_decision_event(registry, WESTMINSTER), now=NOW,
                               pseudonym_key=KEYS.__getitem__)
    assert set(decision.grants) == {WESTMINSTER, "stats.national"}
    other = examples.decide(_decision_event(registry, "council.E09000022"), now=NOW,
                            pseudonym_key=KEYS.__getitem__)
    assert set(other.grants) == {"council.E09000022", "stats.national"}


def test_guardian_gets_only_children_it_is_appointed_to(
    examples: AgreementSet, registry: SchemaRegistry
) -> None:
    event = missing_event(registry)
    without = examples.decide(event, now=NOW, pseudonym_key=KEYS.__getitem__)
    assert "guardian.ictg" not in without.grants
    appointed = SubjectContext(guardians=frozenset({"guardian.ictg"}))
    with_ctx = examples.decide(event, now=NOW, context=appointed, pseudonym_key=KEYS.__getitem__)
    assert "physical_description" in with_ctx.grants["guardian.ictg"].fields_withheld
    assert "la_child_id" in with_ctx.grants["guardian.ictg"].fields_shared


def test_statistics_never_receive_personal_fields(
    examples: AgreementSet, registry: SchemaRegistry
) -> None:
    for version in examples.versions():
        if version.agreement.recipient != "stats.national":
            continue
        for rule in version.agreement.rules:
            for event_type in rule.event_types:
                fields = registry.fields(event_type)
                personal = {n for n in rule.share if n in fields and fields[n].personal}
                assert not personal, (rule.name, event_type, personal)


def test_index_ignores_agreements_that_cannot_match(
    write: Callable[..., Path], registry: SchemaRegistry
) -> None:
    others = {
        f"x{n}": VALID.replace("id: dsa.test.sharing", f"id: dsa.test.other{n}")
                      .replace("providers: [council]", "providers: [council.E08000025]")
        for n in range(20)
    }
    agreements = load_agreements(write(a=VALID, **others), registry)
    trace: list[RuleOutcome] = []
    agreements.decide(missing_event(registry), now=NOW, trace=trace)
    assert len(trace) == 1


def test_conditions_are_compiled_at_load_not_per_event(
    write: Callable[..., Path], registry: SchemaRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    agreements = _one(write, registry)

    def refuse(source: str) -> None:
        raise AssertionError("compiled during a decision")

    monkeypatch.setattr("cel.compile", refuse)
    for risk in ("high", "low", "high"):
        agreements.decide(missing_event(registry, risk_level=risk), now=NOW)
