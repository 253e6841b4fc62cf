"""MCTS's tree nodes, its graded reward, and the `deep` walk (see mcts.py's docstring).

One simulation of the deep walk:

    node = root
    loop:
        list node's moves once (its action space's), dropping chains already evaluated
        if node may widen (fewer children than its width): expand one untried move; stop
        if no untried move and no live child: node is done, re-read it (free); stop
        node = the live child with the best UCB, where Q is the best reward in its subtree
    evaluate the new child, record its edit's gain, back its reward up to the root.

Width: ceil(pw_c * visits ** pw_alpha) (progressive widening); the root adds its
single-layer moves (skip one layer, loop one layer once), which are its first children, one
each: a scan of ~2L evaluations that says what each layer does alone.

Which untried move a node expands: with probability `random_prob` a random one; else the
one of highest value, where an edit's key is its kind and the layers it touches
(`Action.key`, e.g. ("skip", (20, 21), 0)) and its predicted gain is

- for a key tried before: the mean of reward(child) - reward(parent) over its tries; when
  that is not positive, just below every untried edit;
- else, for a skip or a loop: the sum of the mean gains of the same action on each of its
  layers alone (a first-order, additive model, as layer-importance scores are; a layer not
  tried alone counts 0). So "skip 20-21" is predicted from "skip 20" and "skip 21", and
  "loop 10-12" from looping 10, 11 and 12 once each. A loop's r does not scale it (more runs
  are not more gain), nor does anything predict a swap;

and, once the node's chain is correct, the value is that gain less the length penalty of
the layers the move adds (lambda * added / L: a right chain is to be shortened). Ties go to
a random order, fixed per node, in which skips and loops come up about equally often (loops
outnumber skips ~4:1 with r in 1..4).
"""

import math
import random
from dataclasses import dataclass, field
from typing import Any

from lm_eval_cola.search.searchers.actions import Action, ActionSpace, Move
from lm_eval_cola.search.searchers.base import Chain, Ledger, Outcome


def graded_reward(score: float) -> float:
    """The oracle's score (metric + margin, in (-0.5, 1.5)) shaped into [0, 1]."""
    if not math.isfinite(score):
        return 0.0
    return min(1.0, max(0.0, (score + 0.5) / 2.0))


@dataclass(eq=False)
class Node:
    chain: Chain
    parent: "Node | None"
    untried: list[Chain]  # children not yet expanded, popped from the end (uct, expand_all)
    children: list["Node"] = field(default_factory=list)
    visits: int = 0
    wins: float = 0.0  # sum of rewards backed up through this node
    best: float = -math.inf  # the best reward backed up through this node
    reward: float = 0.0  # its own evaluation's reward
    # mode deep: untried (edit key, move) pairs, listed when the node first widens; the
    # edit that made the node; whether nothing is left to expand below it.
    moves: list[tuple[tuple, Move]] | None = None
    key: tuple | None = None
    correct: bool = False
    done: bool = False


def is_single(action: Action) -> bool:
    """Skip one layer, or loop one layer once: the root's scan."""
    return action.kind in ("skip", "loop") and action.size == 1 and action.repeats <= 1


