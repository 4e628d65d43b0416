"""Live intake: an HTTP endpoint and a watched drop folder that sign and publish events.

For case-management systems (council) and missing-persons systems (police) that send EVENTS.md
JSON events as they happen. Both paths validate, sign and publish through `broker.publish`'s
`Publisher`, and answer per event: accepted (with its event id) or rejected (with a reason that
names the field, never its value).
"""

from connectors.live.exceptions import LiveError, TokenFileError
from connectors.live.intake import (
    COUNCIL_EVENT_TYPES,
    POLICE_EVENT_TYPES,
    EventResult,
    Intake,
)
from connectors.live.tokens import TokenStore, new_token

__all__ = [
    "COUNCIL_EVENT_TYPES",
    "POLICE_EVENT_TYPES",
    "EventResult",
    "Intake",
    "LiveError",
    "TokenFileError",
    "TokenStore",
    "new_token",
]
