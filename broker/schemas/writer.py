"""One version of a payload schema as an issuer wrote it, found by the fingerprint in a header.

Disclosure values are Avro-encoded with the issuer's (writer's) schema, so they are decoded with
that version's field types and then resolved to the current schema by Avro's rules: callers
always get current Python values. Envelopes issued under any released version stay verifiable.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fastavro import schemaless_reader

from broker.schemas.errors import EncodingError, FieldValueError
from broker.schemas.fields import FieldInfo

# `WriterSchema.version` of the schemas in `schemas/avro/`; released ones are named by directory.
CURRENT = "current"


@dataclass(frozen=True, slots=True)
class FieldCodec:
    """Decoder of one payload field's values (a one-field record has the same bytes)."""

    info: FieldInfo
    parsed: Any
    # The current schema's one-field record when this version's field type differs from it
    # (Avro resolution on read); None when the types are the same, which costs nothing.
    reader: Any = None
    # False for a field the current schema no longer has: still decoded (so the bytes are
    # checked) but left out of the values, as an Avro reader ignores a removed field.
    kept: bool = True


@dataclass(frozen=True, slots=True)
class WriterSchema:
    """A payload schema version: its fields as written, and how they read under the current one."""

    event_type: str
    fingerprint: bytes
    version: str
    codecs: Mapping[str, FieldCodec]
    missing: tuple[str, ...]
    """Fields of the current schema this version lacks: never disclosed, no digest, null."""
    field_count: int

    @property
    def is_current(self) -> bool:
        """True for the schema in `schemas/avro/`, the one `issue()` uses."""
        return self.version == CURRENT

    def fields(self) -> dict[str, FieldInfo]:
        """This version's payload fields as written, in schema order."""
        return {name: codec.info for name, codec in self.codecs.items()}

    def decode_value(self, field: str, data: bytes) -> Any:
        """Decode one field value (exactly one value, resolved to the current type)."""
        values = self.decode_values([(field, data)])
        return values.get(field)

    def decode_values(self, items: Iterable[tuple[str, bytes]]) -> dict[str, Any]:
        """Decode (field name, Avro bytes) pairs; each must hold exactly one value of its field.

        Reads all values from one stream and checks every boundary, which costs a fraction of
        decoding them one by one. Fields the current schema no longer has are left out.
        """
        codecs = self.codecs
        pairs = list(items)
        stream = io.BytesIO(b"".join(data for _, data in pairs))
        out: dict[str, Any] = {}
        end = 0
        for name, data in pairs:
            codec = codecs.get(name)
            if codec is None:
                raise FieldValueError(self.event_type, name, "no such field in the schema")
            end += len(data)
            try:
                record: Any = schemaless_reader(stream, codec.parsed, codec.reader)
            except Exception:
                # fastavro's messages can quote the value, so none of it is passed on.
                raise EncodingError(
                    f"bytes are not a valid {self.event_type} field '{name}'"
                ) from None
            if stream.tell() != end:
                raise EncodingError(f"{self.event_type} field '{name}' is not exactly one value")
            if codec.kept:
                out[name] = record["v"]
        return out
