"""The audit decision record: one per routing decision, holding no personal values.

A record says what the router did with one ingress message: which event (ids, issuer, type, the
issuer's opaque subject reference), where it came from (topic, partition, offset), the outcome, the
disclosure digests, and per recipient the field *names* forwarded, withheld and derived with
the agreements (``id@version``) that allowed them. Field values never appear. ``subject`` is the
issuer's opaque reference for the child (needed for disclosure reports), never a name.

Records are chained: ``prev_hash`` is the ``record_hash`` of the previous record of the same chain
(see ``broker.audit.chain``), and ``record_hash = SHA-256(to_bytes())``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any, NamedTuple

from broker.audit._codec import HEADER_LEN, SingleObjectCodec, load_schema, read_long
from broker.audit.exceptions import RecordFormatError
from broker.schemas.registry import default_released_dir

HASH_LEN = 32
ZERO_HASH = bytes(HASH_LEN)
"""``prev_hash`` of the first record of every chain."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_HEX = re.compile(r"[0-9a-f]*")
CHAIN_ID = re.compile(r"[A-Za-z0-9._-]{1,249}/[0-9]{1,10}")
"""Form of a chain id: a Kafka topic name, a slash, a partition number."""

DECISION_SCHEMA: dict[str, Any] = load_schema("audit.decision.avsc")
"""``uk.safeguarding.audit.Decision``. Verifiers read its first three fields without a full
decode (`read_header`): they stay first. Version 2 adds the registry position
(`registry_keys`, `registry_agreements`) at the end."""

DECISION_SCHEMA_V1: dict[str, Any] = json.loads(
    (default_released_dir() / "v1" / "audit" / "audit.decision.avsc").read_text("utf-8")
)
"""Version 1, without the registry position: records written before it stay verifiable (each
record is hashed and decoded under the schema its own header names)."""

_CODEC = SingleObjectCodec(DECISION_SCHEMA, "audit decision record")
_CODEC_V1 = SingleObjectCodec(DECISION_SCHEMA_V1, "audit decision record")
DECISION_HEADER = _CODEC.header
"""The 10-byte single-object header every decision record the router writes starts with."""
DECISION_HEADER_V1 = _CODEC_V1.header
DECISION_HEADERS = (DECISION_HEADER, DECISION_HEADER_V1)
"""Every header a decision record may start with (``bytes.startswith`` takes the tuple)."""
_CODECS = {2: _CODEC, 1: _CODEC_V1}


def schema_version(data: bytes) -> int:
    """2 or 1 from a record's header; `RecordFormatError` for anything else."""
    header = data[:HEADER_LEN]
    if header == DECISION_HEADER:
        return 2
    if header == DECISION_HEADER_V1:
        return 1
    raise RecordFormatError(
        "not an audit decision record: missing header or wrong schema fingerprint"
    )


class Outcome(StrEnum):
    """What the router did with one ingress message."""

    FORWARDED = "forwarded"
    DENIED = "denied"
    QUARANTINED = "quarantined"
    DUPLICATE = "duplicate"


def _sorted_names(values: Iterable[str], what: str) -> tuple[str, ...]:
    out = tuple(sorted(values))
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate entries in {what}")
    return out


@dataclass(frozen=True)
class RecipientDecision:
    """What one recipient got: field names only, and the agreements (``id@version``) behind it."""

    recipient: str
    fields_forwarded: tuple[str, ...] = ()
    fields_withheld: tuple[str, ...] = ()
    derived: tuple[str, ...] = ()
    agreements: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Sorted lists make the encoding canonical whatever order the router produced them in.
        for name in ("fields_forwarded", "fields_withheld", "derived", "agreements"):
            object.__setattr__(self, name, _sorted_names(getattr(self, name), name))

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "recipient": self.recipient,
            "fields_forwarded": list(self.fields_forwarded),
            "fields_withheld": list(self.fields_withheld),
            "derived": list(self.derived),
            "agreements": list(self.agreements),
        }


@dataclass(frozen=True, order=True)
class ConditionError:
    """An agreement condition that could not be evaluated: which agreement, which error code."""

    agreement: str
    code: str


def _utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return value.astimezone(UTC)


