"""NRM referral payload mapping (acceptance 5, mapping part) and decision events."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from connector_data import ID_SECRET, NRM_EXAMPLE

from connectors.nrm import NrmPayloadError, decision_event, exploitation_types, referral_to_event

COUNCIL = "council.E09000033"
WHEN = datetime(2026, 11, 24, 18, 5, tzinfo=UTC)


@pytest.fixture
def payload() -> dict[str, Any]:
    if not NRM_EXAMPLE.is_file():
        pytest.skip(f"shared example payload not found at {NRM_EXAMPLE}")
    data: dict[str, Any] = json.loads(NRM_EXAMPLE.read_text())
    return data


def test_example_payload_maps_to_a_referral(payload: dict[str, Any]) -> None:
    event = referral_to_event(payload, agency=COUNCIL, id_secret=ID_SECRET, submitted_at=WHEN)
    assert event["event_type"] == "nrm.referral.submitted"
    assert event["occurred_at"] == "2026-11-24T18:05:00Z"
    fields = event["fields"]
    assert fields["referral_id"] == payload["ExternalId"] == event["subject"]
    assert fields["first_responder"] == COUNCIL
    assert fields["first_responder_type"] == "local_authority"
    assert fields["local_authority"] == COUNCIL  # no LocalAuthority: the referring council
    assert fields["police_force"] is None  # "" in the payload
    assert fields["age_at_exploitation"] == "adult"
    assert fields["nationality"] == "Australian"
    assert fields["gender"] == "male"
    assert fields["exploitation_types"] == ["labour"]  # ComponentForcedToWorkForNothing
    assert fields["exploitation_location"] == "uk"


def test_example_event_validates_against_the_schema(payload: dict[str, Any]) -> None:
    schemas = pytest.importorskip("broker.schemas")
    registry = schemas.SchemaRegistry.default()
    event = referral_to_event(
        payload, agency=COUNCIL, id_secret=ID_SECRET, submitted_at=WHEN, la_child_id="566910"
    )
    registry.validate_fields(event["event_type"], event["fields"])
    decision = decision_event(
        "r1", COUNCIL, "CG", "negative", "2027-01-02", "566910", id_secret=ID_SECRET
    )
    registry.validate_fields(decision["event_type"], decision["fields"])


def test_contact_details_and_free_text_never_reach_the_event(payload: dict[str, Any]) -> None:
    text = json.dumps(
        referral_to_event(payload, agency=COUNCIL, id_secret=ID_SECRET, submitted_at=WHEN)
    )
    for key in (
        "Customer.Email",
        "Agent.Email",
        "Agent.Phone",
        "Agent.Name",
        "Agent.Forename1",
        "ExploiterDetails",
        "ExploitationUKAddress",
        "ExploitationJourneyDetails",
        "ReasonForMakingReferral",
        "PVFamily",
        "ExploitationTreatment",
        "DetailsOfEvidenceOfDishonesty",
        "City1",
    ):
        assert str(payload[key]) not in text, key


def test_id_is_stable_and_identity_fields_are_carried(payload: dict[str, Any]) -> None:
    first = referral_to_event(payload, agency=COUNCIL, id_secret=ID_SECRET, submitted_at=WHEN)
    again = referral_to_event(payload, agency=COUNCIL, id_secret=ID_SECRET)
    assert first["event_id"] == again["event_id"]
    assert (
        first["event_id"]
        != referral_to_event(payload, agency="police.met", id_secret=ID_SECRET)["event_id"]
    )
    child = dict(payload, **{"Customer.DOB": "2010-05-01", "AdultOrChild": "Child"})
    event = referral_to_event(
        child, agency=COUNCIL, id_secret=ID_SECRET, submitted_at=WHEN, la_child_id="566910"
    )
    assert event["subject"] == "566910"
    assert event["fields"]["la_child_id"] == "566910"
    assert event["fields"]["dob"] == "2010-05-01"
    assert event["fields"]["age_band"] == "16-17"
    assert event["fields"]["first_name"] == payload["Customer.Forename1"]


def test_component_flags_map_to_exploitation_types() -> None:
    flags = {
        "ComponentForcedCrime": "Yes",
        "ComponentProstitution": "Yes",
        "ComponentChildExploitation": "Yes",
        "ComponentOrgansRemoved": "Yes",
        "ComponentDomesticServitude": "Yes",
        "ComponentWagesTaken": "No",
        "ExploitationOther": "described elsewhere",
    }
    assert exploitation_types(flags) == [
        "criminal",
        "sexual",
        "domestic_servitude",
        "organ_harvesting",
        "other",
    ]
    assert exploitation_types({"ComponentSomethingNew": "Yes"}) == ["other"]
    assert exploitation_types({}) == []


def test_police_referrer_and_agency_names(payload: dict[str, Any]) -> None:
    named = dict(payload, LocalAuthority="Camden", PoliceForce="")
    event = referral_to_event(
        named, agency="police.met", id_secret=ID_SECRET, agency_ids={"camden ": "council.E09000007"}
    )
    assert event["fields"]["first_responder_type"] == "police"
    assert event["fields"]["police_force"] == "police.met"
    assert event["fields"]["local_authority"] == "council.E09000007"
    with pytest.raises(NrmPayloadError, match="LocalAuthority"):
        referral_to_event(named, agency="police.met", id_secret=ID_SECRET)
    with pytest.raises(NrmPayloadError, match="first responder"):
        referral_to_event(payload, agency="stats.national", id_secret=ID_SECRET)


def test_duty_to_notify_and_bad_payloads_are_refused(payload: dict[str, Any]) -> None:
    with pytest.raises(NrmPayloadError, match="duty-to-notify"):
        referral_to_event(dict(payload, Type="662265"), agency=COUNCIL, id_secret=ID_SECRET)
    with pytest.raises(NrmPayloadError, match="ExternalId"):
        referral_to_event(dict(payload, ExternalId=""), agency=COUNCIL, id_secret=ID_SECRET)
    with pytest.raises(NrmPayloadError) as info:
        referral_to_event(dict(payload, Type="1"), agency=COUNCIL, id_secret=ID_SECRET)
    assert "TestFirstname" not in str(info.value)


def test_decision_event() -> None:
    event = decision_event(
        "r1", COUNCIL, "RG", "Positive", date(2027, 1, 2), "566910", id_secret=ID_SECRET
    )
    assert event["event_type"] == "nrm.decision.made"
    assert event["subject"] == "566910"
    assert event["occurred_at"] == "2027-01-02T00:00:00Z"
    assert event["fields"] == {
        "referral_id": "r1",
        "first_responder": COUNCIL,
        "stage": "reasonable_grounds",
        "outcome": "positive",
        "decision_date": "2027-01-02",
    }
    assert event == decision_event(
        "r1", COUNCIL, "reasonable_grounds", "positive", "2027-01-02", "566910", id_secret=ID_SECRET
    )
    other = decision_event(
        "r1", COUNCIL, "CG", "positive", "2027-03-01", "566910", id_secret=ID_SECRET
    )
    assert other["event_id"] != event["event_id"]
    with pytest.raises(NrmPayloadError):
        decision_event(
            "r1", COUNCIL, "final", "positive", "2027-01-02", "566910", id_secret=ID_SECRET
        )
    with pytest.raises(NrmPayloadError):
        decision_event("r1", COUNCIL, "RG", "maybe", "2027-01-02", "566910", id_secret=ID_SECRET)
    with pytest.raises(NrmPayloadError):
        decision_event("r1", COUNCIL, "RG", "positive", "02/01/2027", "566910", id_secret=ID_SECRET)
