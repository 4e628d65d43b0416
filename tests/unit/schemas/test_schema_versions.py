"""Writer schemas of released versions: lookup by fingerprint, decoding resolved to current."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from broker.schemas import SchemaLoadError, SchemaRegistry, UnknownSchemaError
from broker.schemas.registry import default_released_dir, default_schema_dir

PLACEMENT = "child.placement.changed"
ADDED_SINCE_V1 = ("legal_status", "reason_new_episode")


@pytest.fixture(scope="module")
def v1() -> SchemaRegistry:
    return SchemaRegistry.from_dir(default_released_dir() / "v1")


def test_default_registry_knows_every_released_payload_fingerprint(v1: SchemaRegistry) -> None:
    registry = SchemaRegistry.default()
    for event_type in v1.event_types():
        fingerprint = v1.fingerprint(event_type)
        assert registry.event_type_for(fingerprint) == event_type
        assert registry.writer(fingerprint).field_count == len(v1.fields(event_type))


def test_placement_v1_is_an_older_version_lacking_the_new_fields(v1: SchemaRegistry) -> None:
    registry = SchemaRegistry.default()
    old = registry.writer(v1.fingerprint(PLACEMENT))
    current = registry.writer(registry.fingerprint(PLACEMENT))
    assert old.fingerprint != current.fingerprint
    assert (old.version, old.is_current) == ("v1", False)
    assert (current.version, current.is_current) == ("current", True)
    assert old.missing == ADDED_SINCE_V1 and current.missing == ()
    assert old.field_count == len(registry.fields(PLACEMENT)) - len(ADDED_SINCE_V1)
    assert list(old.fields()) == [n for n in registry.fields(PLACEMENT) if n not in ADDED_SINCE_V1]
    assert registry.versions(PLACEMENT) == [old, current]


def test_unchanged_schemas_have_one_version_the_current_one() -> None:
    registry = SchemaRegistry.default()
    (only,) = registry.versions("child.missing.started")
    assert only.is_current


def test_current_only_registry_does_not_know_released_fingerprints(v1: SchemaRegistry) -> None:
    current_only = SchemaRegistry.from_dir(default_schema_dir())
    with pytest.raises(UnknownSchemaError):
        current_only.event_type_for(v1.fingerprint(PLACEMENT))


def test_unknown_fingerprint_is_still_unknown() -> None:
    registry = SchemaRegistry.default()
    with pytest.raises(UnknownSchemaError):
        registry.writer(bytes(8))
    with pytest.raises(UnknownSchemaError):
        registry.event_type_for(registry.fingerprint("uk.safeguarding.envelope.Envelope"))


def test_values_written_with_v1_decode_with_the_default_registry(v1: SchemaRegistry) -> None:
    values = v1.validate_fields(
        PLACEMENT, {"la_child_id": "c-1", "placement_type": "A3", "reason": "CARPL"}
    )
    items = [(name, v1.encode_value(PLACEMENT, name, value)) for name, value in values.items()]
    decoded = SchemaRegistry.default().writer(v1.fingerprint(PLACEMENT)).decode_values(items)
    assert decoded == values
    assert not set(ADDED_SINCE_V1) & set(decoded)


# A miniature evolution: a type promotion, an enum gaining a symbol, a field removed, a field added.
_OLD_EVENT = {
    "type": "record",
    "name": "Thing",
    "namespace": "test.events",
    "event_type": "test.thing",
    "fields": [
        {"name": "count", "type": "int"},
        {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["red", "blue"]}},
        {"name": "old_note", "type": ["null", "string"], "default": None},
    ],
}
_NEW_EVENT = {
    **_OLD_EVENT,
    "fields": [
        {"name": "count", "type": "double"},
        {
            "name": "colour",
            "type": {"type": "enum", "name": "Colour", "symbols": ["red", "blue", "green"]},
        },
        {"name": "new_note", "type": ["null", "string"], "default": None},
    ],
}
_OLD_MESSAGE = {
    "type": "record",
    "name": "Message",
    "namespace": "test.wire",
    "fields": [{"name": "a", "type": "string"}],
}
_NEW_MESSAGE = {
    **_OLD_MESSAGE,
    "fields": [
        {"name": "a", "type": "string"},
        {"name": "b", "type": ["null", "long"], "default": None},
    ],
}


def _write(directory: Path, *schemas: dict[str, Any]) -> Path:
    directory.mkdir(parents=True)
    for schema in schemas:
        (directory / f"{schema['name']}.avsc").write_text(json.dumps(schema))
    return directory


@pytest.fixture()
def evolved(tmp_path: Path) -> tuple[SchemaRegistry, SchemaRegistry]:
    """(registry of the old release alone, current registry that also loads the release)."""
    released = _write(tmp_path / "released" / "v1", _OLD_EVENT, _OLD_MESSAGE)
    current = _write(tmp_path / "avro", _NEW_EVENT, _NEW_MESSAGE)
    return SchemaRegistry.from_dir(released), SchemaRegistry.from_dir(current, released.parent)


def test_field_values_resolve_to_the_current_types(
    evolved: tuple[SchemaRegistry, SchemaRegistry],
) -> None:
    old, registry = evolved
    values = old.validate_fields("test.thing", {"count": 3, "colour": "blue", "old_note": "x"})
    items = [(n, old.encode_value("test.thing", n, v)) for n, v in values.items()]
    writer = registry.writer(old.fingerprint("test.thing"))
    decoded = writer.decode_values(items)
    # int 3 read as the current double; the removed field is checked but left out.
    assert decoded == {"count": 3.0, "colour": "blue"}
    assert isinstance(decoded["count"], float)
    assert writer.missing == ("new_note",) and writer.field_count == 3


def test_released_message_decodes_with_current_defaults(
    evolved: tuple[SchemaRegistry, SchemaRegistry],
) -> None:
    old, registry = evolved
    data = old.encode("test.wire.Message", {"a": "hello"})
    assert registry.decode(data, expected="test.wire.Message") == (
        "test.wire.Message",
        {"a": "hello", "b": None},
    )


def test_released_schema_removed_since_is_a_load_error(tmp_path: Path) -> None:
    released = _write(tmp_path / "released" / "v1", _OLD_EVENT, _OLD_MESSAGE)
    current = _write(tmp_path / "avro", _NEW_EVENT)
    with pytest.raises(SchemaLoadError, match="Message"):
        SchemaRegistry.from_dir(current, released.parent)
