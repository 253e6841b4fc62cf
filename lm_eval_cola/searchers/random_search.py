"""`random`: random chains from the same action space as `mcts`, as its control.

Each draw applies 1..max_actions random skip/repeat actions to the full chain (each
step picks uniformly among the distinct chains one action away). Same budget meaning
and early-stop rule as `mcts`, so the two are comparable at equal cost.
"""

import logging
import random
from dataclasses import dataclass

from lm_eval_cola.searchers.base import (
    Chain,
    ChainEvaluator,
    EarlyStopSettings,
    Searcher,
    SearchResult,
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
    # Chains evaluated per `evaluator.many` call. Larger batches run faster on an
    # accelerator but may spend up to batch_size - 1 evaluations past an early stop.
    batch_size: int = 1

    def check(self) -> None:
        super().check()
        check_int("max_actions", self.max_actions, 1)
        check_int("batch_size", self.batch_size, 1)


class RandomSearcher(Searcher):
    name = "random"
    Settings = RandomSettings
    settings: RandomSettings

    def search(self, evaluator: ChainEvaluator, seed: int, keep_correct: int = 5) -> SearchResult:
        s = self.settings
        rng = random.Random(seed)
        bounds = s.length_bounds(evaluator.num_layers)
        full_correct = begin(evaluator, keep_correct).correct
        draws_left = DRAWS_PER_EVALUATION * evaluator.budget
        while evaluator.remaining > 0 and draws_left > 0:
            batch: list[Chain] = []
            while len(batch) < min(s.batch_size, evaluator.remaining) and draws_left > 0:
                draws_left -= 1
                chain = self._draw(evaluator.full, rng, bounds)
                if chain not in evaluator.seen and chain not in batch:
                    batch.append(chain)
            for chain, outcome in zip(batch, evaluator.many(batch), strict=True):
                if s.early_stop and early_stop_hit(
                    chain, outcome, full_correct, evaluator.num_layers, s.min_shorter
                ):
                    log.debug("early stop at %s", chain)
                    return make_result(evaluator, keep_correct, stopped_early=True)
        return make_result(evaluator, keep_correct, stopped_early=False)

    def _draw(self, chain: Chain, rng: random.Random, bounds: tuple[int, int]) -> Chain:
        s = self.settings
        for _ in range(rng.randint(1, s.max_actions)):
            options = neighbours(chain, s.skip_sizes, s.repeat_sizes, *bounds)
            if not options:
                break
            chain = rng.choice(options)
        return chain
