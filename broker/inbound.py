"""The one validation path for events arriving from outside: `broker publish` (files and standard
input), the drop folder and the HTTP intake all turn raw bytes into events here.

Each raw line (or HTTP body) becomes either an event (a JSON object, not yet schema-checked: the
issuer does that) or a `Rejection`: a reason code and a message that names the line, the key and
the problem, never a value. Nothing here raises on bad input, whatever the bytes; callers report
the rejection and carry on with the next line. The catalogue of what is refused, and why, is
docs/bad-input.md.

Text rules: identifiers (the envelope keys and the payload's reference fields, see
`is_identifier`) refuse every control and format character (NUL, C0/C1 controls, bidi overrides
and isolates, zero-width characters, line separators); free-text fields refuse NUL, escapes and
other control characters except tab and newline, and bidi overrides. Lone surrogates (which JSON
can spell but UTF-8 cannot carry) are refused everywhere.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

KAFKA_MAX_RECORD_BYTES = 1_048_588
"""Kafka's default `max.message.bytes`, which the ingress topics keep."""

DEFAULT_MAX_LINE_BYTES = 256 * 1024
"""Per-line limit: a quarter of what Kafka takes per record, leaving room for the envelope."""

# Reason codes (stable: tests, reports and the HTTP answers use them).
TOO_LARGE = "too_large"
NOT_UTF8 = "not_utf8"
NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
TOO_DEEP = "too_deep"
NUMBER_TOO_LARGE = "number_too_large"
NOT_FINITE = "not_finite"
DUPLICATE_KEY = "duplicate_key"
BAD_IDENTIFIER = "bad_identifier"
BAD_TEXT = "bad_text"

# Envelope keys and payload fields that are references, not prose: no control or format
# character has any business in them, and each could spoof what a reader sees.
IDENTIFIER_KEYS = frozenset({"event_type", "event_id", "subject", "occurred_at"})
IDENTIFIER_FIELDS = frozenset(
    {
        "la_child_id",
        "upn",
        "police_ref",
        "referral_id",
        "photo_ref",
        "first_responder",
        "force",
        "police_force",
        "local_authority",
        "guardian_service",
        "phone_numbers",
    }
)
_IDENTIFIER_SUFFIXES = ("_id", "_ref", "_reference", "postcode", "postcode_district")

# Bidi embeddings/overrides/isolates: they reorder what a reader sees ("Trojan source").
_BIDI_CONTROLS = frozenset(
    chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
)
_TEXT_ALLOWED_CONTROLS = frozenset("\t\n\r")
# Fast paths for ASCII text (nearly all of it): the only characters the rules refuse there.
_ASCII_IDENTIFIER_BAD = re.compile(r"[\x00-\x1f\x7f]")
_ASCII_TEXT_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one inbound line or body. `max_line_bytes` is configurable (`--max-line-bytes`)."""

    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    max_depth: int = 8
    max_number_digits: int = 40

    def __post_init__(self) -> None:
        if not 0 < self.max_line_bytes < KAFKA_MAX_RECORD_BYTES:
            raise ValueError(
                f"the per-line limit must be between 1 and {KAFKA_MAX_RECORD_BYTES - 1} bytes "
                f"(Kafka accepts at most {KAFKA_MAX_RECORD_BYTES} bytes per record)"
            )


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one line (or body, or array element) was refused. `message` holds no value."""

    code: str
    message: str
    line: int | None = None

    def at(self, line: int | None) -> Rejection:
        return Rejection(self.code, self.message, line)

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.message} [{self.code}]"


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def is_identifier(name: str) -> bool:
    """Whether a key or payload field holds a reference (strict) rather than free text."""
    return (
        name in IDENTIFIER_KEYS
        or name in IDENTIFIER_FIELDS
        or name.endswith(_IDENTIFIER_SUFFIXES)
    )


