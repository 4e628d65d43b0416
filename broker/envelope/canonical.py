"""The ONE module that builds the bytes that are hashed and signed.

Nothing else in the code base assembles signing input or digest input; docs/wire-format.md
specifies these bytes so another implementation can interoperate. Every variable-length item
is length-prefixed (`lp(x)` = 4-byte big-endian length, then the bytes), so no two different
inputs produce the same byte string.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import struct
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from typing import Any

from fastavro import parse_schema, schemaless_writer

from broker.schemas import SchemaRegistry

DIGEST_SIZE = 32
SALT_SIZE = 16
ISSUER_DOMAIN = b"uk.safeguarding.envelope/v1 issuer"
ROUTER_DOMAIN = b"uk.safeguarding.envelope/v1 router"
ISSUER_DOMAIN_V2 = b"uk.safeguarding.envelope/v2 issuer"
ROUTER_DOMAIN_V2 = b"uk.safeguarding.envelope/v2 router"
# The name under which the v2 subject disclosure is hashed. `$` cannot start an Avro field name,
# so no payload disclosure can ever have this name.
SUBJECT_NAME = "$subject"
FORWARDED_SCHEMA = "uk.safeguarding.envelope.ForwardedEnvelope"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


_U32 = struct.Struct(">I").pack
_SALT_PREFIX = _U32(SALT_SIZE)
_DIGEST_PREFIX = _U32(DIGEST_SIZE)


def lp(data: bytes) -> bytes:
    """Length-prefix: 4-byte big-endian length, then the bytes."""
    return _U32(len(data)) + data


def _text(value: str) -> bytes:
    return lp(value.encode("utf-8"))


@lru_cache(maxsize=1024)
def _name(value: str) -> bytes:
    # Field names, event types, agency and key ids and agreements repeat in every message; event
    # ids and subjects don't.
    return lp(value.encode("utf-8"))


def _time(value: datetime) -> bytes:
    # Microseconds since the Unix epoch, as Avro timestamp-micros stores it: signed 64-bit.
    micros = (value - _EPOCH) // _MICROSECOND
    return lp(micros.to_bytes(8, "big", signed=True))


def disclosure_digest(salt: bytes, name: str, value: bytes) -> bytes:
    """SHA-256(lp(salt) || lp(utf8(name)) || lp(avro_value))."""
    return disclosure_digests([(salt, name, value)])[0]


def disclosure_digests(disclosures: Iterable[tuple[bytes, str, bytes]]) -> list[bytes]:
    """`disclosure_digest` of each (salt, name, value), in order: the verifier's hot loop."""
    sha256, u32, name_lp, prefix = hashlib.sha256, _U32, _name, _SALT_PREFIX
    return [
        sha256(
            b"".join((prefix if len(salt) == SALT_SIZE else u32(len(salt)), salt, name_lp(name),
                      u32(len(value)), value))
        ).digest()
        for salt, name, value in disclosures
    ]  # fmt: skip


def subject_digest(salt: bytes, subject: str) -> bytes:
    """v2: SHA-256(lp(salt) || lp(utf8("$subject")) || lp(utf8(subject))), the digest the signed
    header commits to instead of the subject itself."""
    return disclosure_digest(salt, SUBJECT_NAME, subject.encode("utf-8"))


def header_bytes(
    *,
    event_id: str,
    event_type: str,
    schema_fingerprint: bytes,
    issuer: str,
    key_id: str,
    issued_at: datetime,
    occurred_at: datetime,
    subject: str | None = None,
    subject_digest: bytes | None = None,
) -> bytes:
    """The header fields in their fixed order, each length-prefixed.

    The last item is the subject itself (v1) or the digest of its salted disclosure (v2):
    exactly one of `subject` and `subject_digest` is given.
    """
    if (subject is None) == (subject_digest is None):
        raise ValueError("a header has either a subject (v1) or a subject digest (v2)")
    last = _text(subject) if subject is not None else lp(subject_digest or b"")
    return b"".join(
        (
            _text(event_id),
            _name(event_type),
            lp(schema_fingerprint),
            _name(issuer),
            _name(key_id),
            _time(issued_at),
            _time(occurred_at),
            last,
        )
    )


