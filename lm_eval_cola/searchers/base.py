"""The searcher interface: chains, outcomes, the budgeted evaluator and the shared rules.

A searcher looks, for one sample, for a chain of decoder-layer indices that answers the
sample right with as few layers as possible ("oracle mode"). It only sees the sample
through a `ChainEvaluator`, so nothing here knows about lm-eval, torch or transformers
and every searcher can be tested with a fake evaluate function.

Rules shared by every searcher (so their results are comparable):
- the full chain `tuple(range(L))` is evaluated first; its correctness is `full_correct`;
- `budget` counts distinct chains evaluated, the full chain included; a memoized chain
  is free;
- the best chain is the shortest correct one (ties: higher score, then the
  lexicographically smaller chain); with no correct chain it is the full chain;
- every chain other than the full one is non-empty, uses indices in [0, L) and has
  `min_len <= len <= max_len` (`max_len` defaults to 2L);
- results depend only on (evaluator outcomes, budget, seed, settings): randomness comes
  from `random.Random(seed)`, never the global generator.
"""

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

log = logging.getLogger(__name__)

Chain = tuple[int, ...]


@dataclass(frozen=True)
class Outcome:
    """What one chain does on one sample."""

    correct: bool  # the task's own metric says this chain answers the sample right
    score: float  # graded signal, higher is better; used for guidance and ties only

    def __post_init__(self) -> None:
        # A heavily edited chain can overflow to NaN logits; NaN would break every sort
        # below, and "worst possible" is what such a chain deserves, so map it to -inf.
        score = float(self.score)
        object.__setattr__(self, "score", -math.inf if math.isnan(score) else score)
        object.__setattr__(self, "correct", bool(self.correct))


class BudgetExhausted(Exception):
    """A new chain was asked for after the sample's evaluation budget was spent."""


def full_chain(num_layers: int) -> Chain:
    return tuple(range(num_layers))


class ChainEvaluator:
    """Wraps a sample's raw evaluate function: memoizes by chain, counts distinct
    evaluations and enforces the budget.

    `evaluate(chain) -> Outcome` is called at most once per distinct chain, and never
    more than `budget` times in all. `evaluate_many(chains) -> outcomes` (same order),
    if given, is used by `many()` so a caller can batch chains on the accelerator.
    """

    def __init__(
        self,
        evaluate: Callable[[Chain], Outcome],
        num_layers: int,
        budget: int,
        evaluate_many: Callable[[list[Chain]], list[Outcome]] | None = None,
    ) -> None:
        check_int("num_layers", num_layers, 1)
        check_int("budget", budget, 1)
        self.num_layers = num_layers
        self.budget = budget
        self.seen: dict[Chain, Outcome] = {}  # in evaluation order
        self._evaluate = evaluate
        self._evaluate_many = evaluate_many

    @property
    def full(self) -> Chain:
        return full_chain(self.num_layers)

    @property
    def evaluations(self) -> int:
        return len(self.seen)

    @property
    def remaining(self) -> int:
        return self.budget - self.evaluations

    def __call__(self, chain: Sequence[int]) -> Outcome:
        """The chain's outcome; a chain not seen before costs one budget unit.

        Raises BudgetExhausted for a new chain once the budget is spent.
        """
        chain = self._check(chain)
        if chain in self.seen:
            return self.seen[chain]
        if self.remaining <= 0:
            raise BudgetExhausted(f"budget of {self.budget} evaluations spent")
        return self._store(chain, self._evaluate(chain))

    def many(self, chains: Iterable[Sequence[int]]) -> list[Outcome]:
        """Batch form of `__call__`.

        New chains (not in `seen`, duplicates dropped) are evaluated in order of first
        appearance, as many as the remaining budget allows, through `evaluate_many` when
        given. Returns the outcomes of the longest prefix of `chains` whose chains are
        all known now: `out[i]` belongs to `chains[i]`, and `len(out) < len(chains)`
        exactly when the budget cut the batch short (the first chain it could not afford
        is `chains[len(out)]`). Raises BudgetExhausted only when some chain is new and
        the budget was already spent, i.e. nothing could be evaluated.
        """
        chains = [self._check(c) for c in chains]
        new = list(dict.fromkeys(c for c in chains if c not in self.seen))
        if new and self.remaining <= 0:
            raise BudgetExhausted(f"budget of {self.budget} evaluations spent")
        new = new[: self.remaining]
        if new and self._evaluate_many is not None:
            outcomes = list(self._evaluate_many(new))
            if len(outcomes) != len(new):
                raise ValueError(
                    f"evaluate_many returned {len(outcomes)} outcomes for {len(new)} chains"
                )
            for chain, outcome in zip(new, outcomes, strict=True):
                self._store(chain, outcome)
        else:
            for chain in new:  # stored one by one, so an error keeps what was paid for
                self._store(chain, self._evaluate(chain))
        out: list[Outcome] = []
        for chain in chains:
            if chain not in self.seen:
                break
            out.append(self.seen[chain])
        return out

    def _check(self, chain: Sequence[int]) -> Chain:
        chain = tuple(chain)
        if not chain:
            raise ValueError("a chain must not be empty")
        for i in chain:
            if not isinstance(i, int) or not 0 <= i < self.num_layers:
                raise ValueError(
                    f"bad layer index {i!r} in chain {chain} (allowed: ints in "
                    f"[0, {self.num_layers}))"
                )
        return chain

    def _store(self, chain: Chain, outcome: Outcome) -> Outcome:
        if not isinstance(outcome, Outcome):
            raise TypeError(f"evaluate must return an Outcome, got {type(outcome).__name__}")
        self.seen[chain] = outcome
        return outcome


