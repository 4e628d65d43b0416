"""Errors of the live intake."""

from __future__ import annotations

from broker.errors import BrokerError


class LiveError(BrokerError):
    """The live intake cannot start or run (bad options, no tokens, port in use)."""


class TokenFileError(LiveError):
    """The tokens file is missing or malformed; the message never holds a token."""
