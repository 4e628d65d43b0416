"""One version of a payload schema as an issuer wrote it, found by the fingerprint in a header.

Disclosure values are Avro-encoded with the issuer's (writer's) schema, so they are decoded with
that version's field types and then resolved to the current schema by Avro's rules: callers
always get current Python values. Envelopes issued under any released version stay verifiable.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import validate

from broker.schemas.errors import EncodingError, FieldValueError, NonCanonicalError
from broker.schemas.fields import FieldInfo

# `WriterSchema.version` of the schemas in `schemas/avro/`; released ones are named by directory.
CURRENT = "current"


@dataclass(frozen=True, slots=True)
class FieldCodec:
    """Decoder of one payload field's values (a one-field record has the same bytes)."""

    info: FieldInfo
    parsed: Any
    # The field's Avro type as written (named types expanded), for composing one record of many.
    avro_type: Any
    # The current schema's one-field record when this version's field type differs from it
    # (Avro resolution on read); None when the types are the same, which costs nothing.
    reader: Any = None
    reader_type: Any = None
    # False for a field the current schema no longer has: still decoded (so the bytes are
    # checked) but left out of the values, as an Avro reader ignores a removed field.
    kept: bool = True
    # The type holds an Avro int whose range re-encoding does not check (see `_has_int`).
    has_int: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "has_int", _has_int(self.avro_type))


def _has_int(avro_type: Any) -> bool:
    """True when `avro_type` holds a plain Avro int other than as a union branch.

    fastavro reads and writes an out-of-range int like a long, so re-encoding alone does not
    catch one, except in a union (its writer picks a branch by range-checking the value). A
    date or time is an int too, but any value decoded as one is within range.
    """
    if avro_type == "int":
        return True
    if isinstance(avro_type, list):
        return any(_has_int(t) for t in avro_type if t != "int")
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if kind == "int":
            return "logicalType" not in avro_type
        if kind == "array":
            return _has_int(avro_type["items"])
        if kind == "map":
            return _has_int(avro_type["values"])
        if kind == "record":
            return any(_has_int(f["type"]) for f in avro_type["fields"])
        return isinstance(kind, list | dict) and _has_int(kind)
    return False


def _canonical(parsed: Any, record: Any, data: bytes, check_ints: bool) -> bool:
    """True when `record` (decoded from `data` with `parsed`) re-encodes to exactly `data`:
    booleans 0/1, shortest varints, one array block, ints in range... (docs/wire-format.md)."""
    out = io.BytesIO()
    try:
        schemaless_writer(out, parsed, record)
    except Exception:
        return False
    if out.getvalue() != data:
        return False
    return not check_ints or validate(record, parsed, raise_errors=False)


