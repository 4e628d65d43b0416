"""Sample events and fixed ids/times shared by the envelope tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from broker.schemas import FieldInfo, SchemaRegistry

ISSUER = "council.E09000033"
ROUTER = "router.main"
RECIPIENT = "police.met"
KEYS_FROM = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 24, 18, 6, tzinfo=UTC)


def sample_value(info: FieldInfo, tag: str = "") -> Any:
    """A valid JSON-form value for a field; strings carry the field name so leaks are visible."""
    kind = info.item_kind if info.is_array else info.kind
    values = info.allowed_values
    if kind in ("string", "enum"):
        value: Any = values[-1] if values else f"secret-{info.name}-{tag}"
    elif kind == "date":
        value = (date(2011, 9, 9) + timedelta(days=len(info.name))).isoformat()
    elif kind == "timestamp":
        value = f"2026-11-24T17:{len(info.name):02d}:00Z"
    elif kind == "bool":
        value = True
    else:
        value = 2011
    return [value] if info.is_array else value


def sample_event(event_type: str, tag: str = "") -> dict[str, Any]:
    """An EVENTS.md JSON event with every field of `event_type` set."""
    fields = SchemaRegistry.default().fields(event_type)
    return {
        "event_type": event_type,
        "subject": f"subject-ref-{tag}",
        "occurred_at": "2026-11-24T18:05:00Z",
        "fields": {name: sample_value(info, tag) for name, info in fields.items()},
    }
