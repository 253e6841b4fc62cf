"""Protocol presets: `protocol=NAME` sets a documented bundle of searcher settings.

A preset is applied before the explicit settings, which override it
(`searcher=mcts,protocol=cola,budget=50` is the cola protocol at 50 evaluations), and the
name stays in the settings, so records say which protocol a run followed. A searcher takes
the preset's settings it has: for `random` and `greedy` that is the action space, the budget
and early stop, which makes `searcher=random,protocol=cola` the paper's space searched at
random at the same cost, the control for `searcher=mcts,protocol=cola`.

`cola` -- "Skip a Layer or Loop it? Test-Time Depth Adaptation of Pretrained LLMs" (Li, Li,
Zhou 2025), the paper as written: actions skip and loop of blocks of k = 1..4 positions,
loops run r = 1..4 more times (Table 1's CoLa column; `actions=skip` / `actions=loop` give
its skip-only and recurrence-only columns); 200 simulations; selection by
UCB(P) = Q/v + c*sqrt(ln V / v) - lambda*|P|/L with lambda = 5; a random unexplored child
with probability 0.1; the Pareto-optimal correct paths are returned (`SearchResult.pareto`,
which every searcher fills). Where the paper is silent this preset uses mcts's deep mode
(mcts.py, mcts_deep.py): how a node with ~600 children is widened (a root scan of the
single-layer edits, progressive widening, expansion ordered by predicted gain), Q as the
best reward in a subtree, c = 0 (the paper writes c but gives no value; in the deep mode any
exploration bonus spreads simulations over siblings that score alike, and exploration comes
from widening and the 0.1 random unexplored child), and no early stop (it returns a Pareto
set, so it spends its budget). Departures: Q is the graded reward ((score + 0.5) / 2: 0/1
correctness plus the gold's log-likelihood margin, so every correct chain still outranks
every wrong one) instead of bare 0/1 correctness, because with 0/1 rewards all wrong chains
tie and the statistics cannot lead the search towards a fix; "200 simulations" is
`budget=200` distinct evaluations (a simulation that reaches a chain already evaluated
along another path costs nothing here and is not counted). Measured on the planted-chain
fake of tests/test_mcts_deep.py it finds the chain in 27 of 40 seeds, against 40 of 40 for
`mode=deep` with its own defaults (lambda 3, no random child): the random children cost
evaluations, and lambda = 5 weighs a layer more than most edits gain.

`drllm` -- the public data-generation code of Dr.LLM ("Dynamic Layer Routing in LLMs",
Heakl et al. 2025), which this project's `mcts` followed from the start: 200 simulations,
c = 1.8, lambda = 3 in the UCB, skip 1 or 2 positions, repeat one position once, the
descend-to-leaf walk (a node never gets a second child), a random child with probability
0.1, 0/1 reward, early stop on the first fix of a wrong full chain or on a correct chain at
least 2 layers shorter than a right one. It is exactly `searcher=mcts,descend_to_leaf=True`;
no departure.

`polar` -- the MCTS of PoLar ("Skip a Layer or Loop It? Learning Program-of-Layers in LLMs",
the later version of the paper): 100 simulations (`budget=100`), lambda = 5, exploration
sqrt(2 ln(N_root + 1) / n) (`exploration=root`, c = sqrt(2)), skip and loop where blocks of
2-4 layers are allowed only at the root and single layers below it (`root_block_sizes`),
at most 2 copies of a layer (`max_copies=2`, so a loop runs a layer once more), a leaf
expands all its children and evaluates one of them at random (`mode=expand_all`), no early
stop. Its per-model length bounds are `min_len` / `max_len`, which the preset leaves as
given (set them per model). Departures: the reward is 0/1 correctness and lambda is charged
in the UCB as in cola's formula, which PoLar's text does not spell out; no random-child
step (it names none).
"""

import math
from collections.abc import Iterable, Mapping
from typing import Any

PROTOCOLS: dict[str, dict[str, Any]] = {
    "cola": {
        "budget": 200,
        "mode": "deep",
        "reward": "graded",
        "actions": ("skip", "loop"),
        "block_sizes": (1, 2, 3, 4),
        "loop_repeats": (1, 2, 3, 4),
        "length_penalty": 5.0,
        "c": 0.0,
        "random_prob": 0.1,
        "early_stop": False,
    },
    "drllm": {
        "budget": 200,
        "mode": "uct",
        "reward": "correct",
        "skip_sizes": (1, 2),
        "repeat_sizes": (1,),
        "c": 1.8,
        "length_penalty": 3.0,
        "random_prob": 0.1,
        "descend_to_leaf": True,
        "early_stop": True,
        "min_shorter": 2,
    },
    "polar": {
        "budget": 100,
        "mode": "expand_all",
        "reward": "correct",
        "actions": ("skip", "loop"),
        "block_sizes": (1,),
        "root_block_sizes": (1, 2, 3, 4),
        "loop_repeats": (1,),
        "max_copies": 2,
        "length_penalty": 5.0,
        "exploration": "root",
        "c": math.sqrt(2.0),
        "random_prob": 0.0,
        "early_stop": False,
    },
}


def apply_protocol(settings: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """`settings` with its `protocol`'s preset filled in under them (explicit settings win);
    only the preset's settings among `fields` are taken. No protocol: `settings` as given.
    An unknown protocol is left for the settings' check to refuse, with the allowed names."""
    name = settings.get("protocol")
    if not isinstance(name, str) or name not in PROTOCOLS:
        return dict(settings)
    names = set(fields)
    return {**{k: v for k, v in PROTOCOLS[name].items() if k in names}, **settings}
