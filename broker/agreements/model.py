"""The data-sharing agreement file format, as pydantic models.

These models check the shape of one file (keys, types, patterns). Whether the names mean
anything (event types, fields, agencies, conditions) and whether files agree is `check`'s job.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

TransformName = Literal[
    "age_band", "age_years", "birth_year", "postcode_district", "date_only", "pseudonym"
]

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
RuleName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
# ISO 8601 period such as P6Y, P18M, P90D (years, months, weeks, days).
Period = Annotated[str, StringConstraints(pattern=r"^P(\d+Y)?(\d+M)?(\d+W)?(\d+D)?$", min_length=3)]
Instant = date | datetime


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Contact(_Strict):
    """Who to ask about the agreement: a role and a mailbox, not a private person."""

    role: Text
    agency: Text
    email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class Derivation(_Strict):
    """A value the router computes from one field with a named transform."""

    name: Name
    transform: TransformName
    field: Name


class Rule(_Strict):
    """Which events, under which condition, give the recipient which fields."""

    name: RuleName
    event_types: Annotated[list[Text], Field(min_length=1)]
    when: Text | None = None
    share: list[Name] = []
    derive: list[Derivation] = []


class Agreement(_Strict):
    """One version of one data-sharing agreement (one YAML file)."""

    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")]
    version: Annotated[int, Field(ge=1)]
    title: Text
    providers: Annotated[list[Text], Field(min_length=1)]
    recipient: Text
    purpose: Text
    lawful_basis: Annotated[list[Text], Field(min_length=1)]
    valid_from: Instant
    valid_until: Instant | None = None
    retention: Period
    contacts: Annotated[list[Contact], Field(min_length=1)]
    rules: Annotated[list[Rule], Field(min_length=1)]

    @property
    def key(self) -> str:
        """`id@version`, the name audit records and grants use."""
        return f"{self.id}@{self.version}"

    @property
    def starts(self) -> datetime | None:
        """First instant in force (a date means 00:00 UTC that day); None if not time-zoned."""
        return _as_utc(self.valid_from, end_of_day=False)

    @property
    def ends(self) -> datetime | None:
        """First instant no longer in force (a date is inclusive: it ends at midnight UTC after)."""
        return None if self.valid_until is None else _as_utc(self.valid_until, end_of_day=True)


def _as_utc(value: Instant, *, end_of_day: bool) -> datetime | None:
    if isinstance(value, datetime):
        return None if value.tzinfo is None else value.astimezone(UTC)
    start = datetime.combine(value, time(0), tzinfo=UTC)
    return start + timedelta(days=1) if end_of_day else start
