"""The searcher interface: chains, outcomes, the ledger, the ask/tell protocol and the
shared rules.

A searcher looks, for one sample, for a chain of decoder-layer indices that answers the
sample right with as few layers as possible ("oracle mode"). It never evaluates a chain
itself: `Searcher.search(ledger, seed)` is a generator (a `SearchRun`) that PROPOSES
chains and is TOLD their outcomes:

    ledger, run = searcher.start(num_layers, seed)
    chains = next(run)                   # a non-empty list of distinct new chains
    chains = run.send(outcomes)          # their Outcomes, same order; repeat until
    ... StopIteration.value              # the SearchResult

Each yielded chain is new to `ledger.seen` and within the budget, so a caller can batch
the chains of many samples' runs into one forward pass; `run_search` is the synchronous
driver for tests and simple callers. Inside a searcher every question goes through the
`Ledger` (`outcome = yield from ledger.ask(chain)`), which memoizes and keeps the budget.
Nothing here knows about lm-eval, torch or transformers.

Rules shared by every searcher (so their results are comparable):
- the full chain `tuple(range(L))` is asked first; its correctness is `full_correct`;
- `budget` counts distinct chains evaluated, the full chain included; a memoized chain
  is free;
- the best chain is the shortest correct one (ties: higher score, then the
  lexicographically smaller chain); with no correct chain it is the full chain;
- `pareto` is the correct chains no other correct chain beats on both length and score
  (see `pareto_front`); a chain whose score is not finite is never correct;
- every chain other than the full one is non-empty, uses indices in [0, L) and has
  `min_len <= len <= max_len` (`max_len` defaults to 2L);
- results depend only on (the outcomes told, budget, seed, settings): randomness comes
  from `random.Random(seed)`, never the global generator.
"""

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from lm_eval_cola.chains.syntax import Chain, full_chain
from lm_eval_cola.search.searchers.actions import ActionSpace
from lm_eval_cola.search.searchers.protocols import apply_protocol
from lm_eval_cola.search.searchers.settings import (  # noqa: F401 - re-exported for the searchers
    ActionSettings,
    EarlyStopSettings,
    SearchSettings,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_sizes,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What one chain does on one sample."""

    correct: bool  # the task's own metric says this chain answers the sample right
    score: float  # graded signal, higher is better; used for guidance and ties only

    def __post_init__(self) -> None:
        # A heavily edited chain can overflow to NaN or infinite logits. Such a chain is
        # broken, whatever its answer happened to be: NaN would break every sort below, so
        # any non-finite score becomes -inf ("worst possible") and the chain never counts
        # as correct (so it is never best, never in `pareto`, never an early stop).
        score = float(self.score)
        finite = math.isfinite(score)
        object.__setattr__(self, "score", score if finite else -math.inf)
        object.__setattr__(self, "correct", bool(self.correct) and finite)


class BudgetExhausted(Exception):
    """A new chain was asked for after the sample's evaluation budget was spent."""


# What `yield from ledger.ask...` and the helpers built on it are: they yield lists of new
# chains, are sent the outcomes back, and return a T.
T = TypeVar("T")
Asks = Generator[list[Chain], list[Outcome], T]


class Ledger:
    """One sample's record of evaluated chains: memo, budget and chain checks.

    The ledger never evaluates anything. Its `ask`/`ask_many` are generator helpers a
    searcher calls with `yield from`: a chain already in `seen` is answered at once and
    costs nothing; new chains are yielded to the caller as one list, and the outcomes
    the caller sends back (same order) are checked and stored. `budget` caps the
    distinct chains ever stored.
    """

    def __init__(self, num_layers: int, budget: int, stop_as_right: bool | None = None) -> None:
        check_int("num_layers", num_layers, 1)
        check_int("budget", budget, 1)
        self.num_layers = num_layers
        self.budget = budget
        # Which early-stop rule applies (see `stops_as_right`): None, the full chain's own
        # outcome decides (every real search); a bool, the caller fixes it (a search
        # toward another target, e.g. the decoy, stops under the rule of the real search).
        self.stop_as_right = stop_as_right
        self.seen: dict[Chain, Outcome] = {}  # in evaluation order

    @property
    def full(self) -> Chain:
        return full_chain(self.num_layers)

    @property
    def evaluations(self) -> int:
        return len(self.seen)

    @property
    def remaining(self) -> int:
        return self.budget - self.evaluations

    def ask(self, chain: Sequence[int]) -> Asks[Outcome]:
        """`outcome = yield from ledger.ask(chain)`: the chain's outcome.

        A memoized chain returns without yielding; a new one is yielded as `[chain]` and
        costs one budget unit. Raises BudgetExhausted for a new chain once the budget
        is spent.
        """
        chain = self._check(chain)
        if chain in self.seen:
            return self.seen[chain]
        if self.remaining <= 0:
            raise BudgetExhausted(f"budget of {self.budget} evaluations spent")
        (outcome,) = yield from self._request([chain])
        return outcome

    def ask_many(self, chains: Iterable[Sequence[int]]) -> Asks[list[Outcome]]:
        """`outcomes = yield from ledger.ask_many(chains)`: batch form of `ask`.

        New chains (not in `seen`, duplicates dropped) are yielded as one list in order
        of first appearance, cut to the remaining budget; none new: no yield. Returns
        the outcomes of the longest prefix of `chains` whose chains are all known now:
        `out[i]` belongs to `chains[i]`, and `len(out) < len(chains)` exactly when the
        budget cut the batch short (the first chain it could not afford is
        `chains[len(out)]`). Raises BudgetExhausted only when some chain is new and the
        budget was already spent, i.e. nothing could be asked.
        """
        chains = [self._check(c) for c in chains]
        new = list(dict.fromkeys(c for c in chains if c not in self.seen))
        if new and self.remaining <= 0:
            raise BudgetExhausted(f"budget of {self.budget} evaluations spent")
        new = new[: self.remaining]
        if new:
            yield from self._request(new)
        out: list[Outcome] = []
        for chain in chains:
            if chain not in self.seen:
                break
            out.append(self.seen[chain])
        return out

    def outcome(self, chain: Sequence[int]) -> Outcome:
        """The outcome of a chain already in `seen`; never yields, costs nothing."""
        chain = self._check(chain)
        if chain not in self.seen:
            raise KeyError(f"chain {chain} has not been evaluated")
        return self.seen[chain]

    def _request(self, chains: list[Chain]) -> Asks[list[Outcome]]:
        told = yield list(chains)  # a copy: what the caller does with it cannot reach `seen`
        # Checked in full before anything is stored, so a bad reply leaves `seen` as it
        # was; the error is raised inside the searcher and ends its run.
        if not isinstance(told, list | tuple):
            raise TypeError(
                f"send back a list of Outcome for {len(chains)} chains, got {type(told).__name__}"
            )
        if len(told) != len(chains):
            raise ValueError(f"got {len(told)} outcomes for {len(chains)} chains")
        for outcome in told:
            if not isinstance(outcome, Outcome):
                raise TypeError(f"expected an Outcome, got {type(outcome).__name__}")
        self.seen.update(zip(chains, told, strict=True))
        return list(told)

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


@dataclass
class SearchResult:
    best_chain: Chain
    best_outcome: Outcome
    full_correct: bool
    evaluations: int  # distinct chains evaluated, the full chain included
    correct_chains: list[Chain] = field(default_factory=list)  # others, best-ranked first
    stopped_early: bool = False  # the searcher's early-stop rule ended the search
    # The correct chains on the (shorter, higher score) Pareto front, shortest first (see
    # `pareto_front`); its first chain is `best_chain`. Empty when no chain was correct.
    pareto: list[Chain] = field(default_factory=list)
    # What a reader of the result should know about how the search went, for its record
    # (e.g. mcts mode deep: {"root_scan": 56, "root_scan_exceeds_budget": False}). JSON-able.
    notes: dict[str, Any] = field(default_factory=dict)


# A searcher's run over one sample: yields lists of new chains, is sent their outcomes (same
# order), returns the result.
SearchRun = Generator[list[Chain], list[Outcome], SearchResult]


# ---------------------------------------------------------------------------------------
# Rules shared by the searchers.


def neighbours(
    chain: Chain, skip_sizes: Iterable[int], repeat_sizes: Iterable[int], lo: int, hi: int
) -> list[Chain]:
    """Distinct chains one action of the older space away, in a fixed order (skips, then
    repeats): `ActionSpace.legacy(...).chains(chain)` (see actions.py).

    skip k at i: drop positions i..i+k-1.  repeat k at i: insert k extra copies of
    position i right after it. Only chains with lo <= len <= hi are kept.
    """
    return ActionSpace.legacy(tuple(skip_sizes), tuple(repeat_sizes), lo, hi).chains(chain)


def rank_key(chain: Chain, outcome: Outcome) -> tuple:
    """Sort key among correct chains: shortest, then higher score, then lexicographic."""
    return (len(chain), -outcome.score, chain)


def pick_best(seen: dict[Chain, Outcome], full: Chain) -> tuple[Chain, list[Chain]]:
    """(best chain, the other correct chains best-ranked first). No correct: full."""
    correct = sorted((c for c, o in seen.items() if o.correct), key=lambda c: rank_key(c, seen[c]))
    best = correct[0] if correct else full
    return best, [c for c in correct if c != best]


def pareto_front(seen: dict[Chain, Outcome]) -> list[Chain]:
    """The correct chains that no other correct chain beats on both counts (no longer and
    no lower score, better on one), one per length, shortest first.

    For each length among the correct chains the best one by `rank_key` (higher score,
    then lexicographically smaller); then, going up in length, a chain is kept only if its
    score is strictly higher than that of every shorter chain kept. So scores rise strictly
    along the list, and its first chain is `pick_best`'s best.
    """
    best_per_length: dict[int, Chain] = {}
    correct = sorted((c for c, o in seen.items() if o.correct), key=lambda c: rank_key(c, seen[c]))
    for chain in correct:
        best_per_length.setdefault(len(chain), chain)
    front: list[Chain] = []
    for length in sorted(best_per_length):
        chain = best_per_length[length]
        if not front or seen[chain].score > seen[front[-1]].score:
            front.append(chain)
    return front


def early_stop_hit(
    chain: Chain, outcome: Outcome, full_correct: bool, num_layers: int, min_shorter: int
) -> bool:
    """The paper's stop rule: if the full chain is wrong, any correct chain ends the
    search; if it is right, a correct chain at least `min_shorter` layers shorter does."""
    if not outcome.correct:
        return False
    return not full_correct or len(chain) <= num_layers - min_shorter


def stops_as_right(ledger: Ledger, full_outcome: Outcome) -> bool:
    """The `full_correct` that `early_stop_hit` takes: the ledger's `stop_as_right` where
    the caller set one, else whether the full chain itself is correct. A decoy search on a
    sample the full chain gets right is so held to the real search's rule (stop only at a
    hit `min_shorter` shorter), though its full chain never answers the decoy."""
    return full_outcome.correct if ledger.stop_as_right is None else ledger.stop_as_right


def begin(ledger: Ledger, keep_correct: int) -> Asks[Outcome]:
    """Start a search: check the arguments, then ask for the full chain (always first).

    `full_outcome = yield from begin(ledger, keep_correct)`.
    """
    check_int("keep_correct", keep_correct, 0)
    return (yield from ledger.ask(ledger.full))


def make_result(
    ledger: Ledger, keep_correct: int, stopped_early: bool, notes: dict[str, Any] | None = None
) -> SearchResult:
    """The search's result from what the ledger holds (asks for nothing)."""
    full = ledger.full
    best, others = pick_best(ledger.seen, full)
    result = SearchResult(
        best_chain=best,
        best_outcome=ledger.outcome(best),
        full_correct=ledger.outcome(full).correct,
        evaluations=ledger.evaluations,
        correct_chains=others[:keep_correct],
        stopped_early=stopped_early,
        pareto=pareto_front(ledger.seen),
        notes=dict(notes or {}),
    )
    log.debug(
        "search done: best %s (%d layers) after %d evaluations", best, len(best), result.evaluations
    )
    return result


# ---------------------------------------------------------------------------------------
# The interface.


class Searcher(ABC):
    """A per-sample chain searcher. Construct with keyword settings, then `start`."""

    name: ClassVar[str]
    Settings: ClassVar[type[SearchSettings]] = SearchSettings
    oracle: ClassVar[bool] = True
    """Whether results depend on the gold answer: True for a searcher that picks chains by
    their correctness (mcts, greedy, random); False for one whose answer never depends on
    it (`none` runs the full chain only), so its scores are not oracle numbers."""

    def __init__(self, **settings: Any) -> None:
        allowed = sorted(f.name for f in fields(self.Settings))
        for key in settings:
            if key not in allowed:
                raise ValueError(
                    f"unknown setting '{key}' for searcher '{self.name}'; "
                    f"allowed: {', '.join(allowed)}"
                )
        settings = apply_protocol(settings, allowed)  # a preset under the explicit settings
        try:
            self.settings = self.Settings(**settings)
        except ValueError as err:
            raise ValueError(f"searcher '{self.name}': {err}") from None

    def settings_dict(self) -> dict[str, Any]:
        """The effective settings, defaults filled in, for records."""
        return asdict(self.settings)

    def start(self, num_layers: int, seed: int, keep_correct: int = 5,
              stop_as_right: bool | None = None) -> tuple[Ledger, SearchRun]:
        """A fresh ledger with this searcher's `budget`, and the search run over it.
        `stop_as_right`: which early-stop rule applies (see `stops_as_right`); None, the
        full chain's own outcome decides."""
        check_int("keep_correct", keep_correct, 0)  # here too, so the error comes at once
        ledger = Ledger(num_layers, self.settings.budget, stop_as_right)
        return ledger, self.search(ledger, seed, keep_correct)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings_dict().items())
        return f"{type(self).__name__}({args})"

    @abstractmethod
    def search(self, ledger: Ledger, seed: int, keep_correct: int = 5) -> SearchRun:
        """Search one sample: a generator that yields chains to evaluate and returns the
        SearchResult. Ask only through `ledger` (`yield from ledger.ask(...)`), so the
        budget and the memo hold."""


def run_search(
    searcher: Searcher,
    evaluate: Callable[[Chain], Outcome],
    num_layers: int,
    seed: int,
    keep_correct: int = 5,
    evaluate_many: Callable[[list[Chain]], list[Outcome]] | None = None,
) -> SearchResult:
    """Run one search to the end synchronously: each list of chains it yields goes to
    `evaluate_many(chains)` if given, else to `evaluate(chain)` chain by chain."""
    _, run = searcher.start(num_layers, seed, keep_correct)
    outcomes: list[Outcome] | None = None  # sending None first is `next(run)`
    while True:
        try:
            chains = run.send(outcomes)  # type: ignore[arg-type]
        except StopIteration as stop:
            return stop.value
        if evaluate_many is not None:
            outcomes = list(evaluate_many(chains))
        else:
            outcomes = [evaluate(chain) for chain in chains]