@dataclass
class SearchResult:
    best_chain: Chain
    best_outcome: Outcome
    full_correct: bool
    evaluations: int  # distinct chains evaluated, the full chain included
    correct_chains: list[Chain] = field(default_factory=list)  # others, best-ranked first
    stopped_early: bool = False  # the searcher's early-stop rule ended the search


# ---------------------------------------------------------------------------------------
# Settings: one frozen dataclass per searcher, checked on construction.


def _bad(name: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"bad value for setting '{name}': {value!r} (allowed: {allowed})")


def check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    # bool is an int subclass; `budget=True` is a mistake, not 1.
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= lo
    if not ok or (hi is not None and value > hi):
        allowed = f"an int >= {lo}" if hi is None else f"an int in [{lo}, {hi}]"
        raise _bad(name, value, allowed)
    return value


def check_float(name: str, value: Any, lo: float, hi: float | None = None) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < lo or (hi is not None and value > hi):
        allowed = f"a finite number >= {lo}" if hi is None else f"a number in [{lo}, {hi}]"
        raise _bad(name, value, allowed)
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _bad(name, value, "True or False")
    return value


def check_sizes(name: str, value: Any) -> tuple[int, ...]:
    allowed = "a non-empty tuple of ints >= 1"
    if not isinstance(value, tuple | list) or not value:
        raise _bad(name, value, allowed)
    for v in value:
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise _bad(name, value, allowed)
    return tuple(sorted(set(value)))  # canonical form, so records compare equal


@dataclass(frozen=True)
class SearchSettings:
    """Settings every searcher has. Subclasses add theirs and extend `check`."""

    budget: int = 200  # distinct chain evaluations per sample, the full chain included
    min_len: int = 1
    max_len: int | None = None  # None: 2 * num_layers

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        check_int("budget", self.budget, 1)
        check_int("min_len", self.min_len, 1)
        if self.max_len is not None:
            check_int("max_len", self.max_len, self.min_len)

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # normalising a frozen field in check()

    def length_bounds(self, num_layers: int) -> tuple[int, int]:
        hi = 2 * num_layers if self.max_len is None else self.max_len
        if self.min_len > hi:
            raise ValueError(f"min_len {self.min_len} > max_len {hi} for {num_layers} layers")
        return self.min_len, hi


@dataclass(frozen=True)
class EarlyStopSettings(SearchSettings):
    """Settings of the searchers that walk the skip/repeat action space (mcts, random)."""

    skip_sizes: tuple[int, ...] = (1, 2)  # remove this many consecutive positions
    repeat_sizes: tuple[int, ...] = (1,)  # insert this many extra copies of one position
    early_stop: bool = True
    min_shorter: int = 2

    def check(self) -> None:
        super().check()
        self._set("skip_sizes", check_sizes("skip_sizes", self.skip_sizes))
        self._set("repeat_sizes", check_sizes("repeat_sizes", self.repeat_sizes))
        check_bool("early_stop", self.early_stop)
        check_int("min_shorter", self.min_shorter, 1)


