"""Signed registry records: the bytes of `registry.keys` and `registry.agreements`
(docs/wire-format.md, "The key registry" and "The agreement registry").

A record is the Avro single-object encoding of `uk.safeguarding.registry.KeyRecord`
(`schemas/avro/registry.key.avsc`): one public key with its roles and terms, and the Ed25519
signature of the registry authority's `registry-admin` key over

    SIGNING_CONTEXT || single-object encoding of the record without its last field (signature)

Its Kafka key is `<agency>/<key_id>` (UTF-8), so compaction keeps the latest terms of each key.
Bytes have one meaning: a record is accepted only if re-encoding its decoded value reproduces it
exactly (roles sorted and distinct, canonical varints), and its signature is 64 bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from broker.audit._codec import HEADER_LEN, SingleObjectCodec, load_schema
from broker.audit.exceptions import RecordFormatError
from broker.envelope.errors import KeyFileError
from broker.envelope.keys import (
    PublicKeyInfo,
    SigningKey,
    check_agency_id,
    check_key_id,
    check_public_key,
    check_roles,
)
from broker.registry.exceptions import RegistryRecordError

SIGNING_CONTEXT = b"uk.safeguarding.registry.key.v1\x00"
SIGNATURE_LEN = 64

KEY_RECORD_SCHEMA: dict[str, Any] = load_schema("registry.key.avsc")
_CODEC = SingleObjectCodec(KEY_RECORD_SCHEMA, "registry key record")
_BODY_CODEC = SingleObjectCodec(
    {**KEY_RECORD_SCHEMA, "name": "KeyRecordBody", "fields": KEY_RECORD_SCHEMA["fields"][:-1]},
    "registry key record body",
)

# Why a record was not applied (the live view counts each; docs/wire-format.md).
MALFORMED = "malformed"  # not a KeyRecord, bad content, or a Kafka key that does not match
NON_CANONICAL = "non_canonical"
UNKNOWN_SIGNER = "unknown_signer"  # not signed by the configured registry authority's key
WRONG_ROLE = "wrong_role"  # signed by a key without the registry-admin role
SIGNER_NOT_VALID = "signer_not_valid"  # the admin key was revoked or not valid then
BAD_SIGNATURE = "bad_signature"
ADMIN_KEY = "admin_key"  # a record may not grant registry-admin: those keys are pinned
KEY_CONFLICT = "key_conflict"  # an existing (agency, key_id) with another public key


def _micros(value: datetime) -> int:
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _time(value: Any) -> datetime:
    # fastavro returns timestamp-micros as an aware datetime already; accept an int too.
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(value))


def kafka_key(agency_id: str, key_id: str) -> bytes:
    """The Kafka key of a key's records: compaction keeps its latest terms."""
    return f"{agency_id}/{key_id}".encode()