def parse_line(
    raw: bytes, line: int | None = None, limits: Limits = DEFAULT_LIMITS
) -> dict[str, Any] | Rejection:
    """One JSON-lines line (trailing newline allowed) as an event object, or why not."""
    result = _parse(raw, limits, limits.max_line_bytes, "line")
    if isinstance(result, Rejection):
        return result.at(line)
    if not isinstance(result, dict):
        return Rejection(NOT_OBJECT, "not a JSON object: one event object per line", line)
    problem = check_event(result)
    return problem.at(line) if problem is not None else result


def parse_body(
    raw: bytes, limits: Limits = DEFAULT_LIMITS, *, max_bytes: int | None = None
) -> list[dict[str, Any] | Rejection] | Rejection:
    """An HTTP body (one event object or an array of them) as one entry per event, or why the
    whole body is refused. Array elements are checked one by one: a bad one is a `Rejection` in
    its place (its `line` is the array index) and the others still go through."""
    result = _parse(raw, limits, max_bytes if max_bytes is not None else limits.max_line_bytes,
                    "body")
    if isinstance(result, Rejection):
        return result
    items = result if isinstance(result, list) else [result]
    out: list[dict[str, Any] | Rejection] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            out.append(Rejection(NOT_OBJECT, "not a JSON object: send event objects", index))
            continue
        problem = check_event(item)
        out.append(problem.at(index) if problem is not None else item)
    return out


def check_event(event: dict[str, Any]) -> Rejection | None:
    """The text rules over an already-decoded event: None when it passes."""
    for key, value in event.items():
        if key == "fields" and isinstance(value, dict):
            for name, field_value in value.items():
                problem = _check_value(f"field '{name}'", field_value, is_identifier(name))
                if problem is not None:
                    return problem
        else:
            problem = _check_value(f"event key '{key}'", value, is_identifier(key))
            if problem is not None:
                return problem
    return None


def read_lines(
    stream: LineSource, limits: Limits = DEFAULT_LIMITS
) -> Iterator[tuple[int, bytes | Rejection]]:
    """Non-blank lines of a binary stream as `(number, bytes)`, or a `Rejection` for a line over
    the limit: never holds more than `max_line_bytes` + 1 bytes of one line in memory."""
    number = 0
    while True:
        chunk = stream.readline(limits.max_line_bytes + 1)
        if not chunk:
            return
        number += 1
        if len(chunk) > limits.max_line_bytes and not chunk.endswith(b"\n"):
            size = len(chunk)
            while chunk and not chunk.endswith(b"\n"):  # skip the rest of the line
                chunk = stream.readline(1 << 16)
                size += len(chunk)
            size -= 1 if chunk.endswith(b"\n") else 0
            yield number, too_large(size, limits.max_line_bytes, "line").at(number)
            continue
        if chunk.strip():
            yield number, chunk


def too_large(size: int, limit: int, what: str) -> Rejection:
    return Rejection(
        TOO_LARGE,
        f"{what} of {size} bytes is over the limit of {limit} bytes (Kafka takes at most "
        f"{KAFKA_MAX_RECORD_BYTES} bytes per record; the limit leaves room for the envelope): "
        "split or shorten it, or raise --max-line-bytes",
    )


def _parse(raw: bytes, limits: Limits, max_bytes: int, what: str) -> Any:
    """Decode and parse bounded JSON; a `Rejection` instead of any exception."""
    body = raw[:-1] if raw.endswith(b"\n") else raw
    body = body[:-1] if body.endswith(b"\r") else body
    if len(body) > max_bytes:
        return too_large(len(body), max_bytes, what)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(
            NOT_UTF8,
            f"not UTF-8 (bad byte at offset {exc.start}): save the file as UTF-8",
        )
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark some editors write
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=lambda s: _int(s, limits),
            parse_float=lambda s: _float(s, limits),
            parse_constant=_constant,
        )
    except _Refused as exc:
        return Rejection(exc.code, exc.message)
    except RecursionError:
        return Rejection(TOO_DEEP, f"nested too deeply (at most {limits.max_depth} levels)")
    except json.JSONDecodeError as exc:
        return Rejection(NOT_JSON, f"not valid JSON (column {exc.colno}): fix the {what}")
    except ValueError:  # e.g. an integer past the interpreter's digit limit
        return Rejection(
            NUMBER_TOO_LARGE, f"a number has more than {limits.max_number_digits} digits"
        )
    if _depth(value, limits.max_depth + 1) > limits.max_depth:
        return Rejection(TOO_DEEP, f"nested too deeply (at most {limits.max_depth} levels)")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(
                DUPLICATE_KEY, "a key appears twice in one object: which one is meant is unclear"
            )
        out[key] = value
    return out


