"""The schema registry: loading, fingerprints, single-object encoding, field info, validation."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form

from broker.schemas import (
    EncodingError,
    FieldValueError,
    SchemaRegistry,
    UnknownSchemaError,
    crc64_fingerprint,
)

# The minimum fields of each event type, as listed in EVENTS.md.
MINIMUM_FIELDS = {
    "child.care.started": "legal_status category_of_need placement_type placement_provider "
    "placement_postcode placement_postcode_district home_postcode ethnicity upn",
    "child.placement.changed": "placement_type placement_provider placement_postcode "
    "placement_postcode_district reason",
    "child.care.ended": "reason",
    "child.missing.started": "missing_type missing_since risk_level last_seen_location "
    "last_seen_postcode_district placement_postcode_district physical_description clothing "
    "associates places_frequented phone_numbers social_media medical_needs photo_ref",
    "child.missing.ended": "missing_type missing_since missing_until found_location "
    "found_postcode_district",
    "child.return_interview.recorded": "rhi_offered rhi_accepted interview_date within_72_hours "
    "exploitation_disclosed",
    "police.missing_report.opened": "police_ref force risk_level la_child_id local_authority",
    "police.missing_report.closed": "police_ref force found_at found_postcode_district outcome",
    "nrm.referral.submitted": "referral_id first_responder first_responder_type local_authority "
    "police_force age_at_exploitation nationality gender exploitation_types exploitation_location",
    "nrm.decision.made": "referral_id first_responder stage outcome decision_date",
    "guardian.appointed": "guardian_service appointed_on",
    # docs/alerts.md (issue 17): issued by the alerts service.
    "alert.raised": "la_child_id local_authority rule title priority message action "
    "clock_started_at due_at stage trigger_event_type trigger_event_id",
}
COMMON = [
    "la_child_id", "first_name", "last_name", "dob", "birth_year", "age_band", "sex", "uasc",
    "trafficking_concern", "exploitation_concerns",
]  # fmt: skip


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry.default()


def test_default_is_loaded_once() -> None:
    assert SchemaRegistry.default() is SchemaRegistry.default()


def test_every_event_type_has_a_schema(registry: SchemaRegistry) -> None:
    assert registry.event_types() == sorted(MINIMUM_FIELDS)


def test_minimum_fields_of_events_md_are_present(registry: SchemaRegistry) -> None:
    for event_type, extra in MINIMUM_FIELDS.items():
        fields = registry.fields(event_type)
        common = COMMON if event_type.startswith("child.") else []
        missing = [name for name in [*common, *extra.split()] if name not in fields]
        assert not missing, f"{event_type} lacks {missing}"


def test_field_info_kinds(registry: SchemaRegistry) -> None:
    fields = registry.fields("child.missing.started")
    assert fields["dob"].kind == "date" and fields["dob"].nullable and fields["dob"].personal
    assert fields["missing_since"].kind == "timestamp" and not fields["missing_since"].nullable
    assert fields["missing_type"].symbols == ("M", "A")
    assert fields["risk_level"].symbols == ("none", "low", "medium", "high")
    assert fields["age_band"].kind == "string"
    assert fields["age_band"].allowed == ("0-9", "10-12", "13-15", "16-17", "18+")
    concerns = fields["exploitation_concerns"]
    assert concerns.is_array and concerns.item_kind == "enum" and "cse" in (concerns.symbols or ())
    assert fields["uasc"].kind == "bool"
    assert fields["birth_year"].kind == "int"
    assert registry.fields("child.care.started")["legal_status"].allowed_values is not None


def test_optional_fields_default_to_null(registry: SchemaRegistry) -> None:
    for event_type in registry.event_types():
        for field in registry.schema(event_type)["fields"]:
            if isinstance(field["type"], list):
                assert field["type"][0] == "null" and field["default"] is None, field["name"]


def test_fingerprint_is_crc64_avro_little_endian(registry: SchemaRegistry) -> None:
    # Avro specification test vector: the fingerprint of "null" is 0x63dd24e7cc258f8a.
    assert crc64_fingerprint("null") == (0x63DD24E7CC258F8A).to_bytes(8, "little")
    raw = dict(registry.schema("child.missing.started"))
    expected = bytes.fromhex(fingerprint(to_parsing_canonical_form(raw), "CRC-64-AVRO"))
    assert registry.fingerprint("child.missing.started") == expected


def test_single_object_round_trip(registry: SchemaRegistry) -> None:
    record = registry.validate_fields(
        "nrm.decision.made",
        {
            "referral_id": "R1",
            "first_responder": "council.E09000033",
            "stage": "reasonable_grounds",
            "outcome": "positive",
            "decision_date": "2026-11-30",
        },
    )
    data = registry.encode("nrm.decision.made", record)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == registry.fingerprint("nrm.decision.made")
    name, decoded = registry.decode(data)
    assert name == "uk.safeguarding.events.NrmDecisionMade"
    assert decoded == record


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b"\xc3\x02" + b[2:],
        lambda b: b[:5],
        lambda b: b + b"\x00",
        lambda b: b[:-1],
    ],
)
def test_decode_rejects_bad_encoding(registry: SchemaRegistry, mangle: object) -> None:
    data = registry.encode("nrm.decision.made", _decision(registry))
    with pytest.raises(EncodingError):
        registry.decode(mangle(data))  # type: ignore[operator]


def test_decode_rejects_unknown_fingerprint(registry: SchemaRegistry) -> None:
    data = registry.encode("nrm.decision.made", _decision(registry))
    with pytest.raises(UnknownSchemaError):
        registry.decode(data[:2] + bytes(8) + data[10:])


def test_decode_can_insist_on_a_schema(registry: SchemaRegistry) -> None:
    data = registry.encode("nrm.decision.made", _decision(registry))
    with pytest.raises(EncodingError, match="expected"):
        registry.decode(data, expected="uk.safeguarding.envelope.Envelope")


def test_validate_converts_json_forms(registry: SchemaRegistry) -> None:
    out = registry.validate_fields(
        "child.missing.started",
        {
            "la_child_id": "C1",
            "missing_type": "M",
            "missing_since": "2026-11-24T18:05:00+01:00",
            "dob": "2011-09-09",
        },
    )
    assert out["missing_since"] == datetime(2026, 11, 24, 17, 5, tzinfo=UTC)
    assert out["dob"] == date(2011, 9, 9)
    assert out["risk_level"] is None
    assert list(out) == list(registry.fields("child.missing.started"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dob", "09/09/2011"),
        ("dob", "2011-02-30"),
        ("missing_since", "2026-11-24T18:05:00"),
        ("missing_since", "2026-11-24"),
        ("age_band", "10 to 12"),
        ("risk_level", "HIGH"),
        ("uasc", "yes"),
        ("birth_year", 2**40),
        ("birth_year", True),
        ("exploitation_concerns", ["cse", "pickpocketing"]),
        ("exploitation_concerns", "cse"),
        ("missing_type", None),
        ("first_name", 7),
    ],
)
def test_validate_names_the_field_never_the_value(
    registry: SchemaRegistry, field: str, value: object
) -> None:
    fields = {"la_child_id": "C1", "missing_type": "M", "missing_since": "2026-11-24T18:05:00Z"}
    fields[field] = value  # type: ignore[assignment]
    with pytest.raises(FieldValueError) as info:
        registry.validate_fields("child.missing.started", fields)
    assert info.value.field == field
    assert f"'{field}'" in str(info.value)
    if isinstance(value, str):
        assert value not in str(info.value)
    assert info.value.__cause__ is None


def test_validate_rejects_unknown_and_missing_fields(registry: SchemaRegistry) -> None:
    with pytest.raises(FieldValueError, match="'shoe_size'"):
        registry.validate_fields("child.care.ended", {"la_child_id": "C", "shoe_size": 3})
    with pytest.raises(FieldValueError, match="'reason'"):
        registry.validate_fields("child.care.ended", {"la_child_id": "C"})
    with pytest.raises(UnknownSchemaError):
        registry.validate_fields("child.teleported", {})


def test_value_codec_rejects_trailing_bytes(registry: SchemaRegistry) -> None:
    data = registry.encode_value("child.care.ended", "reason", "E8")
    assert registry.decode_value("child.care.ended", "reason", data) == "E8"
    with pytest.raises(EncodingError):
        registry.decode_value("child.care.ended", "reason", data + b"\x02")


def test_value_to_json(registry: SchemaRegistry) -> None:
    when = datetime(2026, 11, 24, 18, 5, tzinfo=UTC)
    assert registry.value_to_json("child.missing.ended", "missing_until", when) == (
        "2026-11-24T18:05:00Z"
    )
    assert registry.value_to_json("child.missing.ended", "dob", date(2011, 9, 9)) == "2011-09-09"


def _decision(registry: SchemaRegistry) -> dict[str, object]:
    return registry.validate_fields(
        "nrm.decision.made",
        {
            "referral_id": "R1",
            "first_responder": "police.met",
            "stage": "conclusive_grounds",
            "outcome": "negative",
            "decision_date": "2026-12-01",
        },
    )
