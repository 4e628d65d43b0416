"""The one place that builds the canonical bytes of audit records and checkpoints.

Canonical form is Avro single-object encoding (``C3 01`` + 8-byte CRC-64-AVRO fingerprint of the
schema + Avro binary body). Avro binary is deterministic for a given schema and value as long as the
value holds no maps and every list has a defined order; the record types normalise their lists
before encoding. Verifiers never re-encode: they hash the bytes exactly as stored in Kafka.
"""

from __future__ import annotations

import io
import json
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from broker.audit.exceptions import RecordFormatError
from broker.schemas import SINGLE_OBJECT_MARKER, crc64_fingerprint
from broker.schemas.registry import default_schema_dir

HEADER_LEN = len(SINGLE_OBJECT_MARKER) + 8


def load_schema(file_name: str) -> dict[str, Any]:
    """An audit record's schema, from its file in ``schemas/avro/`` (its one definition)."""
    schema: dict[str, Any] = json.loads((default_schema_dir() / file_name).read_text("utf-8"))
    return schema


class SingleObjectCodec:
    """Encode and decode one Avro record type in single-object encoding."""

    def __init__(self, schema: dict[str, Any], what: str) -> None:
        self.schema = schema
        self.what = what
        self._parsed = parse_schema(schema)
        self.header = SINGLE_OBJECT_MARKER + crc64_fingerprint(self._parsed)

    def encode(self, datum: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self.header)
        schemaless_writer(buf, self._parsed, datum)
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode, refusing a wrong schema fingerprint, a short body or trailing bytes."""
        if data[:HEADER_LEN] != self.header:
            raise RecordFormatError(
                f"not an {self.what}: missing Avro single-object header or wrong schema fingerprint"
            )
        buf = io.BytesIO(data)
        buf.seek(HEADER_LEN)
        try:
            datum = schemaless_reader(buf, self._parsed, None)
        except Exception as exc:  # fastavro raises many types; none may leak the bytes
            raise RecordFormatError(
                f"not a readable {self.what}: the Avro body is corrupt ({type(exc).__name__})"
            ) from None
        if buf.tell() != len(data):
            raise RecordFormatError(f"not a readable {self.what}: trailing bytes after the record")
        if not isinstance(datum, dict):
            raise RecordFormatError(f"not a readable {self.what}: body is not a record")
        return datum


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """Read one Avro zig-zag varint at ``pos``; return (value, next position).

    Used to read the few leading fields of a record without a full decode (verification speed).
    """
    shift = 0
    acc = 0
    while True:
        try:
            byte = data[pos]
        except IndexError:
            raise RecordFormatError("truncated Avro varint") from None
        pos += 1
        acc |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift > 63:
            raise RecordFormatError("Avro varint longer than 10 bytes")
    return (acc >> 1) ^ -(acc & 1), pos
