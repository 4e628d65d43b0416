"""The schema registry: every .avsc under schemas/avro/, loaded once, with cached fingerprints.

Messages use Avro single-object encoding: `C3 01`, the 8-byte CRC-64-AVRO fingerprint of the
writer schema (little-endian), then the Avro binary body. Decoding looks the fingerprint up here,
so every message names its schema without a registry service.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import expand_schema, fingerprint, to_parsing_canonical_form

from broker.schemas.errors import (
    EncodingError,
    FieldValueError,
    SchemaLoadError,
    UnknownSchemaError,
)
from broker.schemas.fields import FieldInfo, describe_field, to_avro, to_json

SINGLE_OBJECT_MARKER = b"\xc3\x01"
FINGERPRINT_SIZE = 8
_HEADER_SIZE = len(SINGLE_OBJECT_MARKER) + FINGERPRINT_SIZE
_VALUE_RECORD = "uk.safeguarding.wire.FieldValue"


def default_schema_dir() -> Path:
    """`schemas/avro/` of this checkout: the repository root is the parent of `broker/`."""
    return Path(__file__).resolve().parents[2] / "schemas" / "avro"


def crc64_fingerprint(schema: Any) -> bytes:
    """CRC-64-AVRO fingerprint of a schema's parsing canonical form, as 8 little-endian bytes."""
    canonical = to_parsing_canonical_form(schema)
    # fastavro returns the fingerprint's bytes in little-endian order as hex.
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


@dataclass(frozen=True, slots=True)
class _FieldCodec:
    """Encoder/decoder of one payload field's values (a one-field record has the same bytes)."""

    info: FieldInfo
    parsed: Any


@dataclass(frozen=True, slots=True)
class _Schema:
    name: str
    path: Path
    raw: Mapping[str, Any]
    parsed: Any
    fingerprint: bytes
    event_type: str | None
    codecs: Mapping[str, _FieldCodec]


