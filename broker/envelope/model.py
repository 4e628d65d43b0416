"""The envelope types: issued envelope, forwarded envelope and verified event.

Their text forms show ids, types and field names, never a value: disclosure values, salts,
subject references and derived values are left out of every repr.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple

from broker.envelope import canonical, wire
from broker.envelope.errors import VerificationError
from broker.personal import PersonalDict
from broker.schemas import (
    HEADER_SIZE,
    SINGLE_OBJECT_MARKER,
    EncodingError,
    NonCanonicalError,
    SchemaError,
    SchemaRegistry,
    UnknownSchemaError,
    WriterSchema,
)
from broker.schemas.fields import format_time

ENVELOPE_SCHEMA = "uk.safeguarding.envelope.Envelope"
FORWARDED_SCHEMA = canonical.FORWARDED_SCHEMA
ENVELOPE_SCHEMA_V2 = "uk.safeguarding.envelope.v2.Envelope"
FORWARDED_SCHEMA_V2 = "uk.safeguarding.envelope.v2.ForwardedEnvelope"
ENVELOPE_SCHEMAS = {1: ENVELOPE_SCHEMA, 2: ENVELOPE_SCHEMA_V2}
FORWARDED_SCHEMAS = {1: FORWARDED_SCHEMA, 2: FORWARDED_SCHEMA_V2}


@dataclass(frozen=True, slots=True)
class Header:
    """What the event is, who issued it with which key, and when; signed by the issuer.

    Wire format v1 carries the issuer's `subject` reference itself, so every recipient sees it;
    v2 carries only `subject_digest`, the digest of a salted subject disclosure that travels
    beside the header and that the router forwards only to recipients granted it.
    """

    event_id: str
    event_type: str
    schema_fingerprint: bytes
    issuer: str
    key_id: str
    issued_at: datetime
    occurred_at: datetime
    subject: str | None = field(default=None, repr=False)
    subject_digest: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.subject is None) == (self.subject_digest is None):
            raise VerificationError(
                "bad_encoding", f"event {self.event_id}: header needs a subject or its digest"
            )

    @property
    def version(self) -> int:
        """The wire-format version: 1 (subject in the header) or 2 (subject disclosure)."""
        return 1 if self.subject_digest is None else 2

    def to_bytes(self) -> bytes:
        """The canonical header bytes (see `canonical.header_bytes`)."""
        return canonical.header_bytes(
            event_id=self.event_id,
            event_type=self.event_type,
            schema_fingerprint=self.schema_fingerprint,
            issuer=self.issuer,
            key_id=self.key_id,
            issued_at=self.issued_at,
            occurred_at=self.occurred_at,
            subject=self.subject,
            subject_digest=self.subject_digest,
        )

    def to_record(self) -> dict[str, Any]:
        """The Avro record form (of this header's version)."""
        record: dict[str, Any] = {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "schema_fingerprint": self.schema_fingerprint,
            "issuer": self.issuer,
            "key_id": self.key_id,
            "issued_at": self.issued_at,
            "occurred_at": self.occurred_at,
        }
        if self.subject_digest is None:
            record["subject"] = self.subject
        else:
            record["subject_digest"] = self.subject_digest
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Header:
        """From the Avro record form."""
        return cls(**record)


class Disclosure(NamedTuple):
    """One payload field: 128-bit salt, field name, the field's Avro-encoded value.

    A named tuple rather than a dataclass: an envelope decodes into one per field, and a tuple
    is built at a fraction of the cost. Its text form shows only the name.
    """

    salt: bytes
    name: str
    value: bytes

    def __repr__(self) -> str:
        return f"Disclosure(name={self.name!r})"

    def __str__(self) -> str:
        return repr(self)

    def digest(self) -> bytes:
        """SHA-256 digest committed to by the issuer's signature."""
        return canonical.disclosure_digest(self.salt, self.name, self.value)


class SubjectDisclosure(NamedTuple):
    """v2: the issuer's subject reference with its 128-bit salt; text form shows neither."""

    salt: bytes
    value: str

    def __repr__(self) -> str:
        return "SubjectDisclosure()"

    def __str__(self) -> str:
        return repr(self)

    def digest(self) -> bytes:
        """The digest the signed v2 header commits to (`Header.subject_digest`)."""
        return canonical.subject_digest(self.salt, self.value)

    def to_record(self) -> dict[str, Any]:
        """The Avro record form."""
        return {"salt": self.salt, "value": self.value}


def _subject_disclosure(record: Mapping[str, Any] | None) -> SubjectDisclosure | None:
    return None if record is None else SubjectDisclosure(record["salt"], record["value"])


_DISCLOSURE_FIELDS = itemgetter("salt", "name", "value")


def _disclosures(records: list[dict[str, Any]]) -> tuple[Disclosure, ...]:
    make = Disclosure._make
    return tuple([make(_DISCLOSURE_FIELDS(r)) for r in records])


def _decode(
    data: bytes, schemas: Mapping[int, str], registry: SchemaRegistry | None
) -> dict[str, Any]:
    """Decode a message of one of `schemas` (wire-format version -> schema name)."""
    registry = registry or SchemaRegistry.default()
    try:
        name, record = registry.decode(data)
    except UnknownSchemaError:
        raise VerificationError("unknown_schema", "message schema fingerprint unknown") from None
    except NonCanonicalError as exc:
        raise VerificationError("non_canonical", str(exc)) from None
    except EncodingError as exc:
        raise VerificationError("bad_encoding", str(exc)) from None
    if name not in schemas.values():
        expected = " or ".join(schemas.values())
        raise VerificationError("bad_encoding", f"expected a {expected} message, got {name}")
    return record


def writer_for(header: Header, registry: SchemaRegistry) -> WriterSchema:
    """The issuer's schema version named by the header: its fields were the ones signed."""
    try:
        writer = registry.writer(header.schema_fingerprint)
    except UnknownSchemaError:
        raise VerificationError(
            "unknown_schema",
            f"event {header.event_id}: payload schema fingerprint is not registered",
        ) from None
    if header.event_type != writer.event_type:
        raise VerificationError(
            "schema_violation", f"event {header.event_id}: header type does not match its schema"
        )
    return writer


def decode_disclosed(
    header: Header, writer: WriterSchema, disclosures: tuple[Disclosure, ...]
) -> PersonalDict:
    """The disclosures' values, resolved to the current schema; text form redacted."""
    try:
        return PersonalDict(writer.decode_values((d.name, d.value) for d in disclosures))
    except NonCanonicalError as exc:
        raise VerificationError("non_canonical", f"event {header.event_id}: {exc}") from None
    except SchemaError as exc:
        raise VerificationError("schema_violation", f"event {header.event_id}: {exc}") from None


def _field_values(
    header: Header, disclosures: tuple[Disclosure, ...], registry: SchemaRegistry | None
) -> PersonalDict:
    writer = writer_for(header, registry or SchemaRegistry.default())
    return decode_disclosed(header, writer, disclosures)


@dataclass(frozen=True, slots=True)
class Envelope:
    """An issued event: header, one disclosure per payload field, sorted digests, signature;
    in v2 also the subject disclosure."""

    header: Header
    digests: tuple[bytes, ...] = field(repr=False)
    disclosures: tuple[Disclosure, ...]
    signature: bytes = field(repr=False)
    subject_disclosure: SubjectDisclosure | None = field(default=None, repr=False)
    # The disclosures' digests, computed once: verification and every forward need them.
    _digest_cache: list[bytes] = field(
        default_factory=list, init=False, repr=False, compare=False
    )
    # The canonical bytes this envelope was decoded from, and where its parts lie in them
    # (`issued_layout`): forwards are built from them (`broker.envelope.wire`).
    _wire: list[bytes] = field(default_factory=list, init=False, repr=False, compare=False)
    _layout: list[wire.IssuedLayout | None] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    @property
    def version(self) -> int:
        """The wire-format version (the header's)."""
        return self.header.version

    def disclosure_digests(self) -> list[bytes]:
        """The digest of each disclosure, in order (SHA-256 computed once per envelope)."""
        if len(self._digest_cache) != len(self.disclosures):
            self._digest_cache[:] = canonical.disclosure_digests(self.disclosures)
        return self._digest_cache

    def issued_layout(self) -> wire.IssuedLayout | None:
        """Where this envelope's parts lie in the canonical v2 bytes it was decoded from;
        None for an envelope not decoded from bytes (or v1)."""
        if not self._layout:
            found = None
            if self._wire and self.subject_disclosure is not None:  # kept for v2 only
                found = wire.layout(self._wire[0], self.disclosures, self.subject_disclosure)
            self._layout.append(found)
        return self._layout[0]

    @property
    def subject(self) -> str | None:
        """The issuer's subject reference as carried (checked only by verification)."""
        if self.header.subject is not None:
            return self.header.subject
        return None if self.subject_disclosure is None else self.subject_disclosure.value

    def field_values(self, registry: SchemaRegistry | None = None) -> PersonalDict:
        """Decoded values of all disclosures (for agreement evaluation); text form redacted."""
        return _field_values(self.header, self.disclosures, registry)

    def to_record(self) -> dict[str, Any]:
        """The Avro record form (of this envelope's version)."""
        record: dict[str, Any] = {
            "header": self.header.to_record(),
            "digests": list(self.digests),
            "disclosures": [
                {"salt": d.salt, "name": d.name, "value": d.value} for d in self.disclosures
            ],
            "signature": self.signature,
        }
        if self.version == 2:
            record["subject"] = (
                None if self.subject_disclosure is None else self.subject_disclosure.to_record()
            )
        return record

    def to_bytes(self, registry: SchemaRegistry | None = None) -> bytes:
        """Avro single-object encoding."""
        registry = registry or SchemaRegistry.default()
        return registry.encode(ENVELOPE_SCHEMAS[self.version], self.to_record())

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Envelope:
        """From the Avro record form (v1 or v2)."""
        return cls(
            header=Header.from_record(record["header"]),
            digests=tuple(record["digests"]),
            disclosures=_disclosures(record["disclosures"]),
            signature=record["signature"],
            subject_disclosure=_subject_disclosure(record.get("subject")),
        )

    @classmethod
    def from_bytes(cls, data: bytes, registry: SchemaRegistry | None = None) -> Envelope:
        """Decode; raises `VerificationError` (bad_encoding, unknown_schema)."""
        registry = registry or SchemaRegistry.default()
        envelope = cls.from_record(_decode(data, ENVELOPE_SCHEMAS, registry))
        fingerprint = data[len(SINGLE_OBJECT_MARKER) : HEADER_SIZE]
        if fingerprint == registry.fingerprint(ENVELOPE_SCHEMA_V2):
            envelope._wire.append(bytes(data))  # proved canonical by the decode
        return envelope


@dataclass(frozen=True, slots=True)
class Derived:
    """The router's section: derived values and agreements, bound to one event and recipient."""

    values: PersonalDict = field(repr=False)
    agreements: tuple[str, ...]
    recipient: str
    router: str
    router_key_id: str
    forwarded_at: datetime
    signature: bytes = field(repr=False)

    def to_record(self) -> dict[str, Any]:
        """The Avro record form."""
        return {
            "values": [{"name": k, "value": v} for k, v in self.values.items()],
            "agreements": list(self.agreements),
            "recipient": self.recipient,
            "router": self.router,
            "router_key_id": self.router_key_id,
            "forwarded_at": self.forwarded_at,
            "signature": self.signature,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Derived:
        """From the Avro record form."""
        values = PersonalDict()
        for item in record["values"]:
            if item["name"] in values:
                raise VerificationError("bad_encoding", f"derived value '{item['name']}' repeated")
            value = item["value"]
            if isinstance(value, float) and not math.isfinite(value):
                # NaN has many encodings and equals nothing; the router never derives one.
                raise VerificationError(
                    "non_canonical", f"derived value '{item['name']}' is not a finite number"
                )
            values[item["name"]] = value
        return cls(
            values=values,
            agreements=tuple(record["agreements"]),
            recipient=record["recipient"],
            router=record["router"],
            router_key_id=record["router_key_id"],
            forwarded_at=record["forwarded_at"],
            signature=record["signature"],
        )


@dataclass(frozen=True, slots=True)
class ForwardedEnvelope:
    """What a recipient receives: permitted disclosures, all digests, both signatures; in v2
    the subject disclosure only if the recipient is granted the subject."""

    header: Header
    digests: tuple[bytes, ...] = field(repr=False)
    disclosures: tuple[Disclosure, ...]
    signature: bytes = field(repr=False)
    derived: Derived
    subject_disclosure: SubjectDisclosure | None = field(default=None, repr=False)
    # (issued envelope's layout, indices of the disclosures kept), set by `disclose` when the
    # issued envelope came from bytes: `to_bytes` then joins their slices (`wire`).
    _source: list[tuple[wire.IssuedLayout, tuple[int, ...]]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    @property
    def version(self) -> int:
        """The wire-format version (the header's)."""
        return self.header.version

    def router_signing_input(self, derived: Derived | None = None) -> bytes:
        """The bytes a router signs for this forward with `derived` (default: its own section)."""
        derived = derived or self.derived
        subject = self.subject_disclosure
        return canonical.router_signing_input(
            event_id=self.header.event_id,
            issuer=self.header.issuer,
            issuer_signature=self.signature,
            disclosed_digests=canonical.disclosure_digests(self.disclosures),
            derived=derived.values,
            agreements=derived.agreements,
            recipient=derived.recipient,
            router=derived.router,
            router_key_id=derived.router_key_id,
            forwarded_at=derived.forwarded_at,
            version=self.header.version,
            subject_digest=None if subject is None else self.header.subject_digest,
        )

    def field_values(self, registry: SchemaRegistry | None = None) -> PersonalDict:
        """Decoded values of the disclosures carried; text form redacted."""
        return _field_values(self.header, self.disclosures, registry)

    def to_record(self) -> dict[str, Any]:
        """The Avro record form (of this envelope's version)."""
        record = Envelope(
            self.header, self.digests, self.disclosures, self.signature, self.subject_disclosure
        ).to_record()
        record["derived"] = self.derived.to_record()
        return record

    def to_bytes(self, registry: SchemaRegistry | None = None) -> bytes:
        """Avro single-object encoding."""
        registry = registry or SchemaRegistry.default()
        if self._source and self.version == 2:
            issued, kept = self._source[0]
            return wire.forwarded_bytes(
                issued,
                kept,
                self.subject_disclosure is not None,
                self.derived.to_record(),
                registry,
                FORWARDED_SCHEMA_V2,
            )
        return registry.encode(FORWARDED_SCHEMAS[self.version], self.to_record())

    @classmethod
    def from_bytes(cls, data: bytes, registry: SchemaRegistry | None = None) -> ForwardedEnvelope:
        """Decode; raises `VerificationError` (bad_encoding, unknown_schema)."""
        record = _decode(data, FORWARDED_SCHEMAS, registry)
        issued = Envelope.from_record(record)
        return cls(
            issued.header,
            issued.digests,
            issued.disclosures,
            issued.signature,
            Derived.from_record(record["derived"]),
            issued.subject_disclosure,
        )


@dataclass(frozen=True, slots=True)
class VerifiedEvent:
    """An event whose signatures and disclosures all checked out."""

    header: Header
    fields: PersonalDict = field(repr=False)
    derived: PersonalDict = field(repr=False)
    agreements: tuple[str, ...] = ()
    recipient: str | None = None
    router: str | None = None
    # v2: the subject from its verified disclosure (None: not forwarded to this recipient).
    disclosed_subject: str | None = field(default=None, repr=False)

    @property
    def subject(self) -> str | None:
        """The issuer's subject reference, if this event carries it (always in v1; in v2 only
        at the router and for recipients granted the subject)."""
        return self.header.subject if self.header.subject is not None else self.disclosed_subject

    @property
    def issuer(self) -> str:
        """The issuing agency id."""
        return self.header.issuer

    @property
    def event_id(self) -> str:
        """The event id."""
        return self.header.event_id

    @property
    def event_type(self) -> str:
        """The event type."""
        return self.header.event_type

    def to_json(self, registry: SchemaRegistry | None = None) -> dict[str, Any]:
        """The EVENTS.md feed form: only disclosed fields, derived values, agreements; `subject`
        is null when the subject was not disclosed to this recipient.

        An event issued under an earlier schema version also shows, as null, each current field
        that version did not have (the issuer could not give it; nothing was withheld).
        """
        registry = registry or SchemaRegistry.default()
        event_type = self.header.event_type
        fields = {
            name: registry.value_to_json(event_type, name, value)
            for name, value in self.fields.items()
        }
        fields.update(dict.fromkeys(registry.writer(self.header.schema_fingerprint).missing))
        return {
            "issuer": self.header.issuer,
            "event_id": self.header.event_id,
            "event_type": event_type,
            "subject": self.subject,
            "occurred_at": format_time(self.header.occurred_at),
            "fields": fields,
            "derived": dict(self.derived),
            "agreements": list(self.agreements),
            "verified": True,
        }
