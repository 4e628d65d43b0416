"""Decoding disclosure values: one pass over many fields, yet every value's boundary checked."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from broker.schemas import EncodingError, SchemaRegistry

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "events"
EVENT = "child.missing.started"


def _examples() -> list[dict[str, Any]]:
    events = []
    for path in sorted(EXAMPLES.glob("*.jsonl")):
        events += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return events


def _pairs(registry: SchemaRegistry, event: dict[str, Any]) -> list[tuple[str, bytes]]:
    event_type = event["event_type"]
    values = registry.validate_fields(event_type, event["fields"])
    return [(name, registry.encode_value(event_type, name, v)) for name, v in values.items()]


def test_one_pass_reads_what_field_by_field_reads_for_any_subset_and_order() -> None:
    registry = SchemaRegistry.default()
    rng = random.Random(7)
    events = _examples()
    assert {e["event_type"] for e in events} >= {EVENT, "nrm.referral.submitted"}
    for event in events:
        writer = registry.writer(registry.fingerprint(event["event_type"]))
        pairs = _pairs(registry, event)
        for _ in range(5):
            chosen = rng.sample(pairs, rng.randint(1, len(pairs)))
            assert writer.decode_values(chosen) == writer._decode_each(chosen)


def test_bytes_moved_from_one_value_to_the_next_are_refused() -> None:
    """`clothing` and `associates` are optional strings. Moving the last byte of one value to
    the front of the next keeps the concatenation decodable (to the same two strings), so a
    decoder that only checks the total would accept two values that are each malformed."""
    registry = SchemaRegistry.default()
    writer = registry.writer(registry.fingerprint(EVENT))
    clothing = registry.encode_value(EVENT, "clothing", "ab")
    associates = registry.encode_value(EVENT, "associates", "c")
    shifted = [("clothing", clothing[:-1]), ("associates", clothing[-1:] + associates)]
    assert b"".join(v for _, v in shifted) == clothing + associates
    assert writer.decode_values([("clothing", clothing), ("associates", associates)]) == {
        "clothing": "ab",
        "associates": "c",
    }
    with pytest.raises(EncodingError, match="'clothing'"):
        writer.decode_values(shifted)


def test_a_value_with_a_trailing_byte_is_refused_and_named() -> None:
    registry = SchemaRegistry.default()
    writer = registry.writer(registry.fingerprint(EVENT))
    good = registry.encode_value(EVENT, "clothing", "ab")
    with pytest.raises(EncodingError, match="'clothing' is not exactly one value"):
        writer.decode_values([("risk_level", registry.encode_value(EVENT, "risk_level", "high")),
                              ("clothing", good + b"\x00")])  # fmt: skip
