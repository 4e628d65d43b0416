"""Errors of the NRM connector."""

from __future__ import annotations

from broker.errors import BrokerError


class NrmPayloadError(BrokerError, ValueError):
    """A referral payload or decision that cannot be mapped; the message holds no personal data."""
