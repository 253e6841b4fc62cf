"""`random`: random chains from the same action space as `mcts`, as its control.

Each draw applies 1..max_actions random actions to the full chain (each step picks
uniformly among the distinct chains one action away), in the action space of the settings
(`actions`, `block_sizes`, `loop_repeats`, or the older `skip_sizes`, `repeat_sizes`; see
actions.py). Same budget meaning and early-stop rule as `mcts`, so the two are comparable
at equal cost.

By default it asks for one chain at a time, so it never spends an evaluation past an
early stop; batching across samples is the caller's job (see base.py). `parallel=W` asks a
round of W chains at once (fewer where the budget or the draws left are fewer): the next
draws of the same random sequence, a draw already evaluated or already in the round
skipped (it costs a draw, as before). After the round's outcomes the early stop is checked
in draw order; the round's other chains are spent all the same, and the result is the
rules' (base.py) over every chain evaluated. So W = 1 is the sequence of before, and a
larger W draws the same chains while the search goes on, but may pass an early stop by up
to W - 1 evaluations.
"""

import logging
import random
from dataclasses import dataclass

from lm_eval_cola.search.searchers.actions import ActionSpace
from lm_eval_cola.search.searchers.base import (
    Chain,
    EarlyStopSettings,
    Ledger,
    Searcher,
    SearchRun,
    begin,
    check_int,
    early_stop_hit,
    make_result,
    stops_as_right,
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
        space = s.action_space(ledger.num_layers)
        stop_right = stops_as_right(ledger, (yield from begin(ledger, keep_correct)))
        draws_left = DRAWS_PER_EVALUATION * ledger.budget
        width = check_int("parallel", s.parallel, 1)
        while ledger.remaining > 0 and draws_left > 0:
            round_: list[Chain] = []
            while len(round_) < min(width, ledger.remaining) and draws_left > 0:
                draws_left -= 1
                chain = self._draw(ledger.full, rng, space)
                if chain not in ledger.seen and chain not in round_:
                    round_.append(chain)  # else known already: draw again
            if not round_:
                break  # the draws ran out
            outcomes = yield from ledger.ask_many(round_)
            for chain, outcome in zip(round_, outcomes, strict=True):
                if s.early_stop and early_stop_hit(
                    chain, outcome, stop_right, ledger.num_layers, s.min_shorter
                ):
                    log.debug("early stop at %s", chain)
                    return make_result(ledger, keep_correct, stopped_early=True)
        return make_result(ledger, keep_correct, stopped_early=False)

    def _draw(self, chain: Chain, rng: random.Random, space: ActionSpace) -> Chain:
        for _ in range(rng.randint(1, self.settings.max_actions)):
            options = space.chains(chain)
            if not options:
                break
            chain = rng.choice(options)
        return chain
