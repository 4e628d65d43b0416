"""`broker bench alerts --raising F`: which load events raise an alert."""

from __future__ import annotations

import argparse
from itertools import pairwise

import pytest

from broker.bench.alerts import _raises, _share


@pytest.mark.parametrize(("share", "count", "expected"), [(1.0, 10, 10), (0.5, 40, 20),
                                                          (0.2, 100, 20), (0.3, 10, 3)])
def test_the_share_raises_that_many_events_spread_evenly(
    share: float, count: int, expected: int
) -> None:
    chosen = [n for n in range(count) if _raises(n, share)]
    assert len(chosen) == expected
    gaps = {b - a for a, b in pairwise(chosen)}
    assert max(gaps, default=1) - min(gaps, default=1) <= 1  # no run of raising events


@pytest.mark.parametrize("text", ["0", "-0.5", "1.5"])
def test_a_share_outside_zero_to_one_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="above 0 and at most 1"):
        _share(text)
