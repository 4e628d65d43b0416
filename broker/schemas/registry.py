"""The schema registry: every .avsc under schemas/avro/, loaded once, with cached fingerprints.

Messages use Avro single-object encoding: `C3 01`, the 8-byte CRC-64-AVRO fingerprint of the
writer schema (little-endian), then the Avro binary body. Decoding looks the fingerprint up here,
so every message names its schema without a registry service.

The default registry also loads every released version (`schemas/released/v*/`) as a writer
schema: a message or envelope written with one is still decoded, resolved to the current schema.
Encoding, issuing and field metadata always use the current schemas.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import expand_schema, fingerprint, to_parsing_canonical_form

from broker.schemas.errors import (
    EncodingError,
    FieldValueError,
    NonCanonicalError,
    SchemaLoadError,
    UnknownSchemaError,
)
from broker.schemas.fields import FieldInfo, describe_field, to_avro, to_json
from broker.schemas.writer import CURRENT, FieldCodec, WriterSchema

SINGLE_OBJECT_MARKER = b"\xc3\x01"
FINGERPRINT_SIZE = 8
# C3 01 and the schema fingerprint: what comes before the Avro body of a single-object message.
HEADER_SIZE = len(SINGLE_OBJECT_MARKER) + FINGERPRINT_SIZE
_VALUE_RECORD = "uk.safeguarding.wire.FieldValue"


def default_schema_dir() -> Path:
    """`schemas/avro/` of this checkout: the repository root is the parent of `broker/`."""
    return Path(__file__).resolve().parents[2] / "schemas" / "avro"


def default_released_dir() -> Path:
    """`schemas/released/`: one sub-directory per released version (`v1/`, `v2/`...)."""
    return Path(__file__).resolve().parents[2] / "schemas" / "released"


def crc64_fingerprint(schema: Any) -> bytes:
    """CRC-64-AVRO fingerprint of a schema's parsing canonical form, as 8 little-endian bytes."""
    canonical = to_parsing_canonical_form(schema)
    # fastavro returns the fingerprint's bytes in little-endian order as hex.
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


@dataclass(frozen=True, slots=True)
class _Schema:
    name: str
    path: Path
    raw: Mapping[str, Any]
    parsed: Any
    fingerprint: bytes
    event_type: str | None
    codecs: Mapping[str, FieldCodec]
    version: str = CURRENT
    # The current schema of the same name, for Avro resolution when decoding; None if current.
    reader: Any = None


