"""How people see an alert: one plain line saying what, which child reference, since when and
what to do (`broker feed` adds it to each alert's JSON as `alert`, and lists alerts first)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.alerts.clocks import ALERT_EVENT_TYPE


def is_alert(event: Mapping[str, Any]) -> bool:
    return event.get("event_type") == ALERT_EVENT_TYPE


def plain(event: Mapping[str, Any]) -> str:
    """`HIGH ALERT: <title> - child <ref> (<council>), since <time>: <message> Do: <action>`;
    a field the recipient was not given reads `(withheld)`."""
    fields = event.get("fields") or {}

    def get(name: str) -> str:
        value = fields.get(name)
        return "(withheld)" if value is None else " ".join(str(value).split())

    return (f"{get('priority').upper()} ALERT: {get('title')} - child {get('la_child_id')} "
            f"({get('local_authority')}), since {get('clock_started_at')}, due "
            f"{get('due_at')}: {get('message')} Do: {get('action')}")


def alerts_first(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alerts (high priority first) before other events; otherwise the order is kept."""
    rank = {"high": 0, "medium": 1, "low": 2}

    def key(event: dict[str, Any]) -> tuple[int, int]:
        if not is_alert(event):
            return (1, 0)
        return (0, rank.get(str((event.get("fields") or {}).get("priority")), 3))

    return sorted(events, key=key)  # stable
