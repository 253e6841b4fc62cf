"""Protocol presets: `protocol=NAME` sets a documented bundle of searcher settings.

A preset is applied before the explicit settings, which override it
(`searcher=mcts,protocol=cola,budget=50` is the cola protocol at 50 evaluations), and the
name stays in the settings, so records say which protocol a run followed (records keep every
setting, so a record written before a preset changed still says what it ran). A searcher
takes the preset's settings it has: for `random` and `greedy` that is the action space, the
budget and early stop, which makes `searcher=random,protocol=cola` the paper's space searched
at random at the same cost, the control for `searcher=mcts,protocol=cola`.

docs/protocols.md lists every preset's departures from its source, one line each; in short:

`cola` -- "Skip a Layer or Loop it? Test-Time Depth Adaptation of Pretrained LLMs" (Li, Li,
Zhou 2025, arXiv 2507.07996), its MCTS with nothing added: mcts `mode=cola` (mcts.py):
descend by UCB(P) = Q/v + c*sqrt(ln V / v) - lambda*|P|/L (Q the sum of the 0/1 correctness
rewards backed up through P, v its visits, V its parent's), lambda = 5; at a node with
untried moves, with probability 0.1 (and always at a node with no child yet) expand a random
unexplored child instead; skip and loop of blocks of k = 1..4 layers; 200 simulations; no
early stop, the Pareto-optimal correct chains returned. The paper gives no value for c:
c = sqrt(2), the UCB1 constant (Auer, Cesa-Bianchi, Fischer 2002, used by UCT, Kocsis &
Szepesvari 2006) and the value PoLar, the paper's later version by the same group, uses.
Interpretations: the paper's r (1..4) counts a looped block's runs in all, so
`loop_repeats=1+2+3` (extra runs; r = 1 is the unchanged chain); a simulation is one new
chain evaluated (`budget=200`, the full chain included; a chain reached again is free).
Departure: chains are capped at 2L layers (`max_len`, the project's default; the paper's
text, as this project read it, gives no cap).

`cola-deep` -- this project's deep search on the paper's space (mcts `mode=deep`,
mcts_deep.py): what `protocol=cola` meant before, unchanged (records of those runs say
`protocol: cola` with these settings). Graded reward, Q the best reward in a subtree, c = 0,
a root scan of the ~2L single-layer edits, progressive widening, expansion by predicted
gain, loops of 1..4 extra runs. A budget that cannot finish the root scan is warned of once
and noted in each result (`SearchResult.notes`, the record's `search_notes`).

`drllm` -- the public data-generation code of Dr.LLM ("Dynamic Layer Routing in LLMs",
Heakl et al. 2025), which this project's `mcts` followed from the start: exactly
`searcher=mcts,descend_to_leaf=True`.

`polar` -- the MCTS of PoLar ("Skip a Layer or Loop It? Learning Program-of-Layers in LLMs",
arXiv 2606.06574, the later version of the paper): `mode=expand_all`, 100 simulations,
lambda = 5, exploration sqrt(2 ln(N_root + 1) / n), blocks of 2-4 at the root only, at most
2 copies of a layer; its per-model length bounds are left to `min_len` / `max_len`.
"""

import math
from collections.abc import Iterable, Mapping
from typing import Any

# The paper gives no value for its exploration constant c: UCB1's (see the docstring).
COLA_C = math.sqrt(2.0)

PROTOCOLS: dict[str, dict[str, Any]] = {
    "cola": {
        "budget": 200,
        "mode": "cola",
        "reward": "correct",
        "actions": ("skip", "loop"),
        "block_sizes": (1, 2, 3, 4),
        "loop_repeats": (1, 2, 3),  # extra runs: the paper's r = 2..4 runs in all
        "length_penalty": 5.0,
        "exploration": "parent",
        "c": COLA_C,
        "random_prob": 0.1,
        "early_stop": False,
    },
    # What `cola` was until the paper's protocol took its name; keep it exactly as it was,
    # so runs under either name compare.
    "cola-deep": {
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
