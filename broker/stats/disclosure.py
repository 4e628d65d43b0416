"""Disclosure control, as the official statistics publish it (DOMAIN.md).

- Council figures are unrounded, but counts from 1 to 5 are suppressed and shown as `c`
  (primary suppression); a second cell is suppressed wherever a suppressed one could be worked
  out from a published total (secondary suppression, below).
- National and regional counts are rounded to the nearest 10 (halves up), except that a count
  from 1 to 4, which would round to 0, is suppressed (`c`) instead: a real incident never
  becomes a published 0. Rates use the unrounded figures.
- `z` not applicable (a rate over zero), `x` not available (the feed does not carry what the
  measure needs), `k` a percentage that rounds to zero but is not zero.
- Percentages are whole numbers, averages one decimal place, halves rounded up; an average over
  no children is `0` (as the department publishes it), a percentage over no children `z`.

Secondary suppression works on *relations*: a published total and the published parts that sum
to it exactly. It repeats until none of these attacks recovers a suppressed cell:
1. subtraction: a relation with exactly one suppressed cell;
2. combination: any sum and difference of relations (the cell lies in the row space of the
   relations' coefficients over the suppressed cells, found by exact Gaussian elimination);
3. floor: the suppressed parts of a relation add up to exactly their number, so each must be 1
   (every suppressed cell is at least 1: zeros are never chosen as secondary cells).
The cell added is the smallest non-zero published part of the exposed relation, else its total.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Literal

SUPPRESSED = "c"
NOT_APPLICABLE = "z"
NOT_AVAILABLE = "x"
ROUNDS_TO_ZERO = "k"

SUPPRESS_MIN = 1
SUPPRESS_MAX = 5
NATIONAL_ROUNDING = 10

RatioKind = Literal["percent", "average"]


@dataclass(frozen=True)
class Relation:
    """A published total and the published parts that add up to it exactly."""

    total: str
    parts: tuple[str, ...]


@dataclass(frozen=True)
class Ratio:
    """A rate published beside the counts it is made of."""

    kind: RatioKind
    numerator: str
    denominator: str


@dataclass(frozen=True)
class UpperBound:
    """`cell <= minuend - subtrahend`, known to anyone (e.g. children who went missing more than
    once <= incidents - children who went missing). If the cell is suppressed and the bound is 1
    it pins the cell to 1, so the minuend is suppressed too."""

    cell: str
    minuend: str
    subtrahend: str


def round_half_up(value: Fraction | int, places: int = 0) -> Decimal:
    """Round as published statistics do (0.5 up), not as Python's banker's `round`."""
    exponent = Decimal(1).scaleb(-places)
    quotient = Decimal(value.numerator) / Decimal(value.denominator)
    return quotient.quantize(exponent, rounding=ROUND_HALF_UP)


def round_national(count: int) -> int:
    """A national count rounded to the nearest 10 (5 up)."""
    return int(round_half_up(Fraction(count, NATIONAL_ROUNDING)) * NATIONAL_ROUNDING)


def publish_national_count(count: int) -> str:
    """A national or regional count as published: rounded to 10, but 1 to 4 (which would show
    as 0) suppressed as `c`."""
    if 0 < count < NATIONAL_ROUNDING / 2:
        return SUPPRESSED
    return str(round_national(count))


def format_percent(numerator: int, denominator: int) -> str:
    """A whole-number percentage; `z` over zero, `k` if it rounds to 0 but is not 0."""
    if denominator == 0:
        return NOT_APPLICABLE
    rounded = round_half_up(Fraction(100 * numerator, denominator))
    if rounded == 0 and numerator != 0:
        return ROUNDS_TO_ZERO
    return str(int(rounded))


def format_average(numerator: int, denominator: int) -> str:
    """An average to one decimal place; `0` over no children, as the department publishes."""
    if denominator == 0:
        return "0"
    return f"{round_half_up(Fraction(numerator, denominator), 1):.1f}"


def primary_suppression(counts: Mapping[str, int | None]) -> set[str]:
    """Cells whose count is from 1 to 5."""
    return {k for k, v in counts.items() if v is not None and SUPPRESS_MIN <= v <= SUPPRESS_MAX}


def _coefficients(relation: Relation) -> dict[str, int]:
    """Coefficients of `sum(parts) - total = 0` (a cell listed twice adds up)."""
    row: dict[str, int] = {}
    for part in relation.parts:
        row[part] = row.get(part, 0) + 1
    row[relation.total] = row.get(relation.total, 0) - 1
    return row


def determined_cells(relations: Sequence[Relation], suppressed: set[str]) -> set[str]:
    """Suppressed cells whose value follows from the published ones by linear combination."""
    unknowns = sorted({k for r in relations for k in _coefficients(r) if k in suppressed})
    index = {k: i for i, k in enumerate(unknowns)}
    rows: list[list[Fraction]] = []
    for relation in relations:
        row = [Fraction(0)] * len(unknowns)
        for cell, coefficient in _coefficients(relation).items():
            if cell in index:
                row[index[cell]] += coefficient
        if any(row):
            rows.append(row)
    basis = _row_echelon(rows)
    found: set[str] = set()
    for cell, i in index.items():
        target = [Fraction(0)] * len(unknowns)
        target[i] = Fraction(1)
        if _in_row_space(target, basis):
            found.add(cell)
    return found


def _row_echelon(rows: list[list[Fraction]]) -> list[tuple[int, list[Fraction]]]:
    """Reduced row echelon basis as (pivot column, row) pairs."""
    basis: list[tuple[int, list[Fraction]]] = []
    for original in rows:
        row = _reduce(list(original), basis)
        pivot = next((j for j, v in enumerate(row) if v != 0), None)
        if pivot is None:
            continue
        scale = row[pivot]
        row = [v / scale for v in row]
        reduced: list[tuple[int, list[Fraction]]] = []
        for p, other in basis:
            factor = other[pivot]
            if factor:
                other = [a - factor * b for a, b in zip(other, row, strict=True)]
            reduced.append((p, other))
        basis = [*reduced, (pivot, row)]
    return basis


def _reduce(row: list[Fraction], basis: Iterable[tuple[int, list[Fraction]]]) -> list[Fraction]:
    for pivot, other in basis:
        factor = row[pivot]
        if factor:
            row = [a - factor * b for a, b in zip(row, other, strict=True)]
    return row


def _in_row_space(target: list[Fraction], basis: list[tuple[int, list[Fraction]]]) -> bool:
    return not any(_reduce(list(target), basis))


def _pick(
    relation: Relation, counts: Mapping[str, int], suppressed: set[str], floor: int
) -> str | None:
    """The cell to suppress next in an exposed relation (smallest part >= floor, else total)."""
    candidates = [
        (counts[p], n, p)
        for n, p in enumerate(relation.parts)
        if p not in suppressed and counts[p] >= floor
    ]
    if candidates:
        return min(candidates)[2]
    if relation.total not in suppressed:
        return relation.total
    return None


def _exposure(relation: Relation, counts: Mapping[str, int], suppressed: set[str]) -> int | None:
    """None if the relation is safe, else the floor a new secondary cell must have."""
    cells = {*relation.parts, relation.total}
    hidden = [c for c in cells if c in suppressed]
    if len(hidden) == 1:
        return 1
    hidden_parts = [p for p in set(relation.parts) if p in suppressed]
    if hidden_parts and relation.total not in suppressed:
        residual = counts[relation.total] - sum(
            counts[p] for p in relation.parts if p not in suppressed
        )
        if residual == len(hidden_parts):
            return 2  # another 1 would keep the sum equal to the number of cells
    return None


def secondary_suppression(
    counts: Mapping[str, int],
    suppressed: set[str],
    relations: Sequence[Relation],
    bounds: Sequence[UpperBound] = (),
) -> set[str]:
    """The suppressed cells after adding secondary suppression (the input set is not changed)."""
    hidden = set(suppressed)
    while True:
        changed = False
        for relation in relations:
            floor = _exposure(relation, counts, hidden)
            if floor is None:
                continue
            cell = _pick(relation, counts, hidden, floor) or _pick(relation, counts, hidden, 1)
            if cell is not None:
                hidden.add(cell)
                changed = True
        for bound in bounds:
            if (
                bound.cell in hidden
                and bound.minuend not in hidden
                and bound.subtrahend not in hidden
                and counts[bound.minuend] - counts[bound.subtrahend] <= SUPPRESS_MIN
            ):
                hidden.add(bound.minuend)
                changed = True
        if not changed:
            extra = _break_combination(counts, hidden, relations)
            if extra is not None:
                hidden.add(extra)
                changed = True
        if not changed:
            return hidden


def _break_combination(
    counts: Mapping[str, int], hidden: set[str], relations: Sequence[Relation]
) -> str | None:
    """A cell to suppress so that a suppressed cell no longer follows from a combination of
    totals (the smallest that works, else the smallest candidate), or None if none is exposed."""
    determined = sorted(determined_cells(relations, hidden))
    if not determined:
        return None
    target = determined[0]
    candidates = sorted(
        {
            (counts[c], c)
            for r in relations
            if any(x in hidden for x in (r.total, *r.parts))
            for c in (r.total, *r.parts)
            if c not in hidden and counts[c] >= SUPPRESS_MIN
        }
    )
    for _, cell in candidates:
        if target not in determined_cells(relations, hidden | {cell}):
            return cell
    return candidates[0][1] if candidates else None


def disclose_council(
    counts: Mapping[str, int | None],
    ratios: Mapping[str, Ratio],
    relations: Sequence[Relation] = (),
    bounds: Sequence[UpperBound] = (),
) -> dict[str, str]:
    """Published values of one council: counts with `c` and secondary suppression, rates
    suppressed whenever a count they are made of is (or they would give it away)."""
    known = {k: v for k, v in counts.items() if v is not None}
    usable = [r for r in relations if all(c in known for c in (r.total, *r.parts))]
    usable_bounds = [
        b for b in bounds if all(c in known for c in (b.cell, b.minuend, b.subtrahend))
    ]
    hidden = secondary_suppression(known, primary_suppression(known), usable, usable_bounds)
    published: dict[str, str] = {}
    for key, value in counts.items():
        if value is None:
            published[key] = NOT_AVAILABLE
        elif key in hidden:
            published[key] = SUPPRESSED
        else:
            published[key] = str(value)
    for key, ratio in ratios.items():
        numerator, denominator = counts.get(ratio.numerator), counts.get(ratio.denominator)
        if numerator is None or denominator is None:
            published[key] = NOT_AVAILABLE
        elif ratio.numerator in hidden or ratio.denominator in hidden:
            published[key] = SUPPRESSED
        else:
            published[key] = _format_ratio(ratio, numerator, denominator)
    return published


def disclose_national(
    counts: Mapping[str, int | None], ratios: Mapping[str, Ratio]
) -> dict[str, str]:
    """Published national (or regional) values: counts rounded to the nearest 10 with 1 to 4
    suppressed, rates from unrounded counts."""
    published: dict[str, str] = {}
    for key, value in counts.items():
        published[key] = NOT_AVAILABLE if value is None else publish_national_count(value)
    for key, ratio in ratios.items():
        numerator, denominator = counts.get(ratio.numerator), counts.get(ratio.denominator)
        if numerator is None or denominator is None:
            published[key] = NOT_AVAILABLE
        else:
            published[key] = _format_ratio(ratio, numerator, denominator)
    return published


def _format_ratio(ratio: Ratio, numerator: int, denominator: int) -> str:
    if ratio.kind == "percent":
        return format_percent(numerator, denominator)
    return format_average(numerator, denominator)
