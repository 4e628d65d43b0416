"""Forwards built from the issued envelope's own bytes: the router's largest single cost.

Avro encodes a record as its fields' encodings one after another, and an array as a count, its
items and a closing zero. A v2 forward is the issued envelope's header, digests, the disclosures
the recipient may see, the subject (or not), the issuer's signature, then the router's section.
So once the issued bytes have been decoded and proved canonical (`SchemaRegistry.decode`
re-encodes them with fastavro and compares), every part but the router's section is already
there, byte for byte: the forward is those slices joined, with the array count and the union
index of the subject written in front of them. Only the router's section is encoded, by fastavro.

Encoding a forward of 12 of 24 disclosures with fastavro cost about 70 us on this machine
(fastavro writes a record item at about 3 us); joining slices about 14 (docs/performance.md).
`tests/unit/envelope/test_wire.py` checks the result is exactly fastavro's encoding of the same
forward, for random envelopes and every subset of their disclosures. Anything this module cannot
place (a v1 envelope, bytes not from `Envelope.from_bytes`, sizes that do not add up) returns
None and the caller encodes with fastavro as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from io import BytesIO
from typing import Any, NamedTuple

from fastavro import parse_schema, schemaless_writer

from broker.schemas import HEADER_SIZE, SINGLE_OBJECT_MARKER, SchemaRegistry

_SALT_SIZE = 16
_SIGNATURE_SIZE = 64
_NO_SUBJECT = b"\x00"  # union index 0: null
_SUBJECT = b"\x02"  # union index 1 (zig-zag 2): the SubjectDisclosure record
_END = b"\x00"  # the zero count that closes an Avro array


class IssuedLayout(NamedTuple):
    """Where the parts of a canonical v2 issued envelope lie in its bytes."""

    head: bytes
    """The header and digests (the body up to the disclosures array)."""
    items: tuple[bytes, ...]
    """Each disclosure's encoding, in the envelope's order."""
    subject: bytes
    """The subject disclosure record's encoding."""
    signature: bytes
    """The issuer's signature (a fixed, so its 64 bytes as they are)."""


def avro_count(n: int) -> bytes:
    """Avro's zig-zag varint of a count or length `n` >= 0 (a long: n << 1, 7 bits a byte)."""
    value = n << 1
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def layout(
    wire: bytes, disclosures: Sequence[tuple[bytes, str, bytes]], subject: tuple[bytes, str]
) -> IssuedLayout | None:
    """Slice canonical v2 issued-envelope bytes (`wire`, single-object encoded) into its parts.

    `disclosures` and `subject` are what fastavro decoded from `wire`; their encodings' sizes
    follow from them, and the parts are found from the end of the body backwards. None when the
    sizes do not fit the bytes (which canonical bytes always do).
    """
    body_at = HEADER_SIZE
    end = len(wire) - _SIGNATURE_SIZE
    salt, reference = subject
    subject_size = len(salt) + _string_size(reference)
    end -= subject_size
    subject_at = end
    sizes = [
        len(item_salt) + _string_size(name) + _long_size(len(value)) + len(value)
        for item_salt, name, value in disclosures
    ]
    count = avro_count(len(sizes)) if sizes else b""
    start = end - len(count) - sum(sizes) - 1
    if start < body_at or len(salt) != _SALT_SIZE or wire[end - 1] != 0:
        return None
    if wire[start : start + len(count)] != count:
        return None
    items = []
    at = start + len(count)
    for size in sizes:
        items.append(wire[at : at + size])
        at += size
    return IssuedLayout(
        head=wire[body_at:start],
        items=tuple(items),
        subject=wire[subject_at : subject_at + subject_size],
        signature=wire[len(wire) - _SIGNATURE_SIZE :],
    )


def _long_size(n: int) -> int:
    """How many bytes `avro_count(n)` takes."""
    value, size = n >> 6, 1
    while value:
        value >>= 7
        size += 1
    return size


@lru_cache(maxsize=4096)
def _string_size(text: str) -> int:
    """How many bytes an Avro string takes (field names repeat: cached)."""
    size = len(text.encode("utf-8"))
    return _long_size(size) + size


def forwarded_bytes(
    issued: IssuedLayout,
    kept: Sequence[int],
    share_subject: bool,
    derived: dict[str, Any],
    registry: SchemaRegistry,
    forwarded_schema: str,
) -> bytes:
    """Single-object bytes of the v2 forward keeping disclosures `kept` (indices, in order),
    the subject if `share_subject`, and the router's section `derived` (its Avro record)."""
    section = BytesIO()
    schemaless_writer(section, _derived_schema(registry, forwarded_schema), derived)
    parts = [SINGLE_OBJECT_MARKER, registry.fingerprint(forwarded_schema), issued.head]
    if kept:
        parts.append(avro_count(len(kept)))
        items = issued.items
        parts.extend(items[i] for i in kept)
    parts.append(_END)
    if share_subject:
        parts += (_SUBJECT, issued.subject)
    else:
        parts.append(_NO_SUBJECT)
    parts += (issued.signature, section.getvalue())
    return b"".join(parts)


@lru_cache(maxsize=8)
def _derived_schema(registry: SchemaRegistry, forwarded_schema: str) -> Any:
    """The router's section (`derived`, the forward's last field) as a schema of its own."""
    expanded = parse_schema(dict(registry.schema(forwarded_schema)), expand=True)
    if not isinstance(expanded, dict):
        raise ValueError(f"{forwarded_schema} is not a record schema")
    last = expanded["fields"][-1]
    if last["name"] != "derived":
        raise ValueError(f"{forwarded_schema} does not end with the router's section")
    return parse_schema(last["type"])