class SchemaRegistry:
    """Named Avro schemas with fingerprints, single-object codec and payload field metadata."""

    def __init__(self, schemas: list[_Schema]) -> None:
        self._by_name = {s.name: s for s in schemas}
        self._by_fingerprint = {s.fingerprint: s for s in schemas}
        self._by_event_type = {s.event_type: s for s in schemas if s.event_type is not None}
        if len(self._by_fingerprint) != len(schemas):
            raise SchemaLoadError(
                "two schemas share a fingerprint; remove the duplicate .avsc file"
            )

    @classmethod
    def default(cls) -> SchemaRegistry:
        """The registry of this checkout's `schemas/avro/`, loaded once per process."""
        return _default_registry()

    @classmethod
    def from_dir(cls, directory: Path) -> SchemaRegistry:
        """Load every `*.avsc` below `directory`."""
        paths = sorted(directory.rglob("*.avsc"))
        if not paths:
            raise SchemaLoadError(f"no .avsc files in {directory}; point at the schemas/avro dir")
        return cls([_load(path) for path in paths])

    def names(self) -> list[str]:
        """Full names of all loaded schemas."""
        return sorted(self._by_name)

    def event_types(self) -> list[str]:
        """Event types (EVENTS.md names such as `child.missing.started`)."""
        return sorted(self._by_event_type)

    def schema_name(self, name: str) -> str:
        """Full Avro name for a full name or an event type."""
        return self._get(name).name

    def schema(self, name: str) -> Mapping[str, Any]:
        """The schema as written in its .avsc file (with custom attributes)."""
        return self._get(name).raw

    def fields(self, event_type: str) -> dict[str, FieldInfo]:
        """Payload fields of an event type, in schema order."""
        return {n: c.info for n, c in self._get(event_type).codecs.items()}

    def fingerprint(self, name: str) -> bytes:
        """Cached CRC-64-AVRO fingerprint (8 bytes, little-endian) of a schema or event type."""
        return self._get(name).fingerprint

    def event_type_for(self, fingerprint: bytes) -> str:
        """The event type whose payload schema has this fingerprint."""
        schema = self._by_fingerprint.get(bytes(fingerprint))
        if schema is None or schema.event_type is None:
            raise UnknownSchemaError("no event schema has this fingerprint; update schemas/avro")
        return schema.event_type

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Single-object encoding of `record` with the schema `name`."""
        schema = self._get(name)
        out = io.BytesIO()
        out.write(SINGLE_OBJECT_MARKER)
        out.write(schema.fingerprint)
        try:
            schemaless_writer(out, schema.parsed, record)
        except Exception:
            # fastavro's messages can quote the value, so none of it is passed on.
            raise EncodingError(f"record does not fit schema {schema.name}") from None
        return out.getvalue()

    def decode(self, data: bytes, expected: str | None = None) -> tuple[str, dict[str, Any]]:
        """Decode single-object bytes into (full schema name, record).

        With `expected`, a message of any other schema is refused.
        """
        if len(data) < _HEADER_SIZE or data[:2] != SINGLE_OBJECT_MARKER:
            raise EncodingError("not Avro single-object encoding (missing C3 01 marker)")
        schema = self._by_fingerprint.get(bytes(data[2:_HEADER_SIZE]))
        if schema is None:
            raise UnknownSchemaError("message names a schema fingerprint this registry lacks")
        if expected is not None and schema.name != self.schema_name(expected):
            raise EncodingError(f"expected a {expected} message, got {schema.name}")
        record = _read_exact(data[_HEADER_SIZE:], schema.parsed, schema.name)
        return schema.name, record

    def validate_fields(self, event_type: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Convert EVENTS.md JSON field values to Avro values, in schema order.

        Absent optional fields become None. Raises `FieldValueError` naming the field.
        """
        codecs = self._get_event(event_type).codecs
        for name in fields:
            if name not in codecs:
                raise FieldValueError(
                    event_type, name, "no such field; see " + ", ".join(codecs) + " in the schema"
                )
        out: dict[str, Any] = {}
        for name, codec in codecs.items():
            try:
                out[name] = to_avro(codec.info, fields.get(name))
            except ValueError as exc:
                raise FieldValueError(event_type, name, str(exc)) from None
        return out

    def encode_value(self, event_type: str, field: str, value: Any) -> bytes:
        """Avro binary encoding of one (already validated) payload field value."""
        codec = self._codec(event_type, field)
        out = io.BytesIO()
        try:
            schemaless_writer(out, codec.parsed, {"v": value})
        except Exception:
            raise FieldValueError(event_type, field, "value does not fit the field type") from None
        return out.getvalue()

    def decode_value(self, event_type: str, field: str, data: bytes) -> Any:
        """Decode one payload field value; raise `EncodingError` unless it is exactly one value."""
        codec = self._codec(event_type, field)
        return _read_exact(data, codec.parsed, f"{event_type} field '{field}'")["v"]

    def decode_values(self, event_type: str, items: Iterable[tuple[str, bytes]]) -> dict[str, Any]:
        """Decode (field name, Avro bytes) pairs; each must hold exactly one value of its field.

        Reads all values from one stream and checks every boundary, which costs a fraction of
        decoding them one by one.
        """
        codecs = self._get_event(event_type).codecs
        pairs = list(items)
        stream = io.BytesIO(b"".join(data for _, data in pairs))
        out: dict[str, Any] = {}
        end = 0
        for name, data in pairs:
            codec = codecs.get(name)
            if codec is None:
                raise FieldValueError(event_type, name, "no such field in the schema")
            end += len(data)
            try:
                record: Any = schemaless_reader(stream, codec.parsed, None)
                out[name] = record["v"]
            except Exception:
                raise EncodingError(f"bytes are not a valid {event_type} field '{name}'") from None
            if stream.tell() != end:
                raise EncodingError(f"{event_type} field '{name}' is not exactly one value")
        return out

    def value_to_json(self, event_type: str, field: str, value: Any) -> Any:
        """The EVENTS.md JSON form of a decoded field value (dates and times as ISO text)."""
        return to_json(self._codec(event_type, field).info, value)

    def _get(self, name: str) -> _Schema:
        schema = self._by_name.get(name) or self._by_event_type.get(name)
        if schema is None:
            raise UnknownSchemaError(f"unknown schema or event type '{name}'; see schemas/avro")
        return schema

    def _get_event(self, event_type: str) -> _Schema:
        schema = self._by_event_type.get(event_type)
        if schema is None:
            raise UnknownSchemaError(
                f"unknown event type '{event_type}'; known: " + ", ".join(self.event_types())
            )
        return schema

    def _codec(self, event_type: str, field: str) -> _FieldCodec:
        codec = self._get_event(event_type).codecs.get(field)
        if codec is None:
            raise FieldValueError(event_type, field, "no such field in the schema")
        return codec


def _read_exact(data: bytes, parsed: Any, what: str) -> Any:
    stream = io.BytesIO(data)
    try:
        record = schemaless_reader(stream, parsed, None)
    except Exception:
        raise EncodingError(f"bytes are not a valid {what}") from None
    if stream.tell() != len(data):
        raise EncodingError(f"trailing bytes after a {what}")
    return record


def _load(path: Path) -> _Schema:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        parsed: Any = parse_schema(raw)
    except (OSError, ValueError) as exc:
        raise SchemaLoadError(f"{path}: not a readable Avro schema ({exc}); fix the file") from None
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise SchemaLoadError(f"{path}: top-level schema must be a named record")
    name = str(parsed["name"])
    event_type = raw.get("event_type")
    codecs: dict[str, _FieldCodec] = {}
    if event_type is not None:
        expanded: Any = expand_schema(raw)
        for field in expanded["fields"]:
            wrapper = {
                "type": "record",
                "name": _VALUE_RECORD,
                "fields": [{"name": "v", "type": field["type"]}],
            }
            codecs[field["name"]] = _FieldCodec(describe_field(field), parse_schema(wrapper))
    return _Schema(name, path, raw, parsed, crc64_fingerprint(raw), event_type, codecs)


@functools.cache
def _default_registry() -> SchemaRegistry:
    return SchemaRegistry.from_dir(default_schema_dir())