class DeepTree:
    """The state of one deep search: its tree and what each edit gained."""

    def __init__(
        self,
        searcher: Any,  # the MctsSearcher: settings, reward, _ucb, _new_node, _backprop
        ledger: Ledger,
        rng: random.Random,
        root: Node,
        spaces: tuple[ActionSpace, ActionSpace],
    ) -> None:
        self.searcher = searcher
        self.s = searcher.settings
        self.ledger = ledger
        self.rng = rng
        self.root = root
        self.spaces = spaces
        self.gains: dict[tuple, list[float]] = {}  # edit key -> [sum of gains, tries]
        self.scan = 0  # the root's single-layer moves

    def tell(self, node: Node, outcome: Outcome) -> None:
        """Back a selected node's outcome up; a new node's edit gain is recorded."""
        if node.visits == 0:
            node.reward = self.searcher.reward(outcome)
            node.correct = outcome.correct
            if node.parent is not None and node.key is not None:
                gain = self.gains.setdefault(node.key, [0.0, 0])
                gain[0] += node.reward - node.parent.reward
                gain[1] += 1
        self.searcher._backprop(node, node.reward)

    def select(self) -> Node:
        """One simulation's selection: the node to evaluate (a done node: re-read from the
        memo, free). Its outcome goes to `tell` (parallel.py runs the two)."""
        s, node = self.s, self.root
        num_layers = self.ledger.num_layers
        while True:
            if node.moves is None:
                node.moves = self._list(node)
            live = [ch for ch in node.children if not ch.done]
            width = math.ceil(s.pw_c * max(1, node.visits) ** s.pw_alpha)
            if node is self.root:
                width += self.scan
            if node.moves and (len(node.children) < width or not live):
                picked = self._pick(node)
                if picked is not None:
                    return self._add(node, picked)
            if not live:
                node.done = not node.moves
                return node
            parent = node
            node = max(live, key=lambda ch: self.searcher._ucb(ch, parent, self.root, num_layers))

    def _list(self, node: Node) -> list[tuple[tuple, Move]]:
        """The node's moves in their tie-break order (the root's single-layer ones first)."""
        space = self.spaces[0 if node.parent is None else 1]
        kinds: dict[str, list[tuple[tuple, Move]]] = {}
        for move in space.moves(node.chain):
            kinds.setdefault(move.action.kind, []).append((move.action.key(node.chain), move))
        ranked: list[tuple[float, int, tuple[tuple, Move]]] = []
        for n, group in enumerate(kinds.values()):
            self.rng.shuffle(group)
            size = len(group)
            ranked += [((i + self.rng.random()) / size, n, pair) for i, pair in enumerate(group)]
        ranked.sort(key=lambda t: (t[0], t[1]))
        moves = [t[2] for t in ranked]
        if node.parent is None:
            single = [p for p in moves if is_single(p[1].action)]
            self.scan = len(single)
            moves = single + [p for p in moves if not is_single(p[1].action)]
        return moves

    def _pick(self, node: Node) -> tuple[tuple, Move] | None:
        """Take the untried move to expand (its chain new); None when none is left."""
        assert node.moves is not None
        seen = self.ledger.seen
        while node.moves:
            if node is self.root and len(node.children) < self.scan:
                i = 0  # the scan, in order
            elif self.rng.random() < self.s.random_prob:
                i = self.rng.randrange(len(node.moves))
            else:
                i = max(range(len(node.moves)), key=lambda j: self._value(node, node.moves[j]))
            key, move = node.moves.pop(i)
            if move.chain not in seen:
                return key, move
        return None

    def _value(self, node: Node, pair: tuple[tuple, Move]) -> float:
        """What expanding `pair` at `node` is expected to bring: the edit's predicted gain,
        less, once the node's chain is correct, the length penalty of the layers it adds."""
        value = self._predict(pair[0])
        if node.correct:
            added = len(pair[1].chain) - len(node.chain)
            value -= self.s.length_penalty * added / self.ledger.num_layers
        return value

    def _predict(self, key: tuple) -> float:
        """The gain expected of an edit (module docstring)."""
        gain = self.gains.get(key)
        if gain:
            mean = gain[0] / gain[1]
            return mean if mean > 0 else min(mean, -1e-12)  # tried, no help: below untried
        if key[0] == "swap":
            return 0.0
        single_r = 1 if key[0] == "loop" else 0
        total = 0.0
        for layer in key[1]:
            alone = self.gains.get((key[0], (layer,), single_r))
            if alone:
                total += alone[0] / alone[1]
        return total

    def _add(self, node: Node, picked: tuple[tuple, Move]) -> Node:
        key, move = picked
        child = self.searcher._new_node(move.chain, node, self.rng, self.spaces)
        child.key = key
        node.children.append(child)
        return child
