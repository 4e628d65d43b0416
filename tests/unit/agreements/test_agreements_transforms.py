"""Transforms: each band, format and key behaviour, and errors that name no value."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.agreements.transforms import (
    TransformError,
    age_band,
    age_years,
    birth_year,
    date_only,
    postcode_district,
    pseudonym,
)

AT = datetime(2026, 11, 24, 18, 5, tzinfo=UTC)


@pytest.mark.parametrize(("dob", "band"), [
    (date(2026, 11, 24), "0-9"),
    (date(2016, 11, 25), "0-9"),    # 9 until tomorrow
    (date(2016, 11, 24), "10-12"),  # 10 today
    (date(2013, 11, 25), "10-12"),
    (date(2013, 11, 24), "13-15"),
    (date(2010, 11, 25), "13-15"),
    (date(2010, 11, 24), "16-17"),
    (date(2008, 11, 25), "16-17"),
    (date(2008, 11, 24), "18+"),
    (date(1980, 1, 1), "18+"),
])
def test_age_band_boundaries(dob: date, band: str) -> None:
    assert age_band(dob, AT) == band


def test_age_band_is_at_the_event_not_today() -> None:
    assert age_band(date(2010, 11, 24), datetime(2026, 11, 23, tzinfo=UTC)) == "13-15"


def test_age_band_refuses_a_birth_after_the_event() -> None:
    with pytest.raises(TransformError, match="after the event"):
        age_band(date(2027, 1, 1), AT)


@pytest.mark.parametrize(("dob", "years"), [
    (date(2026, 11, 24), 0),   # born on the day
    (date(2025, 11, 25), 0),   # 1 tomorrow
    (date(2025, 11, 24), 1),
    (date(2021, 11, 25), 4),
    (date(2021, 11, 24), 5),
    (date(2016, 11, 25), 9),
    (date(2016, 11, 24), 10),
    (date(2010, 11, 25), 15),
    (date(2010, 11, 24), 16),
])
def test_age_years_whole_years_at_the_event(dob: date, years: int) -> None:
    assert age_years(dob, AT) == years


def test_age_years_leap_day_birthday_counts_from_1_march() -> None:
    born = date(2012, 2, 29)
    assert age_years(born, datetime(2025, 2, 28, tzinfo=UTC)) == 12
    assert age_years(born, datetime(2025, 3, 1, tzinfo=UTC)) == 13


def test_age_years_refuses_a_birth_after_the_event_without_the_date() -> None:
    with pytest.raises(TransformError, match="after the event") as raised:
        age_years(date(2027, 1, 1), AT)
    assert "2027" not in str(raised.value)


def test_age_years_refuses_what_is_not_a_date() -> None:
    with pytest.raises(TransformError, match="not a date"):
        age_years("2011-05-02", AT)


def test_birth_year() -> None:
    assert birth_year(date(2011, 5, 2), AT) == 2011


@pytest.mark.parametrize(("postcode", "district"), [
    ("SW1A 1AA", "SW1A"), ("sw1a1aa", "SW1A"), ("W2 1HB", "W2"), ("M1 1AE", "M1"),
    ("B33 8TH", "B33"), ("EC1A 1BB", "EC1A"), (" CR2 6XH ", "CR2"), ("DN55 1PT", "DN55"),
    ("SW1W", "SW1W"),
])
def test_postcode_district(postcode: str, district: str) -> None:
    assert postcode_district(postcode, AT) == district


@pytest.mark.parametrize("bad", ["Flat 3, 10 Downing Street", "12345", "", "SW1A 1AAA"])
def test_postcode_district_refuses_what_is_not_a_postcode_without_quoting_it(bad: str) -> None:
    with pytest.raises(TransformError) as raised:
        postcode_district(bad, AT)
    assert bad.strip() == "" or bad.strip() not in str(raised.value)


def test_date_only_is_the_utc_date() -> None:
    late_bst = datetime(2026, 6, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert date_only(late_bst, AT) == "2026-05-31"
    assert date_only(datetime(2026, 11, 24, 23, 59, tzinfo=UTC), AT) == "2026-11-24"


def test_date_only_refuses_a_naive_time() -> None:
    with pytest.raises(TransformError, match="time zone"):
        date_only(datetime(2026, 11, 24, 12, 0), AT)


def test_pseudonym_is_keyed_hmac_sha256() -> None:
    key = b"k" * 32
    expected = hmac.new(key, b"WCC-000123", hashlib.sha256).hexdigest()
    assert pseudonym("WCC-000123", AT, key) == expected


def test_pseudonym_differs_per_key_and_needs_a_key() -> None:
    assert pseudonym("WCC-000123", AT, b"a" * 32) != pseudonym("WCC-000123", AT, b"b" * 32)
    with pytest.raises(TransformError, match="no pseudonym key"):
        pseudonym("WCC-000123", AT, None)


@given(st.text(min_size=1), st.binary(min_size=16, max_size=64))
def test_pseudonym_is_stable_hex(value: str, key: bytes) -> None:
    first = pseudonym(value, AT, key)
    assert first == pseudonym(value, AT, key)
    assert len(first) == 64
    int(first, 16)


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2026, 11, 24)))
def test_every_past_birth_date_has_exactly_one_band(dob: date) -> None:
    assert age_band(dob, AT) in {"0-9", "10-12", "13-15", "16-17", "18+"}
