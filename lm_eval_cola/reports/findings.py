"""What a findings cell says, computed from exact counts, never from rounded shares.

- ``Rate(k, n)``: a share with its denominator and Wilson 95% interval (``stats.wilson``),
  shown ``6/17 = 35% [17%, 59%]``;
- ``Number``: a mean (depth ratio, edits, evaluations, evaluated layers);
- ``Spread``: the mean ± sample standard deviation of one of those over a row's seeds.

``Findings`` holds one row's (or one row's task's) findings; ``findings_of`` makes them from
a row's exact ``Summary`` (or, for old files, the counts their summary wrote), and over the
seeds of a seed row from each seed's own findings. Each stat gives the text shown, the key
its column sorts by and its CSV numbers (``csv``: column suffix -> number).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

from lm_eval_cola.stats import wilson
from lm_eval_cola.summary import Summary

# CSV suffixes: a rate's share, its counts and interval; a seed row's spread over seeds.
RATE_SUFFIXES = ("", "_k", "_n", "_low", "_high", "_sd")
NUMBER_SUFFIXES = ("", "_sd")


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True)
class Rate:
    k: int
    n: int

    @property
    def share(self) -> float | None:
        return self.k / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson(self.k, self.n) if self.n else None

    @property
    def key(self) -> float | None:
        return self.share

    @property
    def text(self) -> str:
        if not self.n:
            return "—"
        low, high = wilson(self.k, self.n)
        return f"{self.k}/{self.n} = {self.k / self.n:.0%} [{low:.0%}, {high:.0%}]"

    def csv(self) -> dict[str, Any]:
        low, high = self.interval or (None, None)
        return {"": _round(self.share), "_k": self.k, "_n": self.n, "_low": _round(low),
                "_high": _round(high)}


@dataclass(frozen=True)
class Number:
    value: float | None
    digits: int = 3

    @property
    def key(self) -> float | None:
        return self.value

    @property
    def text(self) -> str:
        return "—" if self.value is None else f"{self.value:.{self.digits}f}"

    def csv(self) -> dict[str, Any]:
        return {"": _round(self.value, 6)}


@dataclass(frozen=True)
class Spread:
    """Mean ± sample standard deviation over seeds (sd 0 with one value)."""

    values: tuple[float, ...]
    percent: bool = False
    digits: int = 3
    of: int | None = None  # rates: the denominator, where every seed has the same

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def sd(self) -> float:
        n = len(self.values)
        if n < 2:
            return 0.0
        return math.sqrt(sum((v - self.mean) ** 2 for v in self.values) / (n - 1))

    @property
    def key(self) -> float:
        return self.mean

    @property
    def text(self) -> str:
        if self.percent:
            return f"{self.mean:.1%} ± {self.sd:.1%}" + (
                f" (n={self.of})" if self.of is not None else "")
        return f"{self.mean:.{self.digits}f} ± {self.sd:.{self.digits}f}"

    def csv(self) -> dict[str, Any]:
        return {"": _round(self.mean, 6), "_sd": _round(self.sd, 6)}


def spread(values: list[float | None], percent: bool = False, digits: int = 3,
           of: int | None = None) -> Spread | None:
    """The spread of the values present; None when none is."""
    present = tuple(v for v in values if v is not None)
    return Spread(present, percent, digits, of) if present else None


def _mean(total: int, count: int) -> float | None:
    return total / count if count else None


@dataclass(frozen=True)
class Findings:
    samples: int | None
    full_chain: Any  # Rate, or Spread over seeds
    oracle: Any
    shorter: Any  # None where no gold chose the chains
    fixed: Any
    decoy_shortened: Any  # None without a decoy control
    decoy_reached: Any
    depth: Any  # Number, or Spread
    depth_shortened: Any
    depth_fixed: Any
    edits: Any
    evaluations: Any
    evaluated_layers: Any
    seeds: int = 1

    @property
    def has_decoy(self) -> bool:
        return self.decoy_shortened is not None or self.decoy_reached is not None

    @classmethod
    def from_summary(cls, s: Summary) -> Findings:
        n, layers = s.samples, s.num_layers
        decoy = s.decoy_full_right + s.decoy_full_wrong > 0
        return cls(
            samples=n, full_chain=Rate(s.right, n), oracle=Rate(s.oracle_correct, n),
            shorter=Rate(s.right_shortened, s.right) if s.oracle else None,
            fixed=Rate(s.wrong_fixed, s.wrong) if s.oracle else None,
            decoy_shortened=Rate(s.decoy_right_shortened, s.decoy_full_right) if decoy else None,
            decoy_reached=Rate(s.decoy_wrong_reached, s.decoy_full_wrong) if decoy else None,
            depth=Number(_mean(s.total_length, n * layers)),
            depth_shortened=Number(_mean(s.total_shortened_length, s.right_shortened * layers)),
            depth_fixed=Number(_mean(s.total_fixed_length, s.wrong_fixed * layers)),
            edits=Number(_mean(s.total_edits, s.edit_samples), 2),
            evaluations=Number(_mean(s.total_evaluations, n), 2),
            evaluated_layers=Number(_mean(s.total_evaluated_layers, s.cost_samples), 1),
        )

    @classmethod
    def from_counts(cls, data: dict[str, Any]) -> Findings:
        """Old results files' summaries without exact sums: their counts, and the means as
        written (rounded) where no count gives them."""
        n = int(data.get("samples") or 0)
        right = int(data.get("full_chain_right") or 0)
        wrong = int(data.get("full_chain_wrong") or 0)
        fixed = int(data.get("wrong_fixed_by_some_chain") or 0)
        oracle = bool(data.get("oracle", True))
        correct = data.get("oracle_correct")
        correct = right + fixed if correct is None else int(correct)

        def written(key: str, digits: int) -> Number:
            value = data.get(key)
            return Number(None if value is None else float(value), digits)

        return cls(
            samples=n, full_chain=Rate(right, n), oracle=Rate(correct, n),
            shorter=Rate(int(data.get("right_with_shorter_chain") or 0), right) if oracle else None,
            fixed=Rate(fixed, wrong) if oracle else None, decoy_shortened=None,
            decoy_reached=None, depth=written("mean_depth_ratio", 3),
            depth_shortened=Number(None), depth_fixed=Number(None), edits=Number(None),
            evaluations=written("mean_evaluations", 2), evaluated_layers=Number(None),
        )

    @classmethod
    def over_seeds(cls, parts: list[Findings]) -> Findings:
        """Mean ± sd over the seeds' findings of each stat that some seed has."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in ("samples", "seeds"):
                continue
            stats = [getattr(p, f.name) for p in parts]
            rates = [s for s in stats if isinstance(s, Rate) and s.n]
            digits = next((s.digits for s in stats if isinstance(s, Number)), 3)
            whole = {s.n for s in rates}
            values[f.name] = spread([None if s is None else s.key for s in stats], bool(rates),
                                    digits, whole.pop() if len(whole) == 1 else None)
        counts = {p.samples for p in parts}
        return cls(samples=counts.pop() if len(counts) == 1 else None, seeds=len(parts),
                   **values)


def findings_of(row: Any, task: str | None = None) -> Findings | None:
    """A board row's findings, pooled over its tasks or of one ``task`` (from its records);
    over the seeds of a seed row; None where there are none."""
    members = getattr(row, "members", None)
    if members:
        parts = [p for p in (findings_of(m, task) for m in members) if p is not None]
        return Findings.over_seeds(parts) if parts else None
    if task is not None:
        summary = row.task_summaries.get(task)
        found = Findings.from_summary(summary) if summary is not None else None
    elif row.summary is not None:
        found = Findings.from_summary(row.summary)
    elif row.legacy_summary:
        found = Findings.from_counts(row.legacy_summary)
    else:
        return None
    if found is not None and not row.oracle:  # no gold chose its chains: nothing found
        found = replace(found, shorter=None, fixed=None, decoy_shortened=None,
                        decoy_reached=None)
    return found
