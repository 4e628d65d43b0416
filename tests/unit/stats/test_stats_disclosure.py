"""Acceptance 2: each disclosure rule, and no suppressed cell recoverable from published totals."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from stats_samples import synthetic_feed

from broker.stats import Period, StatsState, compute
from broker.stats.disclosure import (
    Ratio,
    Relation,
    UpperBound,
    disclose_council,
    disclose_national,
    format_average,
    format_percent,
    round_national,
)
from broker.stats.output import ENGLAND_KEY, Council, publish

# -- one test per rule -------------------------------------------------------------------------


def test_council_counts_one_to_five_are_c() -> None:
    counts = {"a": 0, "b": 1, "c": 5, "d": 6, "e": 250}
    assert disclose_council(counts, {}) == {"a": "0", "b": "c", "c": "c", "d": "6", "e": "250"}


def test_secondary_cell_when_a_total_would_reveal_the_first() -> None:
    counts = {"t": 40, "p1": 3, "p2": 12, "p3": 25}
    published = disclose_council(counts, {}, [Relation("t", ("p1", "p2", "p3"))])
    # p1 is 1-5; p2 (smallest non-zero of the rest) goes too, so t - p3 gives only p1 + p2.
    assert published == {"t": "40", "p1": "c", "p2": "c", "p3": "25"}


def test_suppressed_total_takes_a_part_with_it() -> None:
    counts = {"t": 4, "p1": 0, "p2": 4}
    published = disclose_council(counts, {}, [Relation("t", ("p1", "p2"))])
    assert published == {"t": "c", "p1": "0", "p2": "c"}


def test_zeros_are_never_the_secondary_cell() -> None:
    counts = {"t": 13, "p1": 3, "p2": 0, "p3": 10}
    published = disclose_council(counts, {}, [Relation("t", ("p1", "p2", "p3"))])
    assert published == {"t": "13", "p1": "c", "p2": "0", "p3": "c"}


def test_suppressed_parts_adding_to_their_number_are_widened() -> None:
    # Two suppressed ones: 12 - 10 = 2 with each at least 1 would say both are 1.
    counts = {"t": 12, "p1": 1, "p2": 1, "p3": 10}
    published = disclose_council(counts, {}, [Relation("t", ("p1", "p2", "p3"))])
    assert published["p3"] == "c" or published["t"] == "c"


def test_combination_of_totals_cannot_isolate_a_cell() -> None:
    # Nested totals: a+b = s, a+b+c = t. Suppressing a, b and then c alone would let t - s = c.
    counts = {"s": 4, "t": 30, "a": 2, "b": 2, "c": 26}
    relations = [Relation("s", ("a", "b")), Relation("t", ("a", "b", "c"))]
    published = disclose_council(counts, {}, relations)
    hidden = {k for k, v in published.items() if v == "c"}
    assert not _recoverable(counts, hidden, relations)


def test_rates_made_of_a_suppressed_count_are_suppressed() -> None:
    counts = {"children": 4, "looked_after": 200, "incidents": 9}
    ratios = {
        "pct": Ratio("percent", "children", "looked_after"),
        "avg": Ratio("average", "incidents", "children"),
    }
    published = disclose_council(counts, ratios)
    assert published["pct"] == "c" and published["avg"] == "c"
    assert published["incidents"] == "9"


def test_more_than_once_pinned_by_incidents_minus_children() -> None:
    counts = {"children": 40, "incidents": 41, "more_than_once": 1}
    ratios = {"avg": Ratio("average", "incidents", "children")}
    published = disclose_council(
        counts, ratios, bounds=[UpperBound("more_than_once", "incidents", "children")]
    )
    assert published == {"children": "40", "incidents": "c", "more_than_once": "c", "avg": "c"}


def test_national_rounded_to_nearest_ten_halves_up() -> None:
    assert [round_national(n) for n in (0, 4, 5, 14, 15, 1234, 1235)] == [
        0,
        0,
        10,
        10,
        20,
        1230,
        1240,
    ]
    # 1 to 4 would round to 0: suppressed instead (test_stats_department_rules.py).
    assert disclose_national({"a": 3, "b": 17, "z": 0}, {}) == {"a": "c", "b": "20", "z": "0"}


def test_national_rates_use_unrounded_counts() -> None:
    counts = {"children": 14, "looked_after": 100}
    published = disclose_national(counts, {"pct": Ratio("percent", "children", "looked_after")})
    assert published == {"children": "10", "looked_after": "100", "pct": "14"}


def test_z_not_applicable() -> None:
    assert format_percent(0, 0) == "z"
    assert format_average(0, 0) == "0"  # as the department publishes it


def test_x_not_available() -> None:
    counts: dict[str, int | None] = {"a": None, "b": 10}
    ratios = {"r": Ratio("percent", "a", "b")}
    assert disclose_council(counts, ratios) == {"a": "x", "b": "10", "r": "x"}
    assert disclose_national(counts, ratios) == {"a": "x", "b": "10", "r": "x"}


def test_k_percentage_rounding_to_zero() -> None:
    assert format_percent(1, 250) == "k"  # 0.4%
    assert format_percent(0, 250) == "0"
    assert format_percent(1, 200) == "1"  # 0.5% rounds up


def test_percentages_whole_averages_one_decimal_halves_up() -> None:
    assert format_percent(1, 8) == "13"  # 12.5
    assert format_percent(2, 3) == "67"
    assert format_average(5, 4) == "1.3"  # 1.25
    assert format_average(7, 7) == "1.0"


def test_every_published_council_cell_obeys_the_rules() -> None:
    """On a real multi-council run: council counts never 1-5, England and regional counts
    multiples of 10 (never 1-4 shown as 0: those are c)."""
    state = StatsState()
    state.apply_all(synthetic_feed())
    results = compute(state, Period.reporting_year(2025))
    regions = {"E12000004", "E12000005", "E12000008", "E13000001"}
    pub = publish(
        [results],
        state,
        {
            c: Council(c, region_code=r)
            for c, r in zip(sorted(results.councils), sorted(regions), strict=True)
        },
    )
    rates = {m.id for m in results.measures if m.ratio is not None or m.statistic}
    suppressed = 0
    by_council: dict[str, dict[str, str]] = {}
    for (_, key), values in pub.values.items():
        national = key == ENGLAND_KEY or key in regions
        if not national:
            by_council[key] = values
        for measure, value in values.items():
            if measure in rates or not value.isdigit():
                suppressed += value == "c"
                continue
            if national:
                assert int(value) % 10 == 0, (key, measure)
            else:
                assert not 1 <= int(value) <= 5, (key, measure)
    assert suppressed > 0
    assert set(by_council) == set(results.councils)
    for code, values in by_council.items():
        counts = results.council_counts(code)
        hidden = {k for k, v in values.items() if v == "c" and k in counts}
        known = {k: v for k, v in counts.items() if v is not None}
        assert not _recoverable(known, hidden, results.relations), code


# -- the attacker, written independently of broker.stats.disclosure ---------------------------


def _recoverable(counts: dict[str, int], hidden: set[str], relations: list[Relation]) -> set[str]:
    """Suppressed cells an attacker can work out from the published cells and the totals."""
    found: set[str] = set()
    # 1. Subtraction, repeated: a relation with one unknown gives it away, which may open others.
    known = set(counts) - hidden
    progress = True
    while progress:
        progress = False
        for r in relations:
            unknown = [c for c in {r.total, *r.parts} if c not in known]
            if len(unknown) == 1:
                known.add(unknown[0])
                found.add(unknown[0])
                progress = True
    # 2. Any combination of the relations (linear algebra over the unknowns).
    unknowns = sorted(hidden)
    if unknowns and relations:
        matrix = np.zeros((len(relations), len(unknowns)))
        for i, r in enumerate(relations):
            for part in r.parts:
                if part in hidden:
                    matrix[i, unknowns.index(part)] += 1
            if r.total in hidden:
                matrix[i, unknowns.index(r.total)] -= 1
        rank = np.linalg.matrix_rank(matrix)
        for j, cell in enumerate(unknowns):
            probe = np.zeros((1, len(unknowns)))
            probe[0, j] = 1
            if np.linalg.matrix_rank(np.vstack([matrix, probe])) == rank:
                found.add(cell)
    # 3. Suppressed parts that must all be 1 (every suppressed count is at least 1).
    for r in relations:
        if r.total in hidden:
            continue
        parts = [p for p in set(r.parts) if p in hidden]
        residual = counts[r.total] - sum(counts[p] for p in r.parts if p not in hidden)
        if parts and residual == len(parts):
            found.update(parts)
    return found & hidden


def _table(values: list[list[int]]) -> tuple[dict[str, int], list[Relation]]:
    """A council table with row totals, column totals and a grand total, all published."""
    rows, cols = len(values), len(values[0])
    counts = {f"r{i}c{j}": values[i][j] for i, j in itertools.product(range(rows), range(cols))}
    relations = []
    for i in range(rows):
        counts[f"r{i}T"] = sum(values[i])
        relations.append(Relation(f"r{i}T", tuple(f"r{i}c{j}" for j in range(cols))))
    for j in range(cols):
        counts[f"Tc{j}"] = sum(values[i][j] for i in range(rows))
        relations.append(Relation(f"Tc{j}", tuple(f"r{i}c{j}" for i in range(rows))))
    counts["TT"] = sum(map(sum, values))
    relations.append(Relation("TT", tuple(f"r{i}T" for i in range(rows))))
    relations.append(Relation("TT", tuple(f"Tc{j}" for j in range(cols))))
    return counts, relations


cell_value = st.one_of(st.integers(0, 7), st.integers(0, 7), st.integers(0, 60))


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 5).flatmap(
        lambda cols: st.lists(
            st.lists(cell_value, min_size=cols, max_size=cols), min_size=1, max_size=5
        )
    )
)
def test_no_suppressed_value_can_be_recovered_from_totals(values: list[list[int]]) -> None:
    counts, relations = _table(values)
    published = disclose_council(counts, {}, relations)
    hidden = {k for k, v in published.items() if v == "c"}
    for key, value in counts.items():
        if 1 <= value <= 5:
            assert published[key] == "c"
        elif key not in hidden:
            assert published[key] == str(value)
    assert all(counts[k] >= 1 for k in hidden)  # no zero was chosen to hide another cell
    assert not _recoverable(counts, hidden, relations)


def test_the_attacker_does_find_cells_left_exposed() -> None:
    """The check above is not vacuous: primary suppression alone is broken by each attack."""
    counts, relations = _table([[3, 10], [12, 20]])
    assert _recoverable(counts, {"r0c0"}, relations) == {"r0c0"}
    nested = {"s": 4, "t": 30, "a": 2, "b": 2, "c": 26}
    nested_relations = [Relation("s", ("a", "b")), Relation("t", ("a", "b", "c"))]
    assert _recoverable(nested, {"a", "b", "s"}, nested_relations) == {"s"}
    ones = {"t": 12, "p1": 1, "p2": 1, "p3": 10}
    assert _recoverable(ones, {"p1", "p2"}, [Relation("t", ("p1", "p2", "p3"))]) == {"p1", "p2"}
