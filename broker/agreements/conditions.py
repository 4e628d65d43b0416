"""CEL conditions of agreement rules: compiled once, evaluated per event and candidate recipient.

The names a condition may use are the fields of its event types and `CONTEXT_NAMES`. A field
that is absent from an event, or null, is `null` in CEL: compare it explicitly
(`trafficking_concern == true`, `la_child_id != null`). Using a null as a boolean or in
arithmetic is a run-time error, which denies that rule for that recipient and is reported; it
never crashes the router.

Value mapping (Avro-decoded Python -> CEL): str, int, float, bool, None as themselves; aware
datetimes as CEL timestamps; dates as ISO strings (`"2026-11-24"`, ordered like dates); sets and
tuples as lists; mappings as maps; decimals as doubles; UUIDs as strings.

Cost: the CEL library has no cost limit of its own, and nested comprehensions multiply (each
level of `[0,...,9].all(a, ...)` costs ten times more). So every condition's comprehensions
(`all`, `exists`, `exists_one`, `map`, `filter`) are located at compile time (in the source with
its string literals masked; the library's own parser has already accepted it) and give a bound:
a comprehension costs its range's size times (1 + the cost of the comprehensions in its body).
A literal list's size is counted; a list from the event is assumed to hold at most
`ASSUMED_LIST_SIZE` items when checking, and measured when evaluating. A condition over
`MAX_CONDITION_COST` is refused by `agreements check` and by the router's loader; at evaluation,
an event whose lists would take a condition over the limit fails that condition (the rule is
denied for that recipient and reported), before any work is done.
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


MAX_CONDITION_COST = 10_000
"""Most comprehension steps one evaluation may take (about 10 ms of the CEL library's time)."""
ASSUMED_LIST_SIZE = 50
"""Items assumed in a list whose size is known only at evaluation (an event's, a computed one)."""
MAX_CONDITION_CHARS = 4_000

_MACRO = re.compile(r"\.\s*(all|exists_one|exists|map|filter)\s*\(")
_IDENT_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)*\s*$")


class ConditionSyntaxError(ValueError):
    """A condition that does not compile; the message is the compiler's (agreement text only)."""


class ConditionTooCostly(ConditionSyntaxError):
    """A condition whose cost bound is over `MAX_CONDITION_COST` (or that is too long)."""


@dataclass(frozen=True, slots=True)
class Loop:
    """One comprehension: its range (a literal's size, or the name whose value it iterates,
    or neither: assumed) and the comprehensions in its body."""

    literal_size: int | None
    name: str | None
    body: tuple[Loop, ...]

    def cost(self, sizes: Mapping[str, int]) -> int:
        if self.literal_size is not None:
            size = self.literal_size
        elif self.name is not None:
            size = sizes.get(self.name, ASSUMED_LIST_SIZE)
        else:
            size = ASSUMED_LIST_SIZE
        return size * (1 + sum(loop.cost(sizes) for loop in self.body))


def loops_cost(loops: tuple[Loop, ...], sizes: Mapping[str, int] | None = None) -> int:
    """The cost bound of a condition's comprehensions, with known list `sizes` by name."""
    return sum(loop.cost(sizes or {}) for loop in loops)


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
    loops: tuple[Loop, ...] = ()

    @property
    def cost(self) -> int:
        """The cost bound with every event list at `ASSUMED_LIST_SIZE` items."""
        return loops_cost(self.loops)

    def unknown_functions(self) -> list[str]:
        """Functions used that this CEL implementation does not provide."""
        return [f for f in self.functions if not _is_operator(f) and f not in KNOWN_FUNCTIONS]

    def evaluate(self, values: Values) -> bool:
        """Evaluate with `values` (already CEL-ready); a missing name is null."""
        variables = {name: values.get(name) for name in self.names}
        if self.loops:
            sizes = {n: len(v) for n, v in variables.items() if isinstance(v, list | dict | str)}
            cost = loops_cost(self.loops, sizes)
            if cost > MAX_CONDITION_COST:
                raise ConditionFailed(
                    f"the event's lists would take the condition to {cost} steps, over the "
                    f"cost limit of {MAX_CONDITION_COST}"
                )
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
    """Compile `source` once; raise `ConditionSyntaxError` if it is not valid CEL and
    `ConditionTooCostly` if it is too long or its cost bound is over `MAX_CONDITION_COST`."""
    if len(source) > MAX_CONDITION_CHARS:
        raise ConditionTooCostly(
            f"condition of {len(source)} characters is over the limit of {MAX_CONDITION_CHARS}: "
            "split the rule"
        )
    try:
        program = cel.compile(source)
    except Exception as exc:  # the extension raises ValueError, but be safe with any parser error
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ConditionSyntaxError(first) from None
    bound = set(_BOUND.findall(source))
    names = tuple(n for n in program.variables() if n not in bound)
    loops = comprehensions(source, frozenset(bound))
    cost = loops_cost(loops)
    if cost > MAX_CONDITION_COST:
        raise ConditionTooCostly(
            f"condition costs up to {cost} evaluation steps, over the limit of "
            f"{MAX_CONDITION_COST} (nested comprehensions multiply; an event list counts as "
            f"{ASSUMED_LIST_SIZE} items): nest fewer all/exists/map/filter"
        )
    return Condition(source, program, names, tuple(program.functions()), loops)


