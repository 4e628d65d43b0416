"""Decision records: canonical bytes, strict decoding, the fast header, and the .avsc file."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import timedelta, timezone
from pathlib import Path

import pytest
from audit_samples import T0, TOPIC, make_chain
from hypothesis import given
from hypothesis import strategies as st

from broker.audit.exceptions import RecordFormatError
from broker.audit.record import (
    DECISION_SCHEMA,
    ZERO_HASH,
    ConditionError,
    DecisionRecord,
    Outcome,
    RecipientDecision,
    read_header,
)

REPO = Path(__file__).resolve().parents[3]


def _record(**changes: object) -> DecisionRecord:
    base = DecisionRecord(
        chain=f"{TOPIC}/0",
        seq=0,
        prev_hash=ZERO_HASH,
        ingress_topic=TOPIC,
        ingress_partition=0,
        ingress_offset=7,
        decided_at=T0,
        outcome=Outcome.QUARANTINED,
        reason="bad_signature",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_round_trip_and_hash() -> None:
    record = make_chain(3)[2]
    data = record.to_bytes()
    again = DecisionRecord.from_bytes(data)
    assert again == record
    assert again.to_bytes() == data
    assert record.record_hash == hashlib.sha256(data).digest()
    assert again.to_json_dict() == record.to_json_dict()


def test_encoding_is_canonical_whatever_the_input_order() -> None:
    a = _record(
        digests=("bb" * 32, "aa" * 32),
        recipients=(
            RecipientDecision("police.met", ("b", "a"), ("z", "y"), (), ("x@2", "w@1")),
            RecipientDecision("nrm.sca"),
        ),
        condition_errors=(ConditionError("b@1", "type_error"), ConditionError("a@1", "x")),
    )
    b = _record(
        digests=("AA" * 32, "bb" * 32),
        recipients=(
            RecipientDecision("nrm.sca"),
            RecipientDecision("police.met", ("a", "b"), ("y", "z"), (), ("w@1", "x@2")),
        ),
        condition_errors=(ConditionError("a@1", "x"), ConditionError("b@1", "type_error")),
    )
    assert a.to_bytes() == b.to_bytes()
    assert a.recipients[0].recipient == "nrm.sca"


def test_times_are_normalised_to_utc() -> None:
    plus_one = timezone(timedelta(hours=1))
    assert _record(decided_at=T0.astimezone(plus_one)).to_bytes() == _record().to_bytes()


@pytest.mark.parametrize(
    "changes",
    [
        {"prev_hash": b"short"},
        {"seq": -1},
        {"outcome": "lost"},
        {"reason": None},  # quarantined needs a reason code
        {"decided_at": T0.replace(tzinfo=None)},
        {"digests": ("xyz",)},
        {"digests": ("aa" * 32, "aa" * 32)},
        {"recipients": (RecipientDecision("a"), RecipientDecision("a"))},
        {"chain": "Jane Smith"},
    ],
)
def test_invalid_records_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError) as err:
        _record(**changes)
    assert "Jane" not in str(err.value)


def test_from_bytes_refuses_damage() -> None:
    data = make_chain(1)[0].to_bytes()
    with pytest.raises(RecordFormatError):
        DecisionRecord.from_bytes(data + b"\x00")
    with pytest.raises(RecordFormatError):
        DecisionRecord.from_bytes(data[:-3])
    with pytest.raises(RecordFormatError):
        DecisionRecord.from_bytes(b"\xc3\x01" + bytes(8) + data[10:])


def test_from_bytes_refuses_non_canonical_order() -> None:
    import io

    from fastavro import parse_schema, schemaless_writer

    record = _record(digests=("aa" * 32, "bb" * 32))
    datum = record._to_avro()
    datum["digests"] = list(reversed(datum["digests"]))
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(DECISION_SCHEMA), datum)
    with pytest.raises(RecordFormatError, match="canonical"):
        DecisionRecord.from_bytes(record.to_bytes()[:10] + buf.getvalue())


def test_errors_never_echo_values() -> None:
    record = _record(subject="Jane Smith 2014-03-02")
    data = record.to_bytes()
    i = data.index(b"Jane")
    for bad in (data[:i] + b"\xff\xfe" + data[i + 2 :], data[: i + 3]):
        with pytest.raises(RecordFormatError) as err:
            DecisionRecord.from_bytes(bad)
        assert "Jane" not in str(err.value)


@given(
    seq=st.integers(0, 2**62),
    partition=st.integers(0, 10_000),
    prev=st.binary(min_size=32, max_size=32),
)
def test_fast_header_agrees_with_full_decode(seq: int, partition: int, prev: bytes) -> None:
    record = _record(seq=seq, prev_hash=prev, chain=f"{TOPIC}/{partition}")
    header = read_header(record.to_bytes())
    assert (header.chain, header.seq, header.prev_hash) == (record.chain, seq, prev)


def test_schema_registry_knows_the_record() -> None:
    from broker.audit.record import DECISION_HEADER
    from broker.schemas import SchemaRegistry

    registry = SchemaRegistry.default()
    assert registry.fingerprint("uk.safeguarding.audit.Decision") == DECISION_HEADER[2:]
    name, datum = registry.decode(make_chain(1)[0].to_bytes())
    assert name == "uk.safeguarding.audit.Decision"
    assert datum["seq"] == 0


def test_record_has_no_field_for_values() -> None:
    # Structural guard: the record describes fields by name only; any new field is a review point.
    names = {f["name"] for f in DECISION_SCHEMA["fields"]}
    assert names == {
        "chain", "seq", "prev_hash", "event_id", "issuer", "event_type", "subject",
        "ingress_topic", "ingress_partition", "ingress_offset", "occurred_at", "decided_at",
        "outcome", "reason", "digests", "recipients", "condition_errors",
        "registry_keys", "registry_agreements",  # version 2: two offsets, no values
    }  # fmt: skip


def test_version_2_records_carry_the_registry_position() -> None:
    import dataclasses

    from broker.audit.record import DECISION_HEADER, decode_fields

    record = dataclasses.replace(_record(), registry_keys=7, registry_agreements=3)
    data = record.to_bytes()
    assert data.startswith(DECISION_HEADER)
    again = DecisionRecord.from_bytes(data)
    assert (again.registry_keys, again.registry_agreements, again.schema_version) == (7, 3, 2)
    assert decode_fields(data)["registry_keys"] == 7
    assert again.to_json_dict()["registry_agreements"] == 3


def test_version_1_records_stay_readable_and_keep_their_hash() -> None:
    import dataclasses
    import hashlib

    from broker.audit.record import DECISION_HEADER, DECISION_HEADER_V1, decode_fields

    old = dataclasses.replace(_record(), schema_version=1)
    data = old.to_bytes()
    assert data.startswith(DECISION_HEADER_V1) and DECISION_HEADER_V1 != DECISION_HEADER
    again = DecisionRecord.from_bytes(data)
    assert again.schema_version == 1 and again.registry_keys is None
    assert again.record_hash == hashlib.sha256(data).digest()
    assert read_header(data).seq == old.seq
    assert decode_fields(data)["registry_agreements"] is None
    with pytest.raises(ValueError):
        dataclasses.replace(_record(), schema_version=1, registry_keys=1)


def test_a_chain_may_continue_from_version_1_records_into_version_2() -> None:
    import dataclasses

    from broker.audit.chain import ChainState

    first = dataclasses.replace(make_chain(1)[0], schema_version=1)
    state = ChainState(first.chain)
    state.resume([first.to_bytes()])
    second = state.append(
        ingress_topic=first.ingress_topic,
        ingress_partition=first.ingress_partition,
        ingress_offset=first.ingress_offset + 1,
        decided_at=first.decided_at,
        outcome="denied",
        reason="no_agreement",
        registry_keys=0,
        registry_agreements=0,
    )
    assert second.prev_hash == first.record_hash and second.schema_version == 2
