"""Errors of the statistics subscriber.

Messages name the event (by id) and the field (by name), never a value: the values are exactly
what must not leak.
"""

from __future__ import annotations

from broker.errors import BrokerError


class StatsError(BrokerError):
    """A problem with the statistics feed, its snapshot or the options given to `broker stats`."""


class PersonalFieldError(StatsError):
    """A record for the statistics subscriber carries a field it must never receive.

    This means an agreement grants the statistics feed too much: fix the agreement, do not
    work around it here.
    """

    exit_code = 3


class SnapshotError(StatsError):
    """A state snapshot cannot be read back (wrong version, damaged file)."""
