"""Errors raised by the audit core.

Messages name the thing that is wrong (an offset, a field name, a chain id) and never a personal
value: audit records hold none, and nothing here ever echoes the bytes it failed to read.
"""

from __future__ import annotations

from broker.errors import BrokerError


class AuditError(BrokerError):
    """Base class for audit errors a user can act on."""


class RecordFormatError(AuditError):
    """Bytes meant as an audit record or checkpoint are unreadable or not in canonical form."""


class CheckpointError(AuditError):
    """A checkpoint could not be created, read or verified."""


class ProofError(AuditError):
    """An inclusion proof file does not check: it was altered, or does not match the key."""


class UnknownKeyError(CheckpointError):
    """No public key is known for a checkpoint's agency and key id at its time."""


class BadSignatureError(CheckpointError):
    """A checkpoint's signature does not verify with the key it names."""