# ---------------------------------------------------------------------------------------
# Rules shared by the searchers.


def neighbours(
    chain: Chain, skip_sizes: Iterable[int], repeat_sizes: Iterable[int], lo: int, hi: int
) -> list[Chain]:
    """Distinct chains one action away, in a fixed order (skips, then repeats).

    skip k at i: drop positions i..i+k-1.  repeat k at i: insert k extra copies of
    position i right after it. Only chains with lo <= len <= hi are kept.
    """
    out: list[Chain] = []
    for k in skip_sizes:
        out += [chain[:i] + chain[i + k :] for i in range(len(chain) - k + 1)]
    for k in repeat_sizes:
        out += [chain[: i + 1] + (chain[i],) * k + chain[i + 1 :] for i in range(len(chain))]
    return [c for c in dict.fromkeys(out) if c and lo <= len(c) <= hi]


def rank_key(chain: Chain, outcome: Outcome) -> tuple:
    """Sort key among correct chains: shortest, then higher score, then lexicographic."""
    return (len(chain), -outcome.score, chain)


def pick_best(seen: dict[Chain, Outcome], full: Chain) -> tuple[Chain, list[Chain]]:
    """(best chain, the other correct chains best-ranked first). No correct: full."""
    correct = sorted((c for c, o in seen.items() if o.correct), key=lambda c: rank_key(c, seen[c]))
    best = correct[0] if correct else full
    return best, [c for c in correct if c != best]


def early_stop_hit(
    chain: Chain, outcome: Outcome, full_correct: bool, num_layers: int, min_shorter: int
) -> bool:
    """The paper's stop rule: if the full chain is wrong, any correct chain ends the
    search; if it is right, a correct chain at least `min_shorter` layers shorter does."""
    if not outcome.correct:
        return False
    return not full_correct or len(chain) <= num_layers - min_shorter


def begin(evaluator: ChainEvaluator, keep_correct: int) -> Outcome:
    """Start a search: check the arguments, then evaluate the full chain (always first)."""
    check_int("keep_correct", keep_correct, 0)
    return evaluator(evaluator.full)


def make_result(evaluator: ChainEvaluator, keep_correct: int, stopped_early: bool) -> SearchResult:
    full = evaluator.full
    best, others = pick_best(evaluator.seen, full)
    result = SearchResult(
        best_chain=best,
        best_outcome=evaluator(best),  # memoized: costs nothing
        full_correct=evaluator(full).correct,
        evaluations=evaluator.evaluations,
        correct_chains=others[:keep_correct],
        stopped_early=stopped_early,
    )
    log.debug(
        "search done: best %s (%d layers) after %d evaluations", best, len(best), result.evaluations
    )
    return result


# ---------------------------------------------------------------------------------------
# The interface.


class Searcher(ABC):
    """A per-sample chain searcher. Construct with keyword settings, then `search`."""

    name: ClassVar[str]
    Settings: ClassVar[type[SearchSettings]] = SearchSettings

    def __init__(self, **settings: Any) -> None:
        allowed = sorted(f.name for f in fields(self.Settings))
        for key in settings:
            if key not in allowed:
                raise ValueError(
                    f"unknown setting '{key}' for searcher '{self.name}'; "
                    f"allowed: {', '.join(allowed)}"
                )
        try:
            self.settings = self.Settings(**settings)
        except ValueError as err:
            raise ValueError(f"searcher '{self.name}': {err}") from None

    def settings_dict(self) -> dict[str, Any]:
        """The effective settings, defaults filled in, for records."""
        return asdict(self.settings)

    def make_evaluator(
        self,
        evaluate: Callable[[Chain], Outcome],
        num_layers: int,
        evaluate_many: Callable[[list[Chain]], list[Outcome]] | None = None,
    ) -> ChainEvaluator:
        """A fresh per-sample evaluator with this searcher's `budget`."""
        return ChainEvaluator(evaluate, num_layers, self.settings.budget, evaluate_many)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings_dict().items())
        return f"{type(self).__name__}({args})"

    @abstractmethod
    def search(self, evaluator: ChainEvaluator, seed: int, keep_correct: int = 5) -> SearchResult:
        """Search one sample. The evaluator's budget is the hard cap on evaluations."""