@dataclass(frozen=True)
class KeyRecord:
    """One signed record of `registry.keys`."""

    key: PublicKeyInfo
    published_at: datetime
    signer: str
    signer_key_id: str
    signature: bytes = b""

    def _avro(self, signature: bytes) -> dict[str, Any]:
        k = self.key
        return {
            "agency": k.agency_id,
            "key_id": k.key_id,
            "roles": sorted(k.roles),
            "public_key": k.public_key.public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            ),
            "valid_from": _micros(k.valid_from),
            "valid_until": None if k.valid_until is None else _micros(k.valid_until),
            "revoked_at": None if k.revoked_at is None else _micros(k.revoked_at),
            "published_at": _micros(self.published_at),
            "signer": self.signer,
            "signer_key_id": self.signer_key_id,
            "signature": signature,
        }

    def signed_bytes(self) -> bytes:
        """Exactly what the registry authority's signature covers."""
        body = _BODY_CODEC.encode(self._avro(b""))[HEADER_LEN:]
        return SIGNING_CONTEXT + _CODEC.header + body

    def to_bytes(self) -> bytes:
        return _CODEC.encode(self._avro(self.signature))

    @property
    def kafka_key(self) -> bytes:
        return kafka_key(self.key.agency_id, self.key.key_id)

    @classmethod
    def sign(
        cls, key: PublicKeyInfo, admin: SigningKey, *, published_at: datetime | None = None
    ) -> KeyRecord:
        """A record of `key`'s terms signed by the registry authority's `admin` key."""
        unsigned = cls(
            key=key,
            published_at=published_at or datetime.now(UTC),
            signer=admin.agency_id,
            signer_key_id=admin.key_id,
        )
        return cls(
            key=key,
            published_at=unsigned.published_at,
            signer=admin.agency_id,
            signer_key_id=admin.key_id,
            signature=admin.sign(unsigned.signed_bytes()),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyRecord:
        """Decode a record; refuse anything that is not the canonical bytes of a valid one.

        The signature is not checked here (`verify_record` does)."""
        try:
            d = _CODEC.decode(data)
        except RecordFormatError as exc:
            raise _error(MALFORMED, str(exc)) from None
        try:
            source = f"registry record {d['agency']}/{d['key_id']}"
            key = PublicKeyInfo(
                agency_id=check_agency_id(d["agency"]),
                key_id=check_key_id(d["key_id"]),
                public_key=Ed25519PublicKey.from_public_bytes(
                    check_public_key(d["public_key"], source)
                ),
                valid_from=_time(d["valid_from"]),
                valid_until=None if d["valid_until"] is None else _time(d["valid_until"]),
                revoked_at=None if d["revoked_at"] is None else _time(d["revoked_at"]),
                roles=check_roles(d["roles"], source),
            )
            record = cls(
                key=key,
                published_at=_time(d["published_at"]),
                signer=d["signer"],
                signer_key_id=d["signer_key_id"],
                signature=d["signature"],
            )
        except (KeyFileError, KeyError, TypeError, ValueError, OverflowError) as exc:
            raise _error(MALFORMED, f"registry key record has invalid content: {exc}") from None
        if len(record.signature) != SIGNATURE_LEN:
            raise _error(MALFORMED, "registry key record: the signature is not 64 bytes")
        if record.to_bytes() != data:
            raise _error(NON_CANONICAL, "registry key record is not in canonical form")
        return record


def _error(reason: str, message: str) -> RegistryRecordError:
    return RegistryRecordError(reason, message)


# -- registry.agreements -----------------------------------------------------------------------

AGREEMENT_SIGNING_CONTEXT = b"uk.safeguarding.registry.agreement.v1\x00"
AGREEMENT_RECORD_SCHEMA: dict[str, Any] = load_schema("registry.agreement.avsc")
_AGREEMENT_CODEC = SingleObjectCodec(AGREEMENT_RECORD_SCHEMA, "registry agreement record")
_AGREEMENT_BODY_CODEC = SingleObjectCodec(
    {
        **AGREEMENT_RECORD_SCHEMA,
        "name": "AgreementRecordBody",
        "fields": AGREEMENT_RECORD_SCHEMA["fields"][:-1],
    },
    "registry agreement record body",
)

INVALID_AGREEMENT = "invalid_agreement"  # the document is not a valid agreement
AGREEMENT_CONFLICT = "agreement_conflict"  # an existing id@version with another content


def agreement_kafka_key(agreement_id: str, version: int) -> bytes:
    """The Kafka key of an agreement version's records: `<id>@<version>`."""
    return f"{agreement_id}@{version}".encode()


@dataclass(frozen=True)
class AgreementRecord:
    """One signed record of `registry.agreements`: an agreement version's document (its YAML
    text as published, validated before signing), and its withdrawal if `withdrawn_at` is set."""

    agreement_id: str
    version: int
    document: str
    published_at: datetime
    signer: str
    signer_key_id: str
    withdrawn_at: datetime | None = None
    signature: bytes = b""

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.document.encode("utf-8")).digest()

    @property
    def key(self) -> str:
        """`id@version`, the name grants and the audit log use."""
        return f"{self.agreement_id}@{self.version}"

    @property
    def kafka_key(self) -> bytes:
        return agreement_kafka_key(self.agreement_id, self.version)

    def _avro(self, signature: bytes) -> dict[str, Any]:
        return {
            "agreement_id": self.agreement_id,
            "version": self.version,
            "document": self.document,
            "digest": self.digest,
            "withdrawn_at": None if self.withdrawn_at is None else _micros(self.withdrawn_at),
            "published_at": _micros(self.published_at),
            "signer": self.signer,
            "signer_key_id": self.signer_key_id,
            "signature": signature,
        }

    def signed_bytes(self) -> bytes:
        """Exactly what the registry authority's signature covers."""
        body = _AGREEMENT_BODY_CODEC.encode(self._avro(b""))[HEADER_LEN:]
        return AGREEMENT_SIGNING_CONTEXT + _AGREEMENT_CODEC.header + body

    def to_bytes(self) -> bytes:
        return _AGREEMENT_CODEC.encode(self._avro(self.signature))

    @classmethod
    def sign(
        cls,
        agreement_id: str,
        version: int,
        document: str,
        admin: SigningKey,
        *,
        withdrawn_at: datetime | None = None,
        published_at: datetime | None = None,
    ) -> AgreementRecord:
        """A record of one agreement version signed by the registry authority's `admin` key
        (the caller has validated `document`: `broker agreements publish` does)."""
        unsigned = cls(
            agreement_id=agreement_id,
            version=version,
            document=document,
            published_at=published_at or datetime.now(UTC),
            signer=admin.agency_id,
            signer_key_id=admin.key_id,
            withdrawn_at=withdrawn_at,
        )
        return dataclasses.replace(unsigned, signature=admin.sign(unsigned.signed_bytes()))

    @classmethod
    def from_bytes(cls, data: bytes) -> AgreementRecord:
        """Decode a record; refuse anything that is not the canonical bytes of a well-formed
        one. Neither the signature nor the document's meaning is checked here."""
        try:
            d = _AGREEMENT_CODEC.decode(data)
        except RecordFormatError as exc:
            raise _error(MALFORMED, str(exc)) from None
        try:
            record = cls(
                agreement_id=d["agreement_id"],
                version=d["version"],
                document=d["document"],
                published_at=_time(d["published_at"]),
                signer=d["signer"],
                signer_key_id=d["signer_key_id"],
                withdrawn_at=None if d["withdrawn_at"] is None else _time(d["withdrawn_at"]),
                signature=d["signature"],
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise _error(
                MALFORMED, f"registry agreement record has invalid content ({type(exc).__name__})"
            ) from None
        if d["digest"] != record.digest:
            raise _error(MALFORMED, "registry agreement record: the digest is not the document's")
        if record.version < 1:
            raise _error(MALFORMED, "registry agreement record: the version is below 1")
        if len(record.signature) != SIGNATURE_LEN:
            raise _error(MALFORMED, "registry agreement record: the signature is not 64 bytes")
        if record.to_bytes() != data:
            raise _error(NON_CANONICAL, "registry agreement record is not in canonical form")
        return record
