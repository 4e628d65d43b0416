"""Named transforms that turn a precise personal value into a coarser or unlinkable one.

Each transform takes the field's value (as decoded from Avro) and the event's time, and returns the
derived value. A value it cannot handle raises `TransformError` with a message that never contains
the value itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from broker.agreements.model import TransformName


class TransformError(ValueError):
    """A field value a transform cannot use; the message names no personal value."""


@dataclass(frozen=True, slots=True)
class Transform:
    """A transform, the field kinds it accepts (schema python kinds), and whether it needs a key."""

    apply: Callable[[Any, datetime, bytes | None], Any]
    accepts: frozenset[str]
    keyed: bool = False


AGE_BANDS: tuple[tuple[int, str], ...] = ((10, "0-9"), (13, "10-12"), (16, "13-15"), (18, "16-17"))
ADULT_BAND = "18+"

# Outward code, optional space, inward code (digit and two letters); or an outward code alone.
_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)(?:\s*([0-9][A-Z]{2}))?$")


def age_in_years(born: date, on: date) -> int:
    """Whole years between `born` and `on` (a birthday on 29 February counts from 1 March)."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def age_band(value: Any, occurred_at: datetime, key: bytes | None = None) -> str:
    """The EVENTS.md age band (0-9, 10-12, 13-15, 16-17, 18+) of a date of birth at the event."""
    born = _as_date(value)
    age = age_in_years(born, occurred_at.date())
    if age < 0:
        raise TransformError("date of birth is after the event")
    return next((band for limit, band in AGE_BANDS if age < limit), ADULT_BAND)


def age_years(value: Any, occurred_at: datetime, key: bytes | None = None) -> int:
    """Age in whole years at the event (`occurred_at`) of a date of birth.

    For statistics whose bands do not line up with `age_band` (under 1, 1-4, 5-9, ...): the
    recipient gets a number, never the date itself.
    """
    age = age_in_years(_as_date(value), occurred_at.date())
    if age < 0:
        raise TransformError("date of birth is after the event")
    return age


def birth_year(value: Any, occurred_at: datetime, key: bytes | None = None) -> int:
    """The year of a date of birth."""
    return _as_date(value).year


def postcode_district(value: Any, occurred_at: datetime, key: bytes | None = None) -> str:
    """The district (outward code, e.g. `SW1A`) of a UK postcode."""
    if not isinstance(value, str):
        raise TransformError("postcode is not text")
    match = _POSTCODE.match(value.strip().upper())
    if match is None:
        raise TransformError("value is not a UK postcode")
    return match.group(1)


def date_only(value: Any, occurred_at: datetime, key: bytes | None = None) -> str:
    """The calendar date (UTC) of a timestamp, as `YYYY-MM-DD`; a date is kept as it is.

    Text, because derived values travel in the router-signed section, which holds JSON values.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TransformError("timestamp has no time zone")
        return value.astimezone(UTC).date().isoformat()
    return _as_date(value).isoformat()


def pseudonym(value: Any, occurred_at: datetime, key: bytes | None = None) -> str:
    """Hex HMAC-SHA256 of the value under the recipient's key: stable per recipient only."""
    if key is None:
        raise TransformError("no pseudonym key for this recipient")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TransformError("pseudonym input is not text or a number")
    return hmac.new(key, str(value).encode("utf-8"), hashlib.sha256).hexdigest()


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    raise TransformError("value is not a date")


TRANSFORMS: Mapping[TransformName, Transform] = {
    "age_band": Transform(age_band, frozenset({"date", "timestamp"})),
    "age_years": Transform(age_years, frozenset({"date", "timestamp"})),
    "birth_year": Transform(birth_year, frozenset({"date", "timestamp"})),
    "postcode_district": Transform(postcode_district, frozenset({"string"})),
    "date_only": Transform(date_only, frozenset({"timestamp", "date"})),
    "pseudonym": Transform(pseudonym, frozenset({"string", "int"}), keyed=True),
}
