"""The check that nothing personal reaches the statistics subscriber.

By agreement the statistics feed holds pseudonyms, ages and age bands, districts and codes only.
`assert_no_personal_fields` is applied to every event the subscriber consumes (it fails closed)
and is what the end-to-end test calls on every record of the feed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from broker.stats.exceptions import PersonalFieldError

# Top-level keys of a feed event (EVENTS.md, "The JSON form").
FEED_EVENT_KEYS = frozenset(
    {
        "issuer",
        "event_id",
        "event_type",
        "subject",
        "occurred_at",
        "fields",
        "derived",
        "agreements",
        "verified",
    }
)

# Fields that identify a person or are free text (the Philomena grab pack among them).
FORBIDDEN_FIELDS = frozenset(
    {
        "first_name",
        "last_name",
        "name",
        "dob",
        "date_of_birth",
        "upn",
        "home_postcode",
        "placement_postcode",
        "postcode",
        "last_seen_location",
        "found_location",
        "physical_description",
        "clothing",
        "associates",
        "places_frequented",
        "phone_numbers",
        "social_media",
        "medical_needs",
        "photo_ref",
        "police_ref",
        "description",
        "notes",
        "comments",
    }
)

# Name patterns caught even when a field is new: any *name*, *dob*, *phone*, and any postcode
# that is not explicitly a postcode district.
_FORBIDDEN_NAME = re.compile(r"(^|_)(name|names|dob|phone|email|address)(_|$)|birth_date")
_POSTCODE_NAME = re.compile(r"postcode(?!_district)")
# A full UK postcode (outward and inward code), as a whole value.
_FULL_POSTCODE = re.compile(r"^\s*[A-Z]{1,2}[0-9][A-Z0-9]?\s*[0-9][A-Z]{2}\s*$", re.IGNORECASE)
# Codes, enums, dates and pseudonyms have no spaces; four or more words is prose.
_FREE_TEXT_WORDS = 4


@lru_cache(maxsize=4096)  # per field of every event; the feed's field names are few
def _is_forbidden_name(name: str) -> bool:
    lowered = name.lower()
    return (
        lowered in FORBIDDEN_FIELDS
        or bool(_FORBIDDEN_NAME.search(lowered))
        or bool(_POSTCODE_NAME.search(lowered))
    )


def _offending_value(value: Any) -> str | None:
    """Why a value looks personal (a reason code), or None."""
    values = value if isinstance(value, list | tuple) else [value]
    for item in values:
        if not isinstance(item, str):
            continue
        if _FULL_POSTCODE.match(item):
            return "full postcode"
        if len(item.split()) >= _FREE_TEXT_WORDS:
            return "free text"
    return None


def personal_field_problems(event: Mapping[str, Any]) -> list[str]:
    """Every reason the event may not be given to the statistics subscriber (empty if none).

    Reasons name the section and field, never the value.
    """
    problems: list[str] = []
    for key in event:
        if key not in FEED_EVENT_KEYS and _is_forbidden_name(str(key)):
            problems.append(f"top-level field {key!r} is personal")
    for section in ("fields", "derived"):
        content = event.get(section) or {}
        if not isinstance(content, Mapping):
            problems.append(f"{section!r} is not an object")
            continue
        for name, value in content.items():
            if value is None:
                continue  # withheld or unknown: nothing was disclosed
            if _is_forbidden_name(str(name)):
                problems.append(f"{section}.{name} is a personal field")
                continue
            reason = _offending_value(value)
            if reason is not None:
                problems.append(f"{section}.{name} holds {reason}")
    if event.get("subject") is not None:
        # The issuer's own reference (a council's child id, a police reference, an NRM referral
        # id) would link every pseudonym back to that agency's records; no agreement grants it
        # to the statistics collection, so the router withholds it (wire format v2).
        problems.append("subject disclosed: an issuer's own reference links pseudonyms back")
    return problems


def assert_no_personal_fields(event: Mapping[str, Any]) -> None:
    """Raise `PersonalFieldError` if the event carries a name, date of birth, full postcode or
    free text. The message names the event id and fields, never their values."""
    problems = personal_field_problems(event)
    if problems:
        event_id = event.get("event_id", "(no id)")
        raise PersonalFieldError(
            f"event {event_id} must not reach the statistics feed: {'; '.join(problems)}; "
            "narrow the agreement that granted it"
        )
