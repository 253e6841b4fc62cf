"""What a findings cell says, computed from exact counts, never from rounded shares.

- ``Rate(k, n)``: a share with its denominator and Wilson 95% interval (``stats.wilson``),
  shown ``6/17 = 35% [17%, 59%]``;
- ``Number``: a mean (depth ratio, edits, evaluations, evaluated layers);
- ``Versus``: a finding beside its decoy rate on the same samples (``stats.Paired``): both
  counts, the discordant pairs, the paired difference with Newcombe's 95% interval, exact
  McNemar p and the conclusion that test draws, the only "above chance" the reports state;
- ``NoDecoy``: the samples the control ran on without a decoy, outside its denominators;
- ``Spread``: the mean ± sample standard deviation of one of those over a row's seeds (of a
  ``Versus``, its paired difference: seeds search the same samples, so their pairs are not
  pooled into one test).

``Findings`` holds one row's (or one row's task's) findings; ``findings_of`` makes them from
a row's exact ``Summary`` (or, for old files, the counts their summary wrote), and over the
seeds of a seed row from each seed's own findings. Each stat gives the text shown, the key
its column sorts by and its CSV numbers (``csv``: column suffix -> number).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

from lm_eval_cola.results.stats import Paired, wilson
from lm_eval_cola.results.summary import Summary

# CSV suffixes: a rate's share, its counts and interval; a paired test's difference, its
# interval, p and counts; a seed row's spread over seeds.
RATE_SUFFIXES = ("", "_k", "_n", "_low", "_high", "_sd")
NUMBER_SUFFIXES = ("", "_sd")
VERSUS_SUFFIXES = ("", "_low", "_high", "_p", "_n", "_gold", "_decoy", "_gold_only",
                   "_decoy_only", "_sd")
NO_DECOY_SUFFIXES = ("", "_right", "_wrong", "_sd")
# each findings field's kind, and the CSV suffixes of that kind
KIND_SUFFIXES = {"rate": RATE_SUFFIXES, "number": NUMBER_SUFFIXES, "versus": VERSUS_SUFFIXES,
                 "no_decoy": NO_DECOY_SUFFIXES}
_KINDS = {"full_chain": "rate", "oracle": "rate", "shorter": "rate", "fixed": "rate",
          "decoy_shortened": "rate", "decoy_reached": "rate", "shorter_vs_decoy": "versus",
          "fixed_vs_decoy": "versus", "no_decoy": "no_decoy"}


def suffixes_of(name: str) -> tuple[str, ...]:
    """The CSV suffixes of a ``Findings`` field (the rest are means: ``NUMBER_SUFFIXES``)."""
    return KIND_SUFFIXES[_KINDS.get(name, "number")]


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


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


@dataclass(frozen=True)
class Versus:
    """A finding and its decoy rate on the same samples, tested pairwise; shown ``gold 9/20
    vs decoy 3/20; only 7 vs 1; Δ +30% [+9%, +48%]; p = 0.07: not distinguishable from
    chance``. Sorts by the paired difference."""

    paired: Paired

    @property
    def key(self) -> float | None:
        return self.paired.difference

    @property
    def text(self) -> str:
        p = self.paired
        if p.interval is None or p.difference is None:
            return "—"
        low, high = p.interval
        return (f"gold {p.gold}/{p.n} vs decoy {p.decoy}/{p.n}; only {p.gold_only} vs "
                f"{p.decoy_only}; Δ {p.difference:+.0%} [{low:+.0%}, {high:+.0%}]; "
                f"{_p_text(p.p_value)}: {p.conclusion}")

    def csv(self) -> dict[str, Any]:
        p = self.paired
        low, high = p.interval or (None, None)
        return {"": _round(p.difference), "_low": _round(low), "_high": _round(high),
                "_p": float(f"{p.p_value:.4g}"), "_n": p.n, "_gold": p.gold, "_decoy": p.decoy,
                "_gold_only": p.gold_only, "_decoy_only": p.decoy_only}


@dataclass(frozen=True)
class NoDecoy:
    """Samples the control ran on that had no decoy to draw: outside its denominators."""

    right: int
    wrong: int
    digits = 1  # a seed row's spread of the total

    @property
    def key(self) -> int:
        return self.right + self.wrong

    @property
    def text(self) -> str:
        return f"{self.key} ({self.right} right, {self.wrong} wrong)"

    def csv(self) -> dict[str, Any]:
        return {"": self.key, "_right": self.right, "_wrong": self.wrong}


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
    prefix: str = ""  # "Δ " for a paired test's difference

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
            return f"{self.prefix}{self.mean:.1%} ± {self.sd:.1%}" + (
                f" (n={self.of})" if self.of is not None else "")
        return f"{self.prefix}{self.mean:.{self.digits}f} ± {self.sd:.{self.digits}f}"

    def csv(self) -> dict[str, Any]:
        return {"": _round(self.mean, 6), "_sd": _round(self.sd, 6)}


def spread(values: list[float | None], percent: bool = False, digits: int = 3,
           of: int | None = None, prefix: str = "") -> Spread | None:
    """The spread of the values present; None when none is."""
    present = tuple(v for v in values if v is not None)
    return Spread(present, percent, digits, of, prefix) if present else None


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
    # the paired tests (Versus, or Spread of the difference over seeds) and the samples
    # without a decoy: None without a decoy control
    shorter_vs_decoy: Any = None
    fixed_vs_decoy: Any = None
    no_decoy: Any = None
    # the depth ratio of the decoy's shortest chains on the right samples it shortened
    decoy_depth_shortened: Any = None
    seeds: int = 1

    @property
    def has_decoy(self) -> bool:
        return self.decoy_shortened is not None or self.decoy_reached is not None

    @classmethod
    def from_summary(cls, s: Summary) -> Findings:
        n, layers = s.samples, s.num_layers
        # the control ran (on samples with a decoy, or on samples it found none for)
        decoy = s.decoy_full_right + s.decoy_full_wrong + s.no_decoy_right + s.no_decoy_wrong > 0
        shorter, fixed = s.paired_shorter(), s.paired_fixed()
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
            shorter_vs_decoy=Versus(shorter) if shorter is not None else None,
            fixed_vs_decoy=Versus(fixed) if fixed is not None else None,
            no_decoy=NoDecoy(s.no_decoy_right, s.no_decoy_wrong) if decoy else None,
            decoy_depth_shortened=Number(_mean(s.total_decoy_shortened_length,
                                               s.decoy_shortened_measured * layers))
            if decoy else None,
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
            # a paired test over seeds: the spread of its difference, in percent
            paired = [s.paired for s in stats if isinstance(s, Versus) and s.paired.n]
            digits = next((s.digits for s in stats if isinstance(s, (Number, NoDecoy))), 3)
            whole = {s.n for s in rates + paired}
            values[f.name] = spread([None if s is None else s.key for s in stats],
                                    bool(rates or paired), digits,
                                    whole.pop() if len(whole) == 1 else None,
                                    "Δ " if paired else "")
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
                        decoy_reached=None, shorter_vs_decoy=None, fixed_vs_decoy=None,
                        no_decoy=None, decoy_depth_shortened=None)
    return found
