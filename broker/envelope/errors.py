"""Errors of the envelope layer; messages name the problem, never a personal value."""

from __future__ import annotations

from typing import Literal

from broker.errors import BrokerError

ReasonCode = Literal[
    "bad_encoding",
    "unknown_schema",
    "bad_signature",
    "unknown_key",
    "revoked_key",
    "key_not_valid",
    "schema_violation",
    "digest_mismatch",
    "duplicate_digest",
    "bad_derived_signature",
    "wrong_recipient",
    "wrong_role",
    "wrong_router",
    "clock_skew",
    "non_canonical",
    # A subscriber following the registry: a forward names an agreement version the registry
    # does not hold for this recipient (broker/feed.py; not a wire-format check).
    "unknown_agreement",
]


class EnvelopeError(BrokerError):
    """Base of the envelope layer's errors."""


class EventFormatError(EnvelopeError):
    """A JSON event that is not in the EVENTS.md form (names the key, never the value)."""


class KeyFileError(EnvelopeError):
    """A key file that cannot be written, read or decrypted, or a key used outside its terms."""


class DisclosureError(EnvelopeError):
    """A disclose request that asks for something the envelope cannot give."""


class VerificationError(EnvelopeError):
    """Verification failed; `code` is a stable reason code for quarantine records and metrics."""

    def __init__(self, code: ReasonCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: ReasonCode = code
