"""The alert rule file format, as pydantic models (one YAML file per rule version).

A rule says which event starts a clock (`start`), which events stop it (`stop`), how long it
runs (`after`, one duration per escalation stage, optionally per risk level), and what the
alert says (`title`, `message`, `action`, `priority`). Whether names mean anything (event
types, fields, conditions) is `check`'s job, as for agreements.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
RiskLevel = Literal["none", "low", "medium", "high"]
Priority = Literal["high", "medium", "low"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Trigger(_Strict):
    """Events of these types, for which `when` (CEL over the event view) is true."""

    event_types: Annotated[list[Text], Field(min_length=1)]
    when: Text | None = None


class AlertRule(_Strict):
    """One version of one alert rule (one YAML file)."""

    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")]
    version: Annotated[int, Field(ge=1)]
    title: Text
    priority: Priority
    # Where the clock comes from: the statutory guidance, paragraph and what it says.
    source: Text
    start: Trigger
    # No stop: the alert is raised whenever the clock runs out (immediate or escalation alerts).
    stop: Trigger | None = None
    # One duration per stage (ISO 8601: PT0S at once, PT4H, P3D); each stage raises once.
    after: Annotated[list[timedelta], Field(min_length=1)]
    # Stage durations for a start event with this `risk_level` (same number of stages).
    after_by_risk: dict[RiskLevel, Annotated[list[timedelta], Field(min_length=1)]] = {}
    message: Text
    action: Text

    @property
    def key(self) -> str:
        """`id@version`, the name alert events carry."""
        return f"{self.id}@{self.version}"

    def stages(self, risk_level: object) -> list[timedelta]:
        """The stage durations for a start event graded `risk_level`."""
        if isinstance(risk_level, str) and risk_level in self.after_by_risk:
            return self.after_by_risk[risk_level]
        return self.after
