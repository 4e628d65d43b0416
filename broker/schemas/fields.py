"""Field descriptions of payload schemas and conversion of EVENTS.md JSON values to Avro values."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_LOGICAL_KINDS = {
    "date": "date",
    "timestamp-micros": "timestamp",
    "timestamp-millis": "timestamp",
}
_PRIMITIVE_KINDS = {
    "string": "string",
    "boolean": "bool",
    "int": "int",
    "long": "long",
    "float": "double",
    "double": "double",
    "bytes": "bytes",
}


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """What a payload field is: its Avro type, Python kind and allowed values."""

    name: str
    avro_type: str
    logical_type: str | None
    nullable: bool
    kind: str
    symbols: tuple[str, ...] | None
    allowed: tuple[str, ...] | None
    is_array: bool
    item_kind: str | None
    personal: bool
    doc: str

    @property
    def allowed_values(self) -> tuple[str, ...] | None:
        """Enum symbols or the allowed-strings list, whichever constrains this field."""
        return self.symbols if self.symbols is not None else self.allowed


def describe_field(field: Mapping[str, Any]) -> FieldInfo:
    """Build a `FieldInfo` from one field of an expanded (all named types inline) record."""
    avro_type: Any = field["type"]
    nullable = False
    if isinstance(avro_type, list):
        branches = [b for b in avro_type if b != "null"]
        nullable = len(branches) < len(avro_type)
        if len(branches) != 1:
            raise ValueError(f"field {field['name']}: only [null, T] unions are supported")
        avro_type = branches[0]
    kind, logical, symbols, description = _kind_of(avro_type)
    is_array = kind == "array"
    item_kind = None
    if is_array:
        item_kind, _, symbols, item_desc = _kind_of(avro_type["items"])
        description = f"array<{item_desc}>"
    allowed = field.get("allowed")
    return FieldInfo(
        name=field["name"],
        avro_type=description,
        logical_type=logical,
        nullable=nullable,
        kind=kind,
        symbols=symbols,
        allowed=tuple(allowed) if allowed is not None else None,
        is_array=is_array,
        item_kind=item_kind,
        personal=bool(field.get("personal", False)),
        doc=str(field.get("doc", "")),
    )


def _kind_of(avro_type: Any) -> tuple[str, str | None, tuple[str, ...] | None, str]:
    """Return (kind, logical type, enum symbols, description) of a non-union Avro type."""
    if isinstance(avro_type, str):
        return _PRIMITIVE_KINDS[avro_type], None, None, avro_type
    logical = avro_type.get("logicalType")
    if logical in _LOGICAL_KINDS:
        return _LOGICAL_KINDS[logical], logical, None, logical
    type_name = avro_type["type"]
    if type_name == "enum":
        return "enum", None, tuple(avro_type["symbols"]), f"enum {avro_type['name']}"
    if type_name == "array":
        return "array", None, None, "array"
    if type_name in _PRIMITIVE_KINDS:
        return _PRIMITIVE_KINDS[type_name], None, None, type_name
    raise ValueError(f"unsupported payload field type {type_name}")


def to_avro(info: FieldInfo, value: Any) -> Any:
    """Convert one JSON-form value to its Avro Python value; raise ValueError naming the problem.

    The ValueError message describes the expected form and never contains the value.
    """
    if value is None:
        if info.nullable:
            return None
        raise ValueError("is required and may not be null")
    if info.is_array:
        if not isinstance(value, list | tuple):
            raise ValueError("expected a JSON array")
        assert info.item_kind is not None
        return [_scalar(info.item_kind, info.allowed_values, item) for item in value]
    return _scalar(info.kind, info.allowed_values, value)


def _scalar(kind: str, allowed: tuple[str, ...] | None, value: Any) -> Any:
    if kind in ("string", "enum"):
        if not isinstance(value, str):
            raise ValueError("expected a string")
        if allowed is not None and value not in allowed:
            raise ValueError("expected one of " + ", ".join(allowed))
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value
    if kind in ("int", "long"):
        low, high = _INT32 if kind == "int" else _INT64
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"expected a whole number ({kind})")
        return value
    if kind == "double":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("expected a number")
        return float(value)
    if kind == "date":
        return _date(value)
    if kind == "timestamp":
        return parse_time(value)
    raise ValueError(f"unsupported kind {kind}")


def _date(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE_RE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError("expected an ISO 8601 date YYYY-MM-DD")


def parse_time(value: Any) -> datetime:
    """An ISO 8601 time with offset (or aware datetime) as UTC; ValueError otherwise."""
    parsed: datetime | None = None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and "T" in value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
    if parsed is None or parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("expected an ISO 8601 time with a UTC offset, e.g. 2001-02-03T04:05:06Z")
    return parsed.astimezone(UTC)


def to_json(info: FieldInfo, value: Any) -> Any:
    """Convert an Avro Python value of this field to its EVENTS.md JSON form."""
    if value is None:
        return None
    if info.is_array:
        return [_json_scalar(item) for item in value]
    return _json_scalar(value)


def _json_scalar(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def format_time(value: datetime) -> str:
    """ISO 8601 UTC with a `Z`, microseconds only when present."""
    text = value.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"