def _int(text: str, limits: Limits) -> int:
    if len(text.lstrip("-")) > limits.max_number_digits:
        raise _Refused(
            NUMBER_TOO_LARGE, f"a number has more than {limits.max_number_digits} digits"
        )
    return int(text)


def _float(text: str, limits: Limits) -> float:
    if len(text) > limits.max_number_digits + 8:
        raise _Refused(
            NUMBER_TOO_LARGE, f"a number has more than {limits.max_number_digits} digits"
        )
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(NOT_FINITE, "a number is too large to represent (overflows to infinity)")
    return value


def _constant(text: str) -> Any:
    raise _Refused(NOT_FINITE, f"{text} is not a JSON number: send a finite number or null")


def _depth(value: Any, cap: int) -> int:
    """Nesting depth of a decoded value, counting no further than `cap`."""
    if cap <= 0 or not isinstance(value, dict | list):
        return 0
    children = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(child, cap - 1) for child in children), default=0)


def _check_value(where: str, value: Any, identifier: bool) -> Rejection | None:
    if isinstance(value, str):
        return _check_text(where, value, identifier)
    if isinstance(value, list):
        for item in value:
            problem = _check_value(where, item, identifier)
            if problem is not None:
                return problem
    elif isinstance(value, dict):
        for key, item in value.items():
            problem = _check_text(f"a key inside {where}", key, True) or _check_value(
                where, item, identifier
            )
            if problem is not None:
                return problem
    return None


def text_problem(text: str, *, identifier: bool) -> str | None:
    """Why `text` breaks the identifier (or free-text) rules, naming the code point and never
    the text; None when it passes. For connectors that report problems their own way."""
    problem = _check_text("value", text, identifier)
    return None if problem is None else problem.message.removeprefix("value: ")


def _check_text(where: str, text: str, identifier: bool) -> Rejection | None:
    """The first character the rules refuse in `text`, named by code point (never the text)."""
    if text.isascii():
        bad = (_ASCII_IDENTIFIER_BAD if identifier else _ASCII_TEXT_BAD).search(text)
        if bad is None:
            return None
        text = bad.group(0)
    for char in text:
        category = unicodedata.category(char)
        if category == "Cs":
            return Rejection(
                BAD_TEXT if not identifier else BAD_IDENTIFIER,
                f"{where}: holds a lone surrogate (U+{ord(char):04X}), which is not a "
                "character: fix the encoding at the source",
            )
        if identifier:
            if category in ("Cc", "Cf", "Zl", "Zp", "Co", "Cn"):
                return Rejection(
                    BAD_IDENTIFIER,
                    f"{where}: identifiers may not hold control, format or unassigned "
                    f"characters (found U+{ord(char):04X} {_char_name(char)}): remove it",
                )
        elif (category == "Cc" and char not in _TEXT_ALLOWED_CONTROLS) or char in _BIDI_CONTROLS:
            return Rejection(
                BAD_TEXT,
                f"{where}: text may not hold NUL, escape or other control characters, nor "
                f"bidi overrides (found U+{ord(char):04X} {_char_name(char)}): remove it",
            )
    return None


def _char_name(char: str) -> str:
    special = {0: "NUL", 0x1B: "ESCAPE", 0x9B: "CSI"}.get(ord(char))
    return special if special is not None else unicodedata.name(char, "a control character")


class LineSource(Protocol):
    """What `read_lines` reads: a binary file, standard input's buffer, a bounded snapshot."""

    def readline(self, limit: int = -1, /) -> bytes: ...