def comprehensions(source: str, bound: frozenset[str] = frozenset()) -> tuple[Loop, ...]:
    """The comprehension tree of an expression the CEL library has compiled. Only locates
    macro calls and their ranges: parsing proper is the library's."""
    masked, pairs = _mask_and_pair(source)
    calls = []  # (open paren, close paren, literal size, name)
    for match in _MACRO.finditer(masked):
        open_at = match.end() - 1
        close_at = pairs.get(open_at)
        if close_at is None:
            continue
        literal, name = _range_of(masked, match.start(), pairs, bound)
        calls.append((open_at, close_at, literal, name))

    def build(lo: int, hi: int) -> tuple[Loop, ...]:
        inside = [c for c in calls if lo < c[0] and c[1] < hi]
        top = [c for c in inside if not any(o[0] < c[0] and c[1] < o[1] for o in inside)]
        return tuple(Loop(lit, name, build(op, cl)) for op, cl, lit, name in top)

    return build(-1, len(source))


_TRIPLE_QUOTES = ("'" * 3, '"' * 3)


def _mask_and_pair(source: str) -> tuple[str, dict[int, int]]:
    """`source` with string literals blanked (same length), and matching bracket positions."""
    out = list(source)
    pairs: dict[int, int] = {}
    stack: list[int] = []
    i = 0
    while i < len(source):
        char = source[i]
        if char in "'\"":
            quote = source[i : i + 3] if source[i : i + 3] in _TRIPLE_QUOTES else char
            end = i + len(quote)
            while end < len(source) and source[end : end + len(quote)] != quote:
                end += 2 if source[end] == "\\" else 1
            end = min(end + len(quote), len(source))
            for j in range(i, end):
                out[j] = "x"
            i = end
            continue
        if char in "([{":
            stack.append(i)
        elif char in ")]}" and stack:
            pairs[stack.pop()] = i
        i += 1
    pairs.update({v: k for k, v in list(pairs.items())})
    return "".join(out), pairs


def _range_of(
    masked: str, dot: int, pairs: dict[int, int], bound: frozenset[str]
) -> tuple[int | None, str | None]:
    """What a comprehension at `dot` iterates: (literal size, None), (None, name) or neither."""
    before = masked[:dot].rstrip()
    if before.endswith(("]", "}")):
        open_at = pairs.get(len(before) - 1)
        if open_at is None:
            return None, None
        ahead = masked[:open_at].rstrip()
        if ahead and (ahead[-1].isalnum() or ahead[-1] in "_)]"):
            return None, None  # an index expression, not a literal
        inner = masked[open_at + 1 : len(before) - 1]
        return _top_level_items(inner, open_at + 1, pairs), None
    path = _IDENT_PATH.search(before)
    if path is not None and "." not in path.group(0):
        name = path.group(0).strip()
        return None, (None if name in bound else name)
    return None, None


def _top_level_items(inner: str, offset: int, pairs: dict[int, int]) -> int:
    """Items of a list or map literal's inside: top-level commas, nested brackets skipped."""
    if not inner.strip():
        return 0
    count, i = 1, 0
    while i < len(inner):
        if inner[i] in "([{" and offset + i in pairs:
            i = pairs[offset + i] - offset
        elif inner[i] == ",":
            count += 1
        i += 1
    return count - (1 if inner.rstrip().endswith(",") else 0)


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
