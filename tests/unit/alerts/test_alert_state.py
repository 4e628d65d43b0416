"""The alerts service's state records: applied only when sealed with its own key."""

from __future__ import annotations

from datetime import UTC, datetime

from broker.alerts.clocks import ChildState, Seen
from broker.alerts.state import apply_record, seal_for, state_key
from broker.router.changelog import ChangelogSeal, Ignored

CHILD = ("council.E09000033", "C1")


def _state() -> ChildState:
    at = datetime(2026, 11, 24, 18, tzinfo=UTC)
    return ChildState([Seen("e1", "child.missing.started", at, {"missing_type": "M"},
                            ["still-missing@1"], [], {"episodes_90d": 0})], {"alert-1"})


def test_a_sealed_record_is_applied_and_a_sealed_deletion_removes_it() -> None:
    seal = seal_for(b"secret")
    states: dict[tuple[str, str], ChildState] = {}
    key = state_key(CHILD)
    assert apply_record(states, key, seal.seal(key, _state().to_bytes()), seal) is None
    assert states[CHILD].raised == {"alert-1"}
    assert states[CHILD].seen[0].starts == ["still-missing@1"]
    assert apply_record(states, key, seal.seal_delete(key), seal) is None
    assert CHILD not in states


def test_records_not_sealed_by_the_alerts_key_are_ignored() -> None:
    seal = seal_for(b"secret")
    key = state_key(CHILD)
    payload = _state().to_bytes()
    states: dict[tuple[str, str], ChildState] = {}
    router_seal = ChangelogSeal.from_secret(b"secret")  # the router's label, same secret
    assert apply_record(states, key, router_seal.seal(key, payload), seal) == Ignored.BAD_MAC
    assert apply_record(states, key, seal_for(b"other").seal(key, payload), seal) == (
        Ignored.BAD_MAC)
    assert apply_record(states, key, payload, seal) == Ignored.UNAUTHENTICATED
    assert apply_record(states, key, None, seal) == Ignored.TOMBSTONE
    other = state_key(("council.E09000033", "C2"))  # a record moved to another child's key
    assert apply_record(states, other, seal.seal(key, payload), seal) == Ignored.BAD_MAC
    assert apply_record(states, b"x|y", seal.seal(b"x|y", payload), seal) == Ignored.BAD_KEY
    assert apply_record(states, key, seal.seal(key, b"not json"), seal) == Ignored.BAD_VALUE
    assert states == {}
