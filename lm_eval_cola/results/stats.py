"""Small pure statistics for the findings: Wilson score intervals, the paired test of a
finding against its chance control (exact McNemar, Newcombe's paired difference interval,
``Paired``) and edit distances.

No numpy, torch or lm-eval here: reports (which must run without them) summarise records
with these too.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# A finding is called above (or below) its chance control only when both the exact McNemar
# test and the paired difference's interval say so: p below this and 0 outside the interval.
ALPHA = 0.05
ABOVE, BELOW, UNDECIDED = "above chance", "below chance", "not distinguishable from chance"


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


def mcnemar_exact(b: int, c: int) -> float:
    """The exact McNemar test's two-sided p-value from the discordant pairs: ``b`` samples
    where only the first outcome happened, ``c`` where only the second did. Under no
    difference each discordant pair falls either way with probability 1/2, so this is the
    two-sided binomial test of ``b`` of ``b + c`` at 1/2: twice the smaller tail, at most 1
    (1 with no discordant pairs: nothing tells the two apart). Exact integers, then one
    division: no rounding in the tail sum, however many pairs."""
    if b < 0 or c < 0:
        raise ValueError(f"mcnemar_exact needs counts >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_difference_interval(both: int, first_only: int, second_only: int, neither: int,
                               z: float = 1.96) -> tuple[float, float]:
    """A 95% interval for the difference of two proportions measured on the same samples,
    (both + first_only) / n - (both + second_only) / n: Newcombe's hybrid score interval for
    paired data, method 10 of R. G. Newcombe, "Improved confidence intervals for the
    difference between binomial proportions based on paired data", Statistics in Medicine
    17 (1998) 2635-2650 (also Fagerland, Lydersen & Laake, Statistical Analysis of
    Contingency Tables, 2017, section 8.5, "Newcombe square-and-add").

    Each proportion gets its Wilson interval (l1, u1) and (l2, u2); the distances from each
    estimate to its bounds are squared and added, less twice their product times phi, the
    correlation of the two outcomes with Newcombe's correction (with A = both * neither -
    first_only * second_only and the margins' product M: phi = (A - n/2) / sqrt(M) when
    A > n/2, 0 when 0 <= A <= n/2, A / sqrt(M) when A < 0; 0 when a margin is empty):

        low  = d - sqrt((p1 - l1)^2 + (u2 - p2)^2 - 2 phi (p1 - l1)(u2 - p2))
        high = d + sqrt((p2 - l2)^2 + (u1 - p1)^2 - 2 phi (p2 - l2)(u1 - p1))

    Chosen over the Wald interval, which collapses to zero width at 0 discordant pairs and
    overshoots [-1, 1] on the few dozen samples a finding often has."""
    counts = (both, first_only, second_only, neither)
    if min(counts) < 0 or sum(counts) == 0:
        raise ValueError(f"paired_difference_interval needs counts >= 0 and n >= 1, got "
                         f"{counts}")
    n = sum(counts)
    first, second = both + first_only, both + second_only
    p1, p2 = first / n, second / n
    l1, u1 = wilson(first, n, z)
    l2, u2 = wilson(second, n, z)
    margins = first * (n - first) * second * (n - second)
    a = both * neither - first_only * second_only
    if margins == 0 or 0 <= a <= n / 2:
        phi = 0.0
    else:
        phi = (a - n / 2 if a > 0 else a) / math.sqrt(margins)
    difference = p1 - p2
    low = difference - math.sqrt(max(0.0, (p1 - l1) ** 2 + (u2 - p2) ** 2
                                     - 2 * phi * (p1 - l1) * (u2 - p2)))
    high = difference + math.sqrt(max(0.0, (p2 - l2) ** 2 + (u1 - p1) ** 2
                                      - 2 * phi * (p2 - l2) * (u1 - p1)))
    return max(-1.0, low), min(1.0, high)


def conclusion(p: float, low: float, high: float) -> str:
    """What the paired test says of a finding beside its control: above (below) chance
    only when McNemar's p < ``ALPHA`` and the difference's interval lies above (below) 0."""
    if p < ALPHA and low > 0:
        return ABOVE
    if p < ALPHA and high < 0:
        return BELOW
    return UNDECIDED


@dataclass(frozen=True)
class Paired:
    """A finding and its chance control on the same samples, as per-sample pairs (gold
    outcome, decoy outcome): ``both``, ``gold_only``, ``decoy_only``, ``neither``. The
    discordant pairs decide: exact McNemar on ``gold_only`` vs ``decoy_only``, and the
    paired difference gold - decoy with Newcombe's interval."""

    both: int
    gold_only: int
    decoy_only: int
    neither: int

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[bool, bool]]) -> Paired:
        """Counted from per-sample pairs (first outcome, second outcome): the first plays
        the gold's part, the second the decoy's (any two outcomes on the same samples)."""
        counts = Counter((bool(first), bool(second)) for first, second in pairs)
        return cls(both=counts[True, True], gold_only=counts[True, False],
                   decoy_only=counts[False, True], neither=counts[False, False])

    @property
    def n(self) -> int:
        return self.both + self.gold_only + self.decoy_only + self.neither

    @property
    def gold(self) -> int:
        return self.both + self.gold_only

    @property
    def decoy(self) -> int:
        return self.both + self.decoy_only

    @property
    def p_value(self) -> float:
        return mcnemar_exact(self.gold_only, self.decoy_only)

    @property
    def difference(self) -> float | None:
        return (self.gold_only - self.decoy_only) / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float] | None:
        if not self.n:
            return None
        return paired_difference_interval(self.both, self.gold_only, self.decoy_only,
                                          self.neither)

    @property
    def conclusion(self) -> str | None:
        bounds = self.interval
        return None if bounds is None else conclusion(self.p_value, *bounds)

    def as_dict(self, digits: int = 4) -> dict[str, Any] | None:
        """JSON-friendly: the counts, McNemar's p (4 significant digits: small p-values
        must not round to 0), the difference and its interval; None with no samples."""
        bounds = self.interval
        if bounds is None or self.difference is None:
            return None
        return {"n": self.n, "gold": self.gold, "decoy": self.decoy, "both": self.both,
                "gold_only": self.gold_only, "decoy_only": self.decoy_only,
                "neither": self.neither, "mcnemar_p": float(f"{self.p_value:.4g}"),
                "difference": round(self.difference, digits),
                "difference_ci": [round(bounds[0], digits), round(bounds[1], digits)],
                "conclusion": self.conclusion}


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