def to_micros(value: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact, no float rounding)."""
    return (value - _EPOCH) // _MICRO


def format_time(value: datetime) -> str:
    """The one textual form of a time in audit documents: ISO 8601 UTC with microseconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """Inverse of `format_time` (only that exact form is accepted)."""
    if not isinstance(text, str):
        raise ValueError("time must be a string")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class DecisionRecord:
    """One routing decision, in the form hashed into the audit chain and Merkle tree."""

    chain: str
    seq: int
    prev_hash: bytes
    ingress_topic: str
    ingress_partition: int
    ingress_offset: int
    decided_at: datetime
    outcome: Outcome
    event_id: str | None = None
    issuer: str | None = None
    event_type: str | None = None
    subject: str | None = None
    occurred_at: datetime | None = None
    reason: str | None = None
    digests: tuple[str, ...] = ()
    recipients: tuple[RecipientDecision, ...] = ()
    condition_errors: tuple[ConditionError, ...] = ()
    # The registry position the decision was made under (offsets after the last record read
    # of registry.keys and registry.agreements); None without a registry. Version 1 records
    # have neither (`schema_version`).
    registry_keys: int | None = None
    registry_agreements: int | None = None
    schema_version: int = 2

    def __post_init__(self) -> None:
        if self.schema_version not in _CODECS:
            raise ValueError("schema_version must be 1 or 2")
        if self.schema_version == 1 and (
            self.registry_keys is not None or self.registry_agreements is not None
        ):
            raise ValueError("a version 1 record has no registry position")
        for position in (self.registry_keys, self.registry_agreements):
            if position is not None and position < 0:
                raise ValueError("a registry position is >= 0")
        if not isinstance(self.prev_hash, bytes) or len(self.prev_hash) != HASH_LEN:
            raise ValueError("prev_hash must be 32 bytes")
        if self.seq < 0:
            raise ValueError("seq must be >= 0")
        if not CHAIN_ID.fullmatch(self.chain):
            raise ValueError("chain id must be '<ingress topic>/<partition>'")
        object.__setattr__(self, "outcome", Outcome(self.outcome))
        if self.outcome is Outcome.QUARANTINED and not self.reason:
            raise ValueError("a quarantined decision needs a reason code")
        object.__setattr__(self, "decided_at", _utc(self.decided_at, "decided_at"))
        if self.occurred_at is not None:
            object.__setattr__(self, "occurred_at", _utc(self.occurred_at, "occurred_at"))
        digests = _sorted_names((d.lower() for d in self.digests), "digests")
        if not set(map(len, digests)) <= {64} or not _HEX.fullmatch("".join(digests)):
            raise ValueError("digests must be SHA-256 hex strings")
        object.__setattr__(self, "digests", digests)
        recipients = tuple(sorted(self.recipients, key=lambda r: r.recipient))
        _sorted_names((r.recipient for r in recipients), "recipients")
        object.__setattr__(self, "recipients", recipients)
        object.__setattr__(self, "condition_errors", tuple(sorted(self.condition_errors)))

    # --- canonical bytes -------------------------------------------------------------------

    def _to_avro(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "seq": self.seq,
            "prev_hash": self.prev_hash,
            "event_id": self.event_id,
            "issuer": self.issuer,
            "event_type": self.event_type,
            "subject": self.subject,
            "ingress_topic": self.ingress_topic,
            "ingress_partition": self.ingress_partition,
            "ingress_offset": self.ingress_offset,
            "occurred_at": None if self.occurred_at is None else to_micros(self.occurred_at),
            "decided_at": to_micros(self.decided_at),
            "outcome": self.outcome.value,
            "reason": self.reason,
            "digests": [bytes.fromhex(d) for d in self.digests],
            "recipients": [r.to_json_dict() for r in self.recipients],
            "condition_errors": [
                {"agreement": c.agreement, "code": c.code} for c in self.condition_errors
            ],
            "registry_keys": self.registry_keys,
            "registry_agreements": self.registry_agreements,
        }

    @cached_property
    def _encoded(self) -> bytes:
        return _CODECS[self.schema_version].encode(self._to_avro())

    def to_bytes(self) -> bytes:
        """The canonical bytes: the Kafka value of the record and the input of its hash."""
        return self._encoded

    @cached_property
    def record_hash(self) -> bytes:
        """SHA-256 of the canonical bytes; the next record's ``prev_hash``."""
        return hashlib.sha256(self._encoded).digest()

    @classmethod
    def from_bytes(cls, data: bytes) -> DecisionRecord:
        """Decode a record, refusing any encoding that is not the canonical one.

        Refusing non-canonical bytes means that the hash of a decoded record is always the hash of
        the bytes it came from.
        """
        version = schema_version(data)
        codec = _CODECS[version]
        d = codec.decode(data)
        try:
            record = cls(
                chain=d["chain"],
                seq=d["seq"],
                prev_hash=d["prev_hash"],
                event_id=d["event_id"],
                issuer=d["issuer"],
                event_type=d["event_type"],
                subject=d["subject"],
                ingress_topic=d["ingress_topic"],
                ingress_partition=d["ingress_partition"],
                ingress_offset=d["ingress_offset"],
                occurred_at=d["occurred_at"],
                decided_at=d["decided_at"],
                outcome=Outcome(d["outcome"]),
                reason=d["reason"],
                digests=tuple(b.hex() for b in d["digests"]),
                recipients=tuple(RecipientDecision(**r) for r in d["recipients"]),
                condition_errors=tuple(ConditionError(**c) for c in d["condition_errors"]),
                registry_keys=d.get("registry_keys"),
                registry_agreements=d.get("registry_agreements"),
                schema_version=version,
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise RecordFormatError(
                f"audit decision record has invalid content ({type(exc).__name__})"
            ) from None
        if codec.encode(record._to_avro()) != data:
            raise RecordFormatError("audit decision record is not in canonical form")
        record.__dict__["_encoded"] = bytes(data)  # pre-fill the cached canonical bytes
        return record

    # --- readable form ---------------------------------------------------------------------

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-ready view (hashes in hex, times ISO 8601 UTC) for reports and proof files."""
        return {
            "chain": self.chain,
            "seq": self.seq,
            "prev_hash": self.prev_hash.hex(),
            "event_id": self.event_id,
            "issuer": self.issuer,
            "event_type": self.event_type,
            "subject": self.subject,
            "ingress_topic": self.ingress_topic,
            "ingress_partition": self.ingress_partition,
            "ingress_offset": self.ingress_offset,
            "occurred_at": None if self.occurred_at is None else format_time(self.occurred_at),
            "decided_at": format_time(self.decided_at),
            "outcome": self.outcome.value,
            "reason": self.reason,
            "digests": list(self.digests),
            "recipients": [r.to_json_dict() for r in self.recipients],
            "condition_errors": [
                {"agreement": c.agreement, "code": c.code} for c in self.condition_errors
            ],
            "registry_keys": self.registry_keys,
            "registry_agreements": self.registry_agreements,
        }


def decode_fields(data: bytes) -> dict[str, Any]:
    """The record's Avro datum, decoded without building a `DecisionRecord` or re-encoding.

    For bulk readers that only compare contents (replay, reports): about 2.5 times cheaper than
    `DecisionRecord.from_bytes`. Whether the bytes are canonical and chained is `verify`'s job.
    Times are aware datetimes, hashes and digests bytes, ``outcome`` a string.
    """
    d = _CODECS[schema_version(data)].decode(data)
    d.setdefault("registry_keys", None)  # version 1: no registry position recorded
    d.setdefault("registry_agreements", None)
    return d


class RecordHeader(NamedTuple):
    """The leading fields of a record, read without decoding the rest."""

    chain: str
    seq: int
    prev_hash: bytes


def read_header(data: bytes) -> RecordHeader:
    """Read chain, seq and prev_hash from a record's bytes (fast path of chain verification)."""
    schema_version(data)
    length, pos = read_long(data, HEADER_LEN)
    end = pos + length
    if length < 0 or end > len(data):
        raise RecordFormatError("audit decision record truncated in its chain id")
    try:
        chain = data[pos:end].decode("ascii")
    except UnicodeDecodeError:
        chain = ""
    if not CHAIN_ID.fullmatch(chain):
        raise RecordFormatError("audit decision record has an invalid chain id")
    seq, pos = read_long(data, end)
    prev_hash = data[pos : pos + HASH_LEN]
    if len(prev_hash) != HASH_LEN:
        raise RecordFormatError("audit decision record truncated in its prev_hash")
    return RecordHeader(chain, seq, prev_hash)


def record_hash(data: bytes) -> bytes:
    """SHA-256 of a record's stored bytes."""
    return hashlib.sha256(data).digest()
