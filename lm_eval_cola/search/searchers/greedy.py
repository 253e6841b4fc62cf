"""`greedy`: greedy pruning, a cheap deterministic baseline for the tree search.

From a correct chain, try removing each single position (one batch through
`ledger.ask_many`), keep the removal that stays correct with the best graded score, and
repeat until no removal stays correct or the budget ends.

If the full chain is wrong there is nothing to prune yet, so first a rescue: try every
single skip and single repeat of the current chain (one batch); take the best-scoring
correct one, or if none is correct move to the best-scoring candidate and try again,
for up to `max_rounds` rounds. Then prune from the correct chain found.

With `actions` / `block_sizes` / `loop_repeats` (actions.py) the rescue tries every move of
that action space instead, and the pruning every skip of it (blocks of k positions; no
pruning when the space has no skip). Without them both are as described above.

Ties on score go to the shorter, then lexicographically smaller chain, so the result
depends on the outcomes alone; the seed is unused.

`parallel=W` asks a pass's candidates W at a time (one yield each), in the same order; the
default (None) asks each pass whole, as before. Greedy decides only once a pass is
answered, so every W asks the same chains in the same order and gives the same result: W
changes how many rows a batched forward holds, never what is found.
"""

import logging
from dataclasses import dataclass

from lm_eval_cola.search.searchers.actions import ActionSpace
from lm_eval_cola.search.searchers.base import (
    ActionSettings,
    Asks,
    BudgetExhausted,
    Chain,
    Ledger,
    Outcome,
    Searcher,
    SearchRun,
    begin,
    check_int,
    make_result,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GreedySettings(ActionSettings):
    budget: int = 200
    max_rounds: int = 2  # rescue rounds for a sample the full chain gets wrong
    parallel: int | None = None  # W chains per yield; None: a whole pass (module docstring)

    def check(self) -> None:
        super().check()
        check_int("max_rounds", self.max_rounds, 1)

    def check_parallel(self) -> None:
        if self.parallel is not None:
            check_int("parallel", self.parallel, 1)


def best_scoring(pairs: list[tuple[Chain, Outcome]]) -> Chain:
    return min(pairs, key=lambda p: (-p[1].score, len(p[0]), p[0]))[0]


def affordable(
    ledger: Ledger, chains: list[Chain], width: int | None = None
) -> Asks[list[tuple[Chain, Outcome]]]:
    """(chain, outcome) for the chains the budget still covers, in order: what
    `ledger.ask_many(chains)` answers, asked at most `width` new chains a yield (None: all
    in one) in the same order."""
    if width is not None:
        new = list(dict.fromkeys(c for c in chains if c not in ledger.seen))
        if new and ledger.remaining <= 0:
            return []  # as ask_many: nothing could be asked
        new = new[: ledger.remaining]
        for start in range(0, len(new), width):
            yield from ledger.ask_many(new[start : start + width])
        pairs = []
        for chain in chains:  # the longest known prefix, as ask_many returns it
            if chain not in ledger.seen:
                break
            pairs.append((chain, ledger.seen[chain]))
        return pairs
    try:
        outcomes = yield from ledger.ask_many(chains)
    except BudgetExhausted:
        return []
    return list(zip(chains, outcomes, strict=False))


class GreedySearcher(Searcher):
    name = "greedy"
    Settings = GreedySettings
    settings: GreedySettings

    def search(self, ledger: Ledger, seed: int, keep_correct: int = 5) -> SearchRun:
        space = self.settings.action_space(ledger.num_layers)
        full_correct = (yield from begin(ledger, keep_correct)).correct
        start = ledger.full if full_correct else (yield from self._rescue(ledger, space))
        if start is not None:
            yield from self._prune(ledger, start, space)
        return make_result(ledger, keep_correct, stopped_early=False)

    def _rescue(self, ledger: Ledger, space: ActionSpace) -> Asks[Chain | None]:
        current = ledger.full
        visited = {current}  # never move back to a chain we already left: no cycles
        for _ in range(self.settings.max_rounds):
            candidates = [c for c in space.chains(current) if c not in visited]
            pairs = yield from affordable(ledger, candidates, self.settings.parallel)
            if not pairs:
                return None
            correct = [p for p in pairs if p[1].correct]
            if correct:
                return best_scoring(correct)
            current = best_scoring(pairs)
            visited.add(current)
            log.debug("rescue: no correct neighbour, moving to %s", current)
        return None

    def _prune(self, ledger: Ledger, chain: Chain, space: ActionSpace) -> Asks[Chain]:
        pruning = space.skips_only()  # the older space's skip is one position
        while True:
            candidates = pruning.chains(chain)
            if not candidates:
                return chain
            pairs = yield from affordable(ledger, candidates, self.settings.parallel)
            correct = [p for p in pairs if p[1].correct]
            if not correct:
                return chain
            chain = best_scoring(correct)
