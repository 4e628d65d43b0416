"""Errors of the live key registry."""

from __future__ import annotations

from broker.errors import BrokerError


class RegistryError(BrokerError):
    """A registry command cannot do what was asked (no registry configured, unknown key...)."""


class RegistryRecordError(BrokerError):
    """A `registry.keys` record is malformed, not canonical, or not signed as it must be.

    `reason` is the code counted by the live view; the message never holds key material.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
