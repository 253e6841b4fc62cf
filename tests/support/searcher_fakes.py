"""Fake per-sample answers whose right chains are known, and drivers for the searchers' tests."""

from collections.abc import Callable, Generator
from typing import Any

from lm_eval_cola.search.searchers import (
    Chain,
    Ledger,
    Outcome,
    Searcher,
    SearchResult,
    get_searcher,
    pick_best,
)

L = 8
FULL = tuple(range(L))
PLANTED_REPEAT = (0, 1, 2, 2, 3, 4, 5, 6, 7)
SEARCHING = ["mcts", "greedy", "random"]


class Fake:
    """A raw evaluate function with a known answer that logs every call it gets."""

    def __init__(self, correct: Callable[[Chain], bool], score: Callable[[Chain], float]):
        self.correct = correct
        self.score = score
        self.calls: list[Chain] = []
        self.batches: list[int] = []

    def __call__(self, chain: Chain) -> Outcome:
        self.calls.append(chain)
        return Outcome(self.correct(chain), self.score(chain))

    def many(self, chains: list[Chain]) -> list[Outcome]:
        self.batches.append(len(chains))
        return [self(c) for c in chains]


def skip3_keep5() -> Fake:
    """Full chain wrong; right iff layer 3 is skipped and layer 5 kept. Shortest: (5,)."""
    return Fake(lambda c: 3 not in c and 5 in c, lambda c: -len(c) / L + 0.01 * c.count(5))


def needs_146() -> Fake:
    """Full chain right; monotone: right iff layers 1, 4 and 6 are all in. Shortest: (1, 4, 6)."""
    return Fake(lambda c: {1, 4, 6} <= set(c), lambda c: -len(c) + 0.01 * sum(c))


def repeat2() -> Fake:
    """Full chain wrong; only the full chain with layer 2 repeated once is right."""
    return Fake(lambda c: c == PLANTED_REPEAT, lambda c: c.count(2) - 0.1 * abs(len(c) - L))


def never() -> Fake:
    return Fake(lambda c: False, lambda c: -sum(c) / 100)


def answer(
    gen: Generator[list[Chain], list[Outcome], Any], fake: Fake, ledger: Ledger, batched=False
):
    """Drive an ask/tell generator to its end by hand, checking the protocol at every
    yield: non-empty, distinct, new to the ledger, within its budget. Returns (its value,
    what it yielded)."""
    yields: list[list[Chain]] = []
    told: list[Outcome] | None = None
    while True:
        try:
            chains = gen.send(told)  # type: ignore[arg-type]
        except StopIteration as stop:
            return stop.value, yields
        assert isinstance(chains, list) and chains and len(set(chains)) == len(chains)
        assert not any(c in ledger.seen for c in chains) and len(chains) <= ledger.remaining
        yields.append(chains)
        told = fake.many(chains) if batched else [fake(c) for c in chains]


def run(name: str, fake: Fake, seed: int = 0, batched: bool = False, **settings):
    return run_searcher(get_searcher(name, **settings), fake, seed, batched)


def run_searcher(searcher: Searcher, fake: Fake, seed: int = 0, batched: bool = False):
    ledger, search = searcher.start(L, seed)
    result, _ = answer(search, fake, ledger, batched)
    return result, ledger


def check_invariants(result: SearchResult, ledger: Ledger, fake: Fake) -> None:
    assert fake.calls[0] == FULL  # the root is always evaluated first
    assert len(fake.calls) == len(set(fake.calls)) == ledger.evaluations
    assert list(ledger.seen) == fake.calls  # in evaluation order
    assert result.evaluations == ledger.evaluations <= ledger.budget
    assert result.full_correct == fake.correct(FULL)
    for chain in [result.best_chain, *result.correct_chains]:
        assert chain in fake.calls
    for chain in result.correct_chains:
        assert fake.correct(chain)
    assert result.best_chain not in result.correct_chains
    assert len(set(result.correct_chains)) == len(result.correct_chains)
    assert result.best_outcome == ledger.seen[result.best_chain]
    best, others = pick_best(ledger.seen, FULL)
    assert result.best_chain == best
    assert result.correct_chains == others[: len(result.correct_chains)]

