"""Wilson score intervals against published values, and chain edit distances."""

from __future__ import annotations

import pytest

from lm_eval_cola.results.stats import edit_distance, interval, wilson

pytestmark = pytest.mark.quick


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # Newcombe (1998), Statistics in Medicine 17:857, table I, method 3 (Wilson score)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        # symmetric cases
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
    ],
)
def test_wilson_matches_published_values(k, n, low, high):
    lo, hi = wilson(k, n)
    assert lo == pytest.approx(low, abs=1e-4)
    assert hi == pytest.approx(high, abs=1e-4)


def test_wilson_edges_and_bad_input():
    assert wilson(0, 1)[0] == 0.0 and wilson(3, 3)[1] == 1.0
    for k in range(0, 8):
        lo, hi = wilson(k, 7)
        assert 0.0 <= lo <= k / 7 <= hi <= 1.0
    assert wilson(2, 10, z=2.576)[0] < wilson(2, 10)[0]  # wider at 99%
    for k, n in ((0, 0), (-1, 5), (6, 5)):
        with pytest.raises(ValueError):
            wilson(k, n)
    assert interval(0, 0) is None
    assert interval(81, 263) == [0.2553, 0.3662]


def test_edit_distance():
    full = (0, 1, 2, 3)
    assert edit_distance(full, full) == 0
    assert edit_distance((0, 1, 3), full) == 1  # a skip
    assert edit_distance((0, 1, 1, 2, 3), full) == 1  # a repeat
    assert edit_distance((0, 3), full) == 2
    assert edit_distance((3, 2, 1, 0), full) == 4
    assert edit_distance((), full) == 4
    assert edit_distance(full, (0, 2)) == edit_distance((0, 2), full)
