"""`random`: random chains from the same action space as `mcts`, as its control.

Each draw applies 1..max_actions random skip/repeat actions to the full chain (each
step picks uniformly among the distinct chains one action away). Same budget meaning
and early-stop rule as `mcts`, so the two are comparable at equal cost.

It asks for one chain at a time, so it never spends an evaluation past an early stop;
batching across samples is the caller's job (see base.py).
"""

import logging
import random
from dataclasses import dataclass

from lm_eval_cola.searchers.base import (
    Chain,
    EarlyStopSettings,
    Ledger,
    Searcher,
    SearchRun,
    begin,
    check_int,
    early_stop_hit,
    make_result,
    neighbours,
)

log = logging.getLogger(__name__)

DRAWS_PER_EVALUATION = 20  # cap on draws: a draw of a memoized chain is free, so bound them


@dataclass(frozen=True)
class RandomSettings(EarlyStopSettings):
    budget: int = 200
    max_actions: int = 4

    def check(self) -> None:
        super().check()
        check_int("max_actions", self.max_actions, 1)


class RandomSearcher(Searcher):
    name = "random"
    Settings = RandomSettings
    settings: RandomSettings

    def search(self, ledger: Ledger, seed: int, keep_correct: int = 5) -> SearchRun:
        s = self.settings
        rng = random.Random(seed)
        bounds = s.length_bounds(ledger.num_layers)
        full_correct = (yield from begin(ledger, keep_correct)).correct
        draws_left = DRAWS_PER_EVALUATION * ledger.budget
        while ledger.remaining > 0 and draws_left > 0:
            draws_left -= 1
            chain = self._draw(ledger.full, rng, bounds)
            if chain in ledger.seen:
                continue  # known already: draw again
            outcome = yield from ledger.ask(chain)
            if s.early_stop and early_stop_hit(
                chain, outcome, full_correct, ledger.num_layers, s.min_shorter
            ):
                log.debug("early stop at %s", chain)
                return make_result(ledger, keep_correct, stopped_early=True)
        return make_result(ledger, keep_correct, stopped_early=False)

    def _draw(self, chain: Chain, rng: random.Random, bounds: tuple[int, int]) -> Chain:
        s = self.settings
        for _ in range(rng.randint(1, s.max_actions)):
            options = neighbours(chain, s.skip_sizes, s.repeat_sizes, *bounds)
            if not options:
                break
            chain = rng.choice(options)
        return chain
