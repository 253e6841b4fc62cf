"""`mcts`: Monte Carlo tree search over chains, after "Skip a Layer or Loop it? Test-Time
Depth Adaptation of Pretrained LLMs" (Li, Li, Zhou 2025) and its public code.

The tree's root is the full chain; an edge is one action (skip 1 or 2 adjacent
positions, or repeat one position once, by default). Each simulation selects a node by
UCB, expands one untried action, evaluates the child's chain (memoized, so a chain
reached again along another path costs no budget) and backs the reward up to the root.

Selection score of a child, exactly as the public code computes it:

    ucb(child) = W / n + c * sqrt(ln N / n) - length_penalty * len(child.chain) / L

where W is the sum of the rewards backed up through the child, n its visits, N its
parent's visits, L the model's layer count, and the reward of an evaluated chain is
1.0 if it answers the sample right and 0.0 if not. So the length penalty is charged on
the node's own chain when it is selected, not mixed into the averaged rewards.

The paper's settings are the defaults (200 evaluations, c=1.8, lambda=3, random child
with probability 0.1, chains up to 2L). Its later variant is reachable by settings:
`budget=100` (or `max_simulations=100`), `length_penalty=5.0`, `min_len`/`max_len`.
"""

import logging
import math
import random
from dataclasses import dataclass, field

from lm_eval_cola.searchers.base import (
    Chain,
    EarlyStopSettings,
    Ledger,
    Searcher,
    SearchRun,
    begin,
    check_bool,
    check_float,
    check_int,
    early_stop_hit,
    make_result,
    neighbours,
)

log = logging.getLogger(__name__)

SIMULATIONS_PER_EVALUATION = 20  # default cap on simulations: revisits are free, loops are not


@dataclass(frozen=True)
class MctsSettings(EarlyStopSettings):
    budget: int = 200
    c: float = 1.8  # UCB exploration constant
    length_penalty: float = 3.0  # lambda in ucb(); see the module docstring
    random_prob: float = 0.1  # chance of descending to a random child instead of by UCB
    # The public code descends until a node with no children, so a node never gets a
    # second child and the "tree" is one random walk that deepens by one action per
    # simulation. True reproduces that; False (the default) is textbook MCTS, which
    # descends only through fully expanded nodes.
    descend_to_leaf: bool = False
    # Simulations, memoized revisits included. None: 20 * budget, a guard against
    # looping over a tree whose chains are all evaluated; with descend_to_leaf it is
    # `budget`, as the public code counts its 200 simulations.
    max_simulations: int | None = None

    def check(self) -> None:
        super().check()
        self._set("c", check_float("c", self.c, 0.0))
        self._set("length_penalty", check_float("length_penalty", self.length_penalty, 0.0))
        self._set("random_prob", check_float("random_prob", self.random_prob, 0.0, 1.0))
        if self.max_simulations is not None:
            check_int("max_simulations", self.max_simulations, 1)
        check_bool("descend_to_leaf", self.descend_to_leaf)


@dataclass(eq=False)
class Node:
    chain: Chain
    parent: "Node | None"
    untried: list[Chain]  # children not yet expanded, popped from the end
    children: list["Node"] = field(default_factory=list)
    visits: int = 0
    wins: float = 0.0  # sum of rewards backed up through this node


class MctsSearcher(Searcher):
    name = "mcts"
    Settings = MctsSettings
    settings: MctsSettings

    def search(self, ledger: Ledger, seed: int, keep_correct: int = 5) -> SearchRun:
        s = self.settings
        rng = random.Random(seed)
        bounds = s.length_bounds(ledger.num_layers)
        root_outcome = yield from begin(ledger, keep_correct)
        root = self._new_node(ledger.full, None, rng, bounds)
        self._backprop(root, float(root_outcome.correct))
        max_sims = s.max_simulations or ledger.budget * (
            1 if s.descend_to_leaf else SIMULATIONS_PER_EVALUATION
        )
        stopped = False
        for _ in range(max_sims):
            if ledger.remaining <= 0:
                break  # what is left in the tree is memoized: nothing new to learn
            node = self._select(root, rng, ledger.num_layers)
            if node.untried:
                node = self._expand(node, rng, bounds)
            # A node with no actions left is re-read from the memo: no yield, no cost.
            outcome = yield from ledger.ask(node.chain)
            self._backprop(node, float(outcome.correct))
            if s.early_stop and early_stop_hit(
                node.chain, outcome, root_outcome.correct, ledger.num_layers, s.min_shorter
            ):
                log.debug("early stop at %s", node.chain)
                stopped = True
                break
        return make_result(ledger, keep_correct, stopped_early=stopped)

    def _new_node(
        self, chain: Chain, parent: Node | None, rng: random.Random, bounds: tuple[int, int]
    ) -> Node:
        s = self.settings
        untried = neighbours(chain, s.skip_sizes, s.repeat_sizes, *bounds)
        rng.shuffle(untried)  # the public code tries actions in random order too
        return Node(chain, parent, untried)

    def _select(self, node: Node, rng: random.Random, num_layers: int) -> Node:
        s = self.settings
        while node.children and (s.descend_to_leaf or not node.untried):
            if rng.random() < s.random_prob:
                node = rng.choice(node.children)
            else:
                parent = node
                node = max(parent.children, key=lambda ch: self._ucb(ch, parent, num_layers))
        return node

    def _ucb(self, child: Node, parent: Node, num_layers: int) -> float:
        s = self.settings
        mean = child.wins / child.visits
        explore = s.c * math.sqrt(math.log(parent.visits) / child.visits)
        return mean + explore - s.length_penalty * len(child.chain) / num_layers

    def _expand(self, node: Node, rng: random.Random, bounds: tuple[int, int]) -> Node:
        child = self._new_node(node.untried.pop(), node, rng, bounds)
        node.children.append(child)
        return child

    @staticmethod
    def _backprop(node: Node | None, reward: float) -> None:
        while node is not None:
            node.visits += 1
            node.wins += reward
            node = node.parent
