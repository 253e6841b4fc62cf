"""Small pure statistics for the findings: Wilson score intervals and edit distances.

No numpy, torch or lm-eval here: reports (which must run without them) summarise records
with these too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (no continuity correction) for ``k`` successes in ``n``
    trials: (low, high), within [0, 1]. Chosen over the normal approximation because the
    findings are often 0/n or n/n on a few dozen samples, where that one collapses to a
    zero-width interval."""
    if n <= 0:
        raise ValueError(f"wilson needs n >= 1 trials, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"wilson needs 0 <= k <= n, got k={k}, n={n}")
    p = k / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    # k == 0 and k == n give bounds of exactly 0 and 1 on paper; rounding must not leak.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def interval(k: int, n: int, digits: int = 4) -> list[float] | None:
    """``wilson(k, n)`` rounded, as a JSON-friendly list; None with no trials."""
    if n <= 0:
        return None
    low, high = wilson(k, n)
    return [round(low, digits), round(high, digits)]


def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance between two chains (insert, delete or substitute one layer)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]
