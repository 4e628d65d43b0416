"""Sample agreements and events shared by the agreement tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broker.agreements import EventView
from broker.schemas import SchemaRegistry

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = REPO_ROOT / "agreements" / "examples"
WESTMINSTER = "council.E09000033"
NOW = datetime(2026, 11, 24, 18, 6, tzinfo=UTC)

# A minimal valid agreement; tests replace lines of it to make one thing wrong at a known line.
VALID = """\
id: dsa.test.sharing
version: 1
title: Test agreement
providers: [council]
recipient: police.met
purpose: Testing.
lawful_basis: ["UK GDPR Art 6(1)(e)"]
valid_from: 2025-04-01
valid_until: 2027-03-31
retention: P6Y
contacts:
  - {role: DPO, agency: council.E09000033, email: dpo@example.gov.uk}
rules:
  - name: missing
    event_types: [child.missing.started]
    when: risk_level == "high"
    share: [la_child_id, risk_level]
    derive:
      - {name: dob_band, transform: age_band, field: dob}
"""


def missing_event(
    registry: SchemaRegistry, issuer: str = WESTMINSTER, **fields: Any
) -> EventView:
    """A `child.missing.started` event with a full Philomena grab pack, overridable per field."""
    values: dict[str, Any] = {
        "la_child_id": "WCC-000123", "first_name": "Amira", "last_name": "Example",
        "dob": "2011-05-02", "age_band": "13-15", "birth_year": 2011, "sex": "f", "uasc": True,
        "trafficking_concern": True, "exploitation_concerns": ["trafficking"],
        "missing_type": "M", "missing_since": "2026-11-24T17:30:00Z", "risk_level": "high",
        "last_seen_location": "Victoria coach station", "last_seen_postcode_district": "SW1W",
        "placement_postcode_district": "W2", "physical_description": "slim",
        "clothing": "grey hoodie", "associates": "none known", "places_frequented": "station",
        "phone_numbers": "07700 900123", "social_media": "none", "medical_needs": "asthma",
        "photo_ref": "photo-1",
    }
    values.update(fields)
    return EventView(
        event_id="ev-1",
        event_type="child.missing.started",
        issuer=issuer,
        subject="WCC-000123",
        occurred_at=datetime(2026, 11, 24, 18, 5, tzinfo=UTC),
        fields=registry.validate_fields("child.missing.started", values),
    )

