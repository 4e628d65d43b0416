"""Authentication of the router's `router.state` changelog records (the router's own MAC).

Anyone who can write to `router.state` could otherwise tell the router that an event was already
routed, that a guardian was appointed, or where its audit chain stands. So every record the
router writes there carries an HMAC-SHA256 tag under a key only routers hold, and a record whose
tag does not verify is never applied (`broker.router.state.apply_changelog`).

Key: HKDF-SHA256 of the router's pseudonym secret (`router.pseudonym_secret_*` in the config)
with its own `info` label, so it is independent of the per-recipient pseudonym keys derived from
the same secret. Every router instance of a deployment holds that secret (pseudonyms must agree
across instances) and nobody else does: auditors, agencies and Kafka operators never see it.

Value layout (the Kafka key stays the plain UTF-8 key, which compaction needs)::

    MAGIC (b"RS" 0x01) | op (0x01 put, 0x00 delete) | payload | tag (32 bytes)

    tag = HMAC-SHA256(state key, DOMAIN | u32 len(key) | key | op | u64 len(payload) | payload)

A deletion is a sealed value with op 0x00, never a Kafka tombstone: a null value cannot carry a
tag, so a tombstone written by someone else could erase a "seen" entry. The router never writes
Kafka tombstones; any it finds are ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"RS\x01"
DOMAIN = b"uk.safeguarding.router.state.v1\x00"
HKDF_INFO = b"uk.safeguarding.router.state-mac.v1"
TAG_SIZE = 32
OP_PUT = 1
OP_DELETE = 0


class Ignored(StrEnum):
    """Why a changelog record was not applied (metric label and log text: codes only)."""

    BAD_KEY = "bad_key"  # no key, not UTF-8, or not a key the router writes
    TOMBSTONE = "tombstone"  # a null value: the router never writes one
    UNAUTHENTICATED = "unauthenticated"  # no router seal (includes state from before sealing)
    BAD_MAC = "bad_mac"  # sealed, but the tag does not verify under our key
    BAD_VALUE = "bad_value"  # authentic, but not a value of its kind (never written so)
    STALE = "stale"  # authentic but older than what is already applied (a re-sent copy)


class ChangelogAuthError(Exception):
    """A changelog value failed authentication; `reason` says how (no key or value in it)."""

    def __init__(self, reason: Ignored) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True)
class Opened:
    """An authenticated changelog value: `payload` is None for a sealed deletion."""

    payload: bytes | None


class ChangelogSeal:
    """Seals and opens `router.state` values with the router's state key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the router state key must be 32 bytes")
        self._key = key

    @classmethod
    def from_secret(cls, secret: bytes, info: bytes = HKDF_INFO) -> ChangelogSeal:
        """The state key derived from the router's pseudonym secret (see the module doc);
        another `info` label gives another service's independent key (the alerts service)."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info)
        return cls(hkdf.derive(secret))

    def _tag(self, key: bytes, op: int, payload: bytes) -> bytes:
        mac = hmac.new(self._key, DOMAIN, hashlib.sha256)
        mac.update(struct.pack(">I", len(key)))
        mac.update(key)
        mac.update(bytes([op]))
        mac.update(struct.pack(">Q", len(payload)))
        mac.update(payload)
        return mac.digest()

    def seal(self, key: bytes, payload: bytes) -> bytes:
        """The value to write under `key` for `payload`."""
        return MAGIC + bytes([OP_PUT]) + payload + self._tag(key, OP_PUT, payload)

    def seal_delete(self, key: bytes) -> bytes:
        """The value that deletes `key` (authenticated, unlike a Kafka tombstone)."""
        return MAGIC + bytes([OP_DELETE]) + self._tag(key, OP_DELETE, b"")

    def open(self, key: bytes, value: bytes | None) -> Opened:
        """The authenticated payload of `value` written under `key`, or `ChangelogAuthError`."""
        if value is None:
            raise ChangelogAuthError(Ignored.TOMBSTONE)
        if len(value) < len(MAGIC) + 1 + TAG_SIZE or not value.startswith(MAGIC):
            raise ChangelogAuthError(Ignored.UNAUTHENTICATED)
        op = value[len(MAGIC)]
        payload = value[len(MAGIC) + 1 : -TAG_SIZE]
        if op not in (OP_PUT, OP_DELETE) or (op == OP_DELETE and payload):
            raise ChangelogAuthError(Ignored.BAD_MAC)
        if not hmac.compare_digest(value[-TAG_SIZE:], self._tag(key, op, payload)):
            raise ChangelogAuthError(Ignored.BAD_MAC)
        return Opened(payload if op == OP_PUT else None)