@dataclass(frozen=True, slots=True)
class WriterSchema:
    """A payload schema version: its fields as written, and how they read under the current one."""

    event_type: str
    fingerprint: bytes
    version: str
    codecs: Mapping[str, FieldCodec]
    missing: tuple[str, ...]
    """Fields of the current schema this version lacks: never disclosed, no digest, null."""
    # Composed decoders by the tuple of field names they read (see `decode_values`).
    _plans: dict[tuple[str, ...], _Plan | None] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def field_count(self) -> int:
        """How many payload fields this version has: one signed digest each."""
        return len(self.codecs)

    @property
    def is_current(self) -> bool:
        """True for the schema in `schemas/avro/`, the one `issue()` uses."""
        return self.version == CURRENT

    def fields(self) -> dict[str, FieldInfo]:
        """This version's payload fields as written, in schema order."""
        return {name: codec.info for name, codec in self.codecs.items()}

    def decode_values(self, items: Iterable[tuple[str, bytes]]) -> dict[str, Any]:
        """Decode (field name, Avro bytes) pairs; each must hold exactly one value of its field.

        Fields the current schema no longer has are decoded (so their bytes are checked) and
        left out. The values are read in ONE pass, with a record composed of these fields, from
        their concatenation. Then the record is written back with `_MARKER` after each value
        and must give exactly the values with the marker after each. That proves each value's
        bytes are the canonical encoding of exactly one value (`NonCanonicalError`): were one
        value's re-encoding shorter or longer than its bytes, a marker written would fall off
        the real marker's place, and what lies there cannot be the marker (it is secret to this
        process, so no value's bytes hold it, and no proper suffix of it is a prefix, so it
        cannot overlap itself). The record's ints are checked for range. Anything unexpected
        falls back to reading the values one by one, which names the field at fault.
        (The markers are written, not read: fastavro writes a field for about what it costs
        to read one, and reading them too would double the fields read for no further proof.)
        """
        pairs = list(items)
        plan = self._plan(tuple(name for name, _ in pairs))
        if plan is not None:
            values = [value for _, value in pairs]
            joined = b"".join(values)
            stream = io.BytesIO(joined)
            record: Any
            try:
                record = schemaless_reader(stream, plan.plain, None)
            except Exception:
                record = None
            if isinstance(record, dict) and stream.tell() == len(joined):
                record.update(plan.markers)
                if _canonical(plan.writer, record, _MARKER.join(values) + _MARKER, plan.has_int):
                    if plan.reader is not None:  # an older version: resolve to current types
                        record = schemaless_reader(io.BytesIO(joined), plan.plain, plan.reader)
                    return {name: record[slot] for name, slot in plan.kept}
        return self._decode_each(pairs)

    def _decode_each(self, pairs: list[tuple[str, bytes]]) -> dict[str, Any]:
        codecs = self.codecs
        stream = io.BytesIO(b"".join(data for _, data in pairs))
        out: dict[str, Any] = {}
        end = 0
        for name, data in pairs:
            codec = codecs.get(name)
            if codec is None:
                raise FieldValueError(self.event_type, name, "no such field in the schema")
            end += len(data)
            try:
                record: Any = schemaless_reader(stream, codec.parsed, None)
            except Exception:
                # fastavro's messages can quote the value, so none of it is passed on.
                raise EncodingError(
                    f"bytes are not a valid {self.event_type} field '{name}'"
                ) from None
            if stream.tell() != end:
                raise EncodingError(f"{self.event_type} field '{name}' is not exactly one value")
            if not _canonical(codec.parsed, record, data, codec.has_int):
                raise NonCanonicalError(
                    f"{self.event_type} field '{name}' is not in canonical Avro form"
                )
            if codec.reader is not None:
                record = schemaless_reader(io.BytesIO(data), codec.parsed, codec.reader)
            if codec.kept:
                out[name] = record["v"]
        return out

    def _plan(self, names: tuple[str, ...]) -> _Plan | None:
        """The composed decoder of these fields in this order; None to read them one by one.

        Issued envelopes carry every field in schema order and forwards a subset per agreement,
        so there are few distinct orders; past `_MAX_PLANS`, new ones are read one by one.
        """
        if names in self._plans:
            return self._plans[names]
        if len(self._plans) >= _MAX_PLANS:
            return None
        plan = None
        codecs = [self.codecs.get(name) for name in names]
        if names and len(set(names)) == len(names) and all(c is not None for c in codecs):
            plan = _compose([c for c in codecs if c is not None], names)
        self._plans[names] = plan
        return plan


@dataclass(frozen=True, slots=True)
class _Plan:
    writer: Any  # the values, each followed by its marker (written back to check them)
    plain: Any  # the values alone (read from their concatenation)
    reader: Any  # the values alone as the current schema types them; None if the same
    markers: dict[str, bytes]  # each marker's slot in `writer`'s record, and the marker
    kept: tuple[tuple[str, str], ...]  # (field name, slot in the composed record)
    has_int: bool = False  # some value holds an Avro int: check ranges


_MAX_PLANS = 256
_PLAN_RECORD = "uk.safeguarding.wire.FieldValues"
_MARKER_TYPE = "uk.safeguarding.wire.ValueEnd"


def _new_marker() -> bytes:
    # A first byte found nowhere else in the marker: no shifted copy of it can match it.
    while True:
        marker = secrets.token_bytes(16)
        if marker[0] not in marker[1:]:
            return marker


_MARKER = _new_marker()


def _compose(codecs: list[FieldCodec], names: tuple[str, ...]) -> _Plan | None:
    marker: Any = {"type": "fixed", "name": _MARKER_TYPE, "size": len(_MARKER)}
    writer_fields: list[dict[str, Any]] = []
    plain_fields: list[dict[str, Any]] = []
    reader_fields: list[dict[str, Any]] = []
    for index, codec in enumerate(codecs):
        slot = f"v{index}"
        plain_fields.append({"name": slot, "type": codec.avro_type})
        writer_fields += [plain_fields[-1], {"name": f"m{index}", "type": marker}]
        reader_type = codec.reader_type if codec.reader is not None else codec.avro_type
        reader_fields.append({"name": slot, "type": reader_type})
        marker = _MARKER_TYPE  # defined once, then named
    resolving = any(codec.reader is not None for codec in codecs)

    def composed(fields: list[dict[str, Any]]) -> Any:
        return parse_schema({"type": "record", "name": _PLAN_RECORD, "fields": fields})

    try:
        writer, plain = composed(writer_fields), composed(plain_fields)
        reader = composed(reader_fields) if resolving else None
    except Exception:
        # e.g. two fields defining the same named type: such a set is read one by one.
        return None
    return _Plan(
        writer,
        plain,
        reader,
        {f"m{i}": _MARKER for i in range(len(codecs))},
        tuple((name, f"v{i}") for i, (name, c) in enumerate(zip(names, codecs, strict=True))
              if c.kept),
        any(codec.has_int for codec in codecs),
    )  # fmt: skip
