"""Acceptance 5 (unit part): the checker the end-to-end test runs on every statistics record."""

from __future__ import annotations

from typing import Any

import pytest
from stats_samples import FeedBuilder, synthetic_feed, when

from broker.stats import assert_no_personal_fields, personal_field_problems
from broker.stats.exceptions import PersonalFieldError


def clean_event() -> dict[str, Any]:
    b = FeedBuilder()
    b.missing("E09000033", "A", when("2024-06-02T08:00:00"), None)
    event = b.events[0]
    event["fields"].update(
        placement_postcode_district="SW1A",
        last_seen_postcode_district="N1",
        exploitation_concerns=["trafficking", "cce"],
        risk_level="high",
        age_band="13-15",
    )
    return event


def test_the_synthetic_feed_and_a_full_statistics_record_pass() -> None:
    assert_no_personal_fields(clean_event())
    for event in synthetic_feed():
        assert_no_personal_fields(event)


@pytest.mark.parametrize(
    ("section", "name", "value"),
    [
        ("fields", "first_name", "Amira"),
        ("fields", "last_name", "Khan"),
        ("fields", "dob", "2010-03-04"),
        ("fields", "date_of_birth", "2010-03-04"),
        ("derived", "child_name", "A"),
        ("fields", "placement_postcode", "SW1A 1AA"),
        ("fields", "home_postcode", "SW1A1AA"),
        ("fields", "upn", "A123456789012"),
        ("fields", "physical_description", "tall"),
        ("fields", "clothing", "red coat"),
        ("fields", "phone_numbers", ["07700900000"]),
        ("fields", "last_seen_location", "station"),
        ("fields", "medical_needs", "asthma"),
        ("fields", "contact_phone", "07700900000"),
    ],
)
def test_personal_fields_are_refused(section: str, name: str, value: Any) -> None:
    event = clean_event()
    event[section][name] = value
    with pytest.raises(PersonalFieldError) as caught:
        assert_no_personal_fields(event)
    message = str(caught.value)
    assert name in message and event["event_id"] in message
    assert str(value) not in message  # the value itself never appears


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("found_postcode_district", "SW1A 1AA", "full postcode"),
        ("some_new_field", "ec1a1bb", "full postcode"),
        ("outcome", "seen near the bus station with two older men", "free text"),
        ("notes_list", ["code", "was with friends at the park"], "free text"),
    ],
)
def test_personal_values_are_refused_whatever_the_field_is_called(
    name: str, value: Any, reason: str
) -> None:
    event = clean_event()
    event["fields"][name] = value
    assert personal_field_problems(event) == [f"fields.{name} holds {reason}"]


def test_withheld_fields_and_top_level_keys() -> None:
    event = clean_event()
    event["fields"]["first_name"] = None  # not disclosed: nothing reached the subscriber
    assert personal_field_problems(event) == []
    event["name"] = "Amira"
    assert personal_field_problems(event) == ["top-level field 'name' is personal"]


@pytest.mark.parametrize("subject", ["228005", "MPS-MISPER-26-55999", "NRM-2026-000123"])
def test_a_subject_is_refused_whatever_it_looks_like(subject: str) -> None:
    # A council's child id, a police reference or an NRM referral id is no personal data by its
    # look, yet it links every pseudonym back to the issuer's records.
    event = clean_event()
    assert event["subject"] is None
    event["subject"] = subject
    with pytest.raises(PersonalFieldError) as caught:
        assert_no_personal_fields(event)
    assert subject not in str(caught.value)
    assert personal_field_problems(event) == [
        "subject disclosed: an issuer's own reference links pseudonyms back"
    ]
