"""Avro schemas of events and envelopes: loading, fingerprints, single-object encoding, fields."""

from broker.schemas.errors import (
    EncodingError,
    FieldValueError,
    NonCanonicalError,
    SchemaError,
    SchemaLoadError,
    UnknownSchemaError,
)
from broker.schemas.fields import FieldInfo
from broker.schemas.registry import (
    HEADER_SIZE,
    SINGLE_OBJECT_MARKER,
    SchemaRegistry,
    crc64_fingerprint,
)
from broker.schemas.writer import WriterSchema

__all__ = [
    "HEADER_SIZE",
    "SINGLE_OBJECT_MARKER",
    "EncodingError",
    "FieldInfo",
    "FieldValueError",
    "NonCanonicalError",
    "SchemaError",
    "SchemaLoadError",
    "SchemaRegistry",
    "UnknownSchemaError",
    "WriterSchema",
    "crc64_fingerprint",
]