class SchemaRegistry:
    """Named Avro schemas with fingerprints, single-object codec and payload field metadata.

    `schemas` are the current ones; `released` are (version, schemas) of earlier releases, known
    only as writer schemas (by fingerprint) for decoding and verification.
    """

    def __init__(
        self, schemas: list[_Schema], released: Sequence[tuple[str, list[_Schema]]] = ()
    ) -> None:
        self._by_name = {s.name: s for s in schemas}
        self._by_fingerprint = {s.fingerprint: s for s in schemas}
        self._by_event_type = {s.event_type: s for s in schemas if s.event_type is not None}
        if len(self._by_fingerprint) != len(schemas):
            raise SchemaLoadError(
                "two schemas share a fingerprint; remove the duplicate .avsc file"
            )
        for version, old_schemas in released:
            for old in old_schemas:
                if old.fingerprint not in self._by_fingerprint:  # unchanged since: already known
                    self._by_fingerprint[old.fingerprint] = self._as_release(old, version)
        self._writers = {
            s.fingerprint: _writer(s, s.event_type, self._by_event_type[s.event_type])
            for s in self._by_fingerprint.values()
            if s.event_type is not None
        }

    @classmethod
    def default(cls) -> SchemaRegistry:
        """This checkout's `schemas/avro/` plus every released version, loaded once per process."""
        return _default_registry()

    @classmethod
    def from_dir(cls, directory: Path, released_dir: Path | None = None) -> SchemaRegistry:
        """Load every `*.avsc` below `directory`, and each `released_dir/v*/` as writer schemas."""
        released: list[tuple[str, list[_Schema]]] = []
        if released_dir is not None:
            versions = sorted(
                (p.name for p in released_dir.iterdir() if p.is_dir()), key=_version_key
            )
            released = [(v, _load_all(released_dir / v, v)) for v in versions]
        return cls(_load_all(directory, CURRENT), released)

    def _as_release(self, old: _Schema, version: str) -> _Schema:
        """A released schema as a writer schema resolved to the current one of the same name."""
        current = self._by_name.get(old.name)
        if current is None or current.event_type != old.event_type:
            raise SchemaLoadError(
                f"{old.path}: released schema {old.name} has no current schema of that name and "
                "event type; a released schema must stay (see docs/wire-format.md, Evolution)"
            )
        codecs = {
            name: _resolved(codec, current.codecs.get(name)) for name, codec in old.codecs.items()
        }
        return dataclasses.replace(old, codecs=codecs, version=version, reader=current.parsed)

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
        """The event type whose payload schema (current or released) has this fingerprint."""
        return self.writer(fingerprint).event_type

    def writer(self, fingerprint: bytes) -> WriterSchema:
        """The payload schema version (current or released) with this fingerprint."""
        writer = self._writers.get(bytes(fingerprint))
        if writer is None:
            raise UnknownSchemaError("no event schema has this fingerprint; update schemas/avro")
        return writer

    def versions(self, event_type: str) -> list[WriterSchema]:
        """Every known version of an event type's payload schema, the current one last."""
        self._get_event(event_type)
        found = [w for w in self._writers.values() if w.event_type == event_type]
        return sorted(found, key=lambda w: (w.is_current, _version_key(w.version)))

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

        With `expected`, a message of any other schema is refused. The body must be the
        canonical encoding of the record (re-encoded with its writer schema it gives the same
        bytes), else `NonCanonicalError`.
        """
        if len(data) < HEADER_SIZE or data[:2] != SINGLE_OBJECT_MARKER:
            raise EncodingError("not Avro single-object encoding (missing C3 01 marker)")
        schema = self._by_fingerprint.get(bytes(data[2:HEADER_SIZE]))
        if schema is None:
            raise UnknownSchemaError("message names a schema fingerprint this registry lacks")
        if expected is not None and schema.name != self.schema_name(expected):
            raise EncodingError(f"expected a {expected} message, got {schema.name}")
        body = data[HEADER_SIZE:]
        record = _read_exact(body, schema.parsed, schema.name)
        if _encode(schema.parsed, record) != body:
            raise NonCanonicalError(f"{schema.name} message is not in canonical Avro form")
        if schema.reader is not None:
            record = _read_exact(body, schema.parsed, schema.name, schema.reader)
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
        """Decode one current-schema field value; `EncodingError` unless it is exactly one value."""
        codec = self._codec(event_type, field)
        return _read_exact(data, codec.parsed, f"{event_type} field '{field}'")["v"]

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

    def _codec(self, event_type: str, field: str) -> FieldCodec:
        codec = self._get_event(event_type).codecs.get(field)
        if codec is None:
            raise FieldValueError(event_type, field, "no such field in the schema")
        return codec


def _encode(parsed: Any, record: Any) -> bytes | None:
    """Avro binary encoding of a decoded `record`; None if it does not re-encode at all."""
    out = io.BytesIO()
    try:
        schemaless_writer(out, parsed, record)
    except Exception:
        return None
    return out.getvalue()


def _read_exact(data: bytes, parsed: Any, what: str, reader: Any = None) -> Any:
    stream = io.BytesIO(data)
    try:
        record = schemaless_reader(stream, parsed, reader)
    except Exception:
        raise EncodingError(f"bytes are not a valid {what}") from None
    if stream.tell() != len(data):
        raise EncodingError(f"trailing bytes after a {what}")
    return record


def _load_all(directory: Path, version: str) -> list[_Schema]:
    paths = sorted(directory.rglob("*.avsc"))
    if not paths:
        raise SchemaLoadError(f"no .avsc files in {directory}; point at the schemas/avro dir")
    return [_load(path, version) for path in paths]


def _version_key(version: str) -> tuple[int, str]:
    """Order release directories v1, v2, ... v10 numerically."""
    digits = re.sub(r"\D", "", version)
    return (int(digits) if digits else 0, version)


def _resolved(old: FieldCodec, current: FieldCodec | None) -> FieldCodec:
    """A released field's codec: resolves to the current type if it changed, dropped if gone."""
    if current is None:
        return dataclasses.replace(old, kept=False)
    if to_parsing_canonical_form(old.parsed) == to_parsing_canonical_form(current.parsed):
        return old
    return dataclasses.replace(old, reader=current.parsed, reader_type=current.avro_type)


def _writer(schema: _Schema, event_type: str, current: _Schema) -> WriterSchema:
    return WriterSchema(
        event_type=event_type,
        fingerprint=schema.fingerprint,
        version=schema.version,
        codecs=schema.codecs,
        missing=tuple(name for name in current.codecs if name not in schema.codecs),
    )


def _load(path: Path, version: str = CURRENT) -> _Schema:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        parsed: Any = parse_schema(raw)
    except (OSError, ValueError) as exc:
        raise SchemaLoadError(f"{path}: not a readable Avro schema ({exc}); fix the file") from None
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise SchemaLoadError(f"{path}: top-level schema must be a named record")
    name = str(parsed["name"])
    event_type = raw.get("event_type")
    codecs: dict[str, FieldCodec] = {}
    if event_type is not None:
        expanded: Any = expand_schema(raw)
        for field in expanded["fields"]:
            wrapper = {
                "type": "record",
                "name": _VALUE_RECORD,
                "fields": [{"name": "v", "type": field["type"]}],
            }
            codecs[field["name"]] = FieldCodec(
                describe_field(field), parse_schema(wrapper), field["type"]
            )
    return _Schema(name, path, raw, parsed, crc64_fingerprint(raw), event_type, codecs, version)


@functools.cache
def _default_registry() -> SchemaRegistry:
    return SchemaRegistry.from_dir(default_schema_dir(), default_released_dir())
