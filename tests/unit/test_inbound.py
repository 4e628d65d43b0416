"""broker/inbound.py: the one validation path of publish, the drop folder and the HTTP intake.

Each case is a class of docs/bad-input.md; the personal-looking value in each must never
appear in the message.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from broker.inbound import (
    BAD_IDENTIFIER,
    BAD_TEXT,
    DEFAULT_LIMITS,
    DUPLICATE_KEY,
    KAFKA_MAX_RECORD_BYTES,
    NOT_FINITE,
    NOT_JSON,
    NOT_OBJECT,
    NOT_UTF8,
    NUMBER_TOO_LARGE,
    TOO_DEEP,
    TOO_LARGE,
    Limits,
    Rejection,
    check_event,
    is_identifier,
    parse_body,
    parse_line,
    read_lines,
    text_problem,
)

NAME = "Bobbie Secretname"


def event(**fields: Any) -> dict[str, Any]:
    return {
        "event_type": "child.missing.started",
        "subject": "C1",
        "occurred_at": "2026-11-24T18:05:00Z",
        "fields": {"la_child_id": "C1", "first_name": NAME, **fields},
    }


def line(value: Any) -> bytes:
    return json.dumps(value).encode() + b"\n"


def rejected(result: object, code: str) -> Rejection:
    assert isinstance(result, Rejection), result
    assert result.code == code, result
    assert NAME not in result.message and "Secretname" not in str(result)
    return result


def test_a_good_line_is_the_event() -> None:
    assert parse_line(line(event()), 1) == event()


def test_bom_and_crlf_are_accepted() -> None:
    assert parse_line(b"\xef\xbb\xbf" + json.dumps(event()).encode() + b"\r\n") == event()


def test_over_the_line_limit_names_both_limits() -> None:
    raw = line(event(physical_description="x" * 300_000))
    result = rejected(parse_line(raw, 7), TOO_LARGE)
    assert result.line == 7
    assert str(DEFAULT_LIMITS.max_line_bytes) in result.message
    assert str(KAFKA_MAX_RECORD_BYTES) in result.message
    assert "--max-line-bytes" in result.message


def test_the_limit_is_configurable_but_below_kafkas() -> None:
    small = Limits(max_line_bytes=100)
    rejected(parse_line(line(event()), 1, small), TOO_LARGE)
    with pytest.raises(ValueError, match=str(KAFKA_MAX_RECORD_BYTES)):
        Limits(max_line_bytes=KAFKA_MAX_RECORD_BYTES)
    assert DEFAULT_LIMITS.max_line_bytes < KAFKA_MAX_RECORD_BYTES


def test_latin1_is_not_utf8_with_the_offset() -> None:
    raw = json.dumps(event(first_name="Zoë"), ensure_ascii=False).encode("latin-1")
    result = rejected(parse_line(raw, 2), NOT_UTF8)
    assert "offset" in result.message and "UTF-8" in result.message


@pytest.mark.parametrize(
    "raw",
    [b'{"event_type": "x", ', b"\x00\x01\x02binary", b"{'single': 'quotes'}", b"{}garbage"],
)
def test_not_json_names_the_column(raw: bytes) -> None:
    assert "column" in rejected(parse_line(raw), NOT_JSON).message


def test_raw_control_character_inside_a_json_string_is_not_json() -> None:
    rejected(parse_line(b'{"subject": "a\x00b"}'), NOT_JSON)


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"42", b"null"])
def test_not_an_object(raw: bytes) -> None:
    rejected(parse_line(raw), NOT_OBJECT)


@pytest.mark.parametrize("depth", [9, 100, 100_000])
def test_too_deep(depth: int) -> None:
    raw = b'{"fields": ' + b"[" * depth + b"]" * depth + b"}"
    rejected(parse_line(raw, limits=Limits(max_line_bytes=500_000)), TOO_DEEP)


def test_huge_integer() -> None:
    rejected(parse_line(b'{"fields": {"birth_year": ' + b"9" * 100_000 + b"}}",
                        limits=Limits(max_line_bytes=500_000)), NUMBER_TOO_LARGE)
    rejected(parse_line(b'{"a": 1' + b"0" * 60 + b"}"), NUMBER_TOO_LARGE)


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_numbers(number: bytes) -> None:
    rejected(parse_line(b'{"a": ' + number + b"}"), NOT_FINITE)


def test_duplicate_keys() -> None:
    rejected(parse_line(b'{"subject": "A", "subject": "B"}'), DUPLICATE_KEY)
    rejected(parse_line(b'{"fields": {"la_child_id": "A", "la_child_id": "B"}}'), DUPLICATE_KEY)


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("subject", "X\u0000'; DROP TABLE--", "U+0000 NUL"),
        ("event_id", "evt\u202e1", "U+202E"),
        ("subject", "C\u200b1", "U+200B"),
        ("event_type", "child.missing.started\n", "U+000A"),
        ("subject", "C\u00851", "U+0085"),
        ("subject", "C\u20281", "U+2028"),
    ],
)
def test_identifiers_refuse_control_and_format_characters(
    key: str, value: str, shown: str
) -> None:
    result = rejected(parse_line(line({**event(), key: value}), 3), BAD_IDENTIFIER)
    assert f"event key '{key}'" in result.message and shown in result.message
    assert value not in result.message


@pytest.mark.parametrize("field", ["la_child_id", "police_ref", "placement_postcode", "upn"])
def test_reference_fields_are_identifiers(field: str) -> None:
    assert is_identifier(field)
    rejected(parse_line(line(event(**{field: "AB\u202e12"}))), BAD_IDENTIFIER)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("Bob\u0000", "U+0000 NUL"),
        ("Bob\u202e", "U+202E"),
        ("Bob\u001b[31m", "U+001B ESCAPE"),
        ("Bob\u009b31m", "U+009B CSI"),
        ("Bob\u0007", "U+0007"),
        ("Bob\u2066", "U+2066"),
    ],
)
def test_free_text_refuses_nul_escapes_and_bidi_overrides(value: str, shown: str) -> None:
    result = rejected(parse_line(line(event(physical_description=value))), BAD_TEXT)
    assert "field 'physical_description'" in result.message and shown in result.message


@pytest.mark.parametrize(
    "value", ["O'Brien-Smith", "Zoë", "محمد", "Line one\nline two\ttabbed", "名前", "a\u200fb"]
)
def test_free_text_keeps_what_people_write(value: str) -> None:
    assert parse_line(line(event(physical_description=value))) == event(
        physical_description=value
    )


def test_lone_surrogates_are_refused_everywhere() -> None:
    rejected(parse_line(b'{"fields": {"first_name": "\\ud800"}}'), BAD_TEXT)
    rejected(parse_line(b'{"subject": "\\udfff"}'), BAD_IDENTIFIER)


def test_arrays_and_nested_keys_are_checked() -> None:
    rejected(parse_line(line(event(phone_numbers=["07000", "0\u00007"]))), BAD_IDENTIFIER)
    rejected(parse_line(line(event(associates=["ok", "x\u001b]"]))), BAD_TEXT)


def test_check_event_and_text_problem_are_the_same_rules() -> None:
    assert check_event(event()) is None
    assert isinstance(check_event(event(first_name="a\u0000")), Rejection)
    assert text_problem("C1", identifier=True) is None
    problem = text_problem("C\u202e1", identifier=True)
    assert problem is not None and "U+202E" in problem and "C\u202e1" not in problem


def test_read_lines_numbers_lines_and_skips_an_oversized_one_in_bounded_memory() -> None:
    limits = Limits(max_line_bytes=1000)
    data = b"{}\n" + b"x" * 5_000_000 + b"\n\n  \n{}\r\n" + b"y" * 1001
    out = list(read_lines(io.BytesIO(data), limits))
    assert [n for n, _ in out] == [1, 2, 5, 6]
    assert out[0][1] == b"{}\n" and out[2][1] == b"{}\r\n"
    big = out[1][1]
    assert isinstance(big, Rejection) and big.code == TOO_LARGE and big.line == 2
    assert "5000000 bytes" in big.message
    assert isinstance(out[3][1], Rejection) and out[3][1].line == 6


def test_parse_body_checks_array_elements_one_by_one() -> None:
    body = json.dumps([event(), [1], event(first_name="x\u0000"), event()]).encode()
    parsed = parse_body(body, max_bytes=10_000)
    assert isinstance(parsed, list) and len(parsed) == 4
    assert parsed[0] == event() and parsed[3] == event()
    assert isinstance(parsed[1], Rejection) and parsed[1].code == NOT_OBJECT and parsed[1].line == 1
    assert isinstance(parsed[2], Rejection) and parsed[2].code == BAD_TEXT and parsed[2].line == 2


def test_parse_body_refuses_a_whole_body_that_is_not_json_or_too_big() -> None:
    assert isinstance(parse_body(b"{", max_bytes=100), Rejection)
    big = parse_body(b"[" + b"1," * 100 + b"1]", max_bytes=50)
    assert isinstance(big, Rejection) and big.code == TOO_LARGE
    single = parse_body(json.dumps(event()).encode())
    assert single == [event()]
