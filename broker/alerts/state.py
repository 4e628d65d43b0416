"""The alerts service's Kafka-backed state: one sealed record per child in `state.<service>`.

Key `c|<council>|<child id>` (UTF-8, compaction keeps the latest), value the child's
`ChildState` as JSON, sealed with the service's own MAC (`ChangelogSeal`, the router's codec,
under a key derived from the alerts state secret with its own label). Records are written in the
same transaction as the alerts they record as raised and the feed offsets they consumed, so a
restarted or new instance rebuilds exactly the state that matches what was committed. A record
that does not authenticate or decode is ignored (counted by reason), never applied.
"""

from __future__ import annotations

from broker.alerts.clocks import ChildKey, ChildState
from broker.config import BrokerConfig
from broker.kafka.client import TopicSpec
from broker.router.changelog import ChangelogAuthError, ChangelogSeal, Ignored

SEP = "|"
HKDF_INFO = b"uk.safeguarding.alerts.state-mac.v1"


def alerts_topic_specs(config: BrokerConfig) -> list[TopicSpec]:
    """The alerts service's state topic (one partition: the service replays all of it), created
    by the operator (`provision`); the router neither creates nor sees it."""
    if config.alerts is None:
        return []
    return [TopicSpec(config.alerts.state_topic, 1, compacted=True)]


def seal_for(secret: bytes) -> ChangelogSeal:
    """The alerts service's state seal (independent of the router's)."""
    return ChangelogSeal.from_secret(secret, HKDF_INFO)


def state_key(child: ChildKey) -> bytes:
    return SEP.join(("c", *child)).encode()


def apply_record(
    states: dict[ChildKey, ChildState], key: bytes | None, value: bytes | None,
    seal: ChangelogSeal,
) -> Ignored | None:
    """Fold one state record into `states`; None when applied, else why not. Never raises."""
    try:
        text = key.decode() if key is not None else ""
    except UnicodeDecodeError:
        return Ignored.BAD_KEY
    parts = text.split(SEP)
    if len(parts) != 3 or parts[0] != "c" or not parts[1] or not parts[2]:
        return Ignored.BAD_KEY
    assert key is not None
    try:
        opened = seal.open(key, value)
    except ChangelogAuthError as exc:
        return exc.reason
    child = (parts[1], parts[2])
    if opened.payload is None:
        states.pop(child, None)
        return None
    try:
        states[child] = ChildState.from_bytes(opened.payload)
    except Exception:  # an authentic but malformed value (never written so)
        return Ignored.BAD_VALUE
    return None