def _digest_list(digests: Iterable[bytes]) -> bytes:
    ordered = sorted(digests)
    count = len(ordered).to_bytes(4, "big")
    if set(map(len, ordered)) == {DIGEST_SIZE}:  # always, but in a malformed message
        return count + _DIGEST_PREFIX + _DIGEST_PREFIX.join(ordered)  # = lp(d) for each d
    return count + b"".join(lp(d) for d in ordered)


def issuer_signing_input(header: bytes, digests: Iterable[bytes], *, version: int = 1) -> bytes:
    """What the issuer signs: lp(domain) || lp(header) || count || lp(digest)... (sorted).

    The domain names the wire-format version, so a v1 signature never verifies as v2 or back.
    """
    return lp(_issuer_domain(version)) + lp(header) + _digest_list(digests)


def _issuer_domain(version: int) -> bytes:
    if version == 1:
        return ISSUER_DOMAIN
    if version == 2:
        return ISSUER_DOMAIN_V2
    raise ValueError(f"unknown wire-format version {version}")


def router_signing_input(
    *,
    event_id: str,
    issuer: str,
    issuer_signature: bytes,
    disclosed_digests: Iterable[bytes],
    derived: Mapping[str, Any],
    agreements: Sequence[str],
    recipient: str,
    router: str,
    router_key_id: str,
    forwarded_at: datetime,
    version: int = 1,
    subject_digest: bytes | None = None,
) -> bytes:
    """What the router signs: the forward bound to one issued event and one recipient.

    The issuer's signature pins the exact header and digest list; the disclosed digests say what
    the router chose to forward; derived values are sorted by name, each value Avro-encoded with
    the `DerivedValue.value` union. v2 adds, after the disclosed digests, `lp(subject digest)` if
    the subject disclosure is forwarded, else `lp("")`: the router signs whether it forwarded the
    subject.
    """
    if version == 1:
        if subject_digest is not None:
            raise ValueError("a v1 forward has no subject disclosure")
        domain, subject_part = ROUTER_DOMAIN, b""
    elif version == 2:
        domain, subject_part = ROUTER_DOMAIN_V2, lp(subject_digest or b"")
    else:
        raise ValueError(f"unknown wire-format version {version}")
    derived_part = len(derived).to_bytes(4, "big") + b"".join(
        _name(name) + lp(encode_derived_value(derived[name])) for name in sorted(derived)
    )
    agreements_part = len(agreements).to_bytes(4, "big") + b"".join(_name(a) for a in agreements)
    return b"".join(
        (
            lp(domain),
            _text(event_id),
            _name(issuer),
            lp(issuer_signature),
            _digest_list(disclosed_digests),
            subject_part,
            derived_part,
            agreements_part,
            _name(recipient),
            _name(router),
            _name(router_key_id),
            _time(forwarded_at),
        )
    )


def encode_derived_value(value: Any) -> bytes:
    """Avro binary encoding of one derived value with the `DerivedValue.value` union."""
    out = io.BytesIO()
    schemaless_writer(out, _derived_value_schema(), {"value": value})
    return out.getvalue()


@cache
def _derived_value_schema() -> Any:
    forwarded = SchemaRegistry.default().schema(FORWARDED_SCHEMA)
    derived = next(f for f in forwarded["fields"] if f["name"] == "derived")["type"]
    values = next(f for f in derived["fields"] if f["name"] == "values")["type"]
    value_type = next(f for f in values["items"]["fields"] if f["name"] == "value")["type"]
    record = {
        "type": "record",
        "name": "uk.safeguarding.wire.DerivedValueOnly",
        "fields": [{"name": "value", "type": value_type}],
    }
    return parse_schema(record)


FEED_KEY_DOMAIN = b"uk.safeguarding.feed-key/v1"


def feed_record_key(recipient_key: bytes, issuer: str, subject: str) -> bytes:
    """The Kafka record key of a forward: hex HMAC-SHA256 under the recipient's pseudonym key of
    lp(domain) || lp(utf8(issuer)) || lp(utf8(subject)).

    Stable per recipient, issuer and subject (one child's forwards stay in one feed partition, in
    order), but neither the subject nor linkable across recipients.
    """
    data = lp(FEED_KEY_DOMAIN) + _name(issuer) + _text(subject)
    return hmac.new(recipient_key, data, hashlib.sha256).hexdigest().encode("ascii")
