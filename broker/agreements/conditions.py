"""CEL conditions of agreement rules: compiled once, evaluated per event and candidate recipient.

The names a condition may use are the fields of its event types and `CONTEXT_NAMES`. A field
that is absent from an event, or null, is `null` in CEL: compare it explicitly
(`trafficking_concern == true`, `la_child_id != null`). Using a null as a boolean or in
arithmetic is a run-time error, which denies that rule for that recipient and is reported; it
never crashes the router.

Value mapping (Avro-decoded Python -> CEL): str, int, float, bool, None as themselves; aware
datetimes as CEL timestamps; dates as ISO strings (`"2026-11-24"`, ordered like dates); sets and
tuples as lists; mappings as maps; decimals as doubles; UUIDs as strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

import cel

# Names the router supplies beside the event's fields. `guardians` and `nrm_referrers` come from
# earlier events about the same subject (see `SubjectContext`).
EVENT_NAMES = frozenset({"issuer", "recipient", "event_type", "occurred_at", "now"})
SUBJECT_NAMES = frozenset({"guardians", "nrm_referrers"})
CONTEXT_NAMES = EVENT_NAMES | SUBJECT_NAMES

# Functions this CEL implementation provides (checked by evaluating each one); operators are
# reported with `_`, `!_`, `-_` or `@` names and are always allowed.
KNOWN_FUNCTIONS = frozenset({
    "size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double", "string",
    "bytes", "timestamp", "duration", "dyn", "type", "getFullYear", "getMonth", "getDate",
    "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getHours", "getMinutes", "getSeconds",
    "getMilliseconds",
})

# Variables bound by comprehension macros (`list.exists(x, ...)`) are not context names.
_BOUND = re.compile(
    r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,"
)

# Run-time failures, by exception class, described without the library's message: that message
# can quote the offending value, which may be personal data.
_FAILURES: Mapping[type[BaseException], str] = {
    TypeError: "an operand is null or of the wrong type for its operator",
    ZeroDivisionError: "division by zero",
    RuntimeError: "a name or function is undefined, or a conversion failed",
    ValueError: "a value could not be converted for CEL",
    OverflowError: "numeric overflow",
}


class Values(Protocol):
    """Where a condition looks up the names it uses (a dict will do)."""

    def get(self, name: str, /) -> Any: ...


class ConditionSyntaxError(ValueError):
    """A condition that does not compile; the message is the compiler's (agreement text only)."""


class ConditionFailed(Exception):
    """A condition that failed at run time; `reason` holds no value from the event."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled condition and the names it uses."""

    source: str
    program: Any  # cel.Program; the extension module ships no usable type for mypy
    names: tuple[str, ...]
    functions: tuple[str, ...]

    def unknown_functions(self) -> list[str]:
        """Functions used that this CEL implementation does not provide."""
        return [f for f in self.functions if not _is_operator(f) and f not in KNOWN_FUNCTIONS]

    def evaluate(self, values: Values) -> bool:
        """Evaluate with `values` (already CEL-ready); a missing name is null."""
        variables = {name: values.get(name) for name in self.names}
        try:
            result = self.program.execute(variables)
        except Exception as exc:  # the CEL extension raises several builtin types; see _FAILURES
            reason = next((text for kind, text in _FAILURES.items() if isinstance(exc, kind)),
                          f"evaluation failed ({exc.__class__.__name__})")
            raise ConditionFailed(reason) from None
        if not isinstance(result, bool):
            raise ConditionFailed("the condition did not give true or false")
        return result


def compile_condition(source: str) -> Condition:
    """Compile `source` once; raise `ConditionSyntaxError` if it is not valid CEL."""
    try:
        program = cel.compile(source)
    except Exception as exc:  # the extension raises ValueError, but be safe with any parser error
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ConditionSyntaxError(first) from None
    bound = set(_BOUND.findall(source))
    names = tuple(n for n in program.variables() if n not in bound)
    return Condition(source, program, names, tuple(program.functions()))


def to_cel(value: Any) -> Any:
    """Convert an Avro-decoded Python value into one CEL accepts (see the module docstring)."""
    if value is None or isinstance(value, str | bool | int | float | bytes):
        return value
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(to_cel(v) for v in value)
    if isinstance(value, list | tuple):
        return [to_cel(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_cel(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return float(value)
    return str(value)  # UUID and other scalar logical types compare as their text


def _is_operator(name: str) -> bool:
    return name.startswith(("_", "!_", "-_", "@"))
