"""Errors raised by the schema registry; messages name fields and schemas, never values."""

from __future__ import annotations

from broker.errors import BrokerError


class SchemaError(BrokerError):
    """Base class for schema registry errors."""


class SchemaLoadError(SchemaError):
    """A schema file is missing, unreadable or not a valid Avro schema."""


class UnknownSchemaError(SchemaError):
    """A name, event type or fingerprint that no loaded schema has."""


class EncodingError(SchemaError):
    """Bytes that are not a valid single-object encoding or Avro body for their schema."""


class NonCanonicalError(EncodingError):
    """Bytes that decode, but are not the one canonical Avro encoding of what they decode to
    (re-encoding gives other bytes): refused, so that every byte string has one meaning."""


class FieldValueError(SchemaError):
    """A field value that does not fit its schema; names the field, never the value."""

    def __init__(self, event_type: str, field: str, problem: str) -> None:
        super().__init__(f"{event_type} field '{field}': {problem}")
        self.event_type = event_type
        self.field = field
