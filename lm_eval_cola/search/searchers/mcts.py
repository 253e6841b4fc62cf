"""`mcts`: Monte Carlo tree search over chains, after "Skip a Layer or Loop it? Test-Time
Depth Adaptation of Pretrained LLMs" (Li, Li, Zhou 2025) and the public code it follows.

The tree's root is the full chain; an edge is one action of the action space (actions.py:
by default skip 1 or 2 adjacent positions, or repeat one position once; `actions`,
`block_sizes`, `loop_repeats` give the paper's skip / loop of blocks). Each simulation
selects a node, expands a child, evaluates the child's chain (memoized, so a chain reached
again along another path costs no budget) and backs its reward up to the root.

Selection score of a child:

    ucb(child) = W / n + c * sqrt(ln N / n) - length_penalty * len(child.chain) / L

where W is the sum of the rewards backed up through the child, n its visits, N its
parent's visits (`exploration=root`: ln(N_root + 1), PoLar's form), L the model's layer
count. The length penalty is charged on the node's own chain when it is selected, not mixed
into the averaged rewards. The reward of an evaluated chain is (`reward`):

- `correct`: 1.0 if it answers the sample right, else 0.0 (the public code's);
- `graded`: the outcome's score shaped into [0, 1]: (score + 0.5) / 2, clamped, 0 for a
  non-finite score. The oracle's score is the task metric (0/1) plus the gold's squashed
  log-likelihood margin in (-0.5, 0.5), so a correct chain gets a reward in [0.5, 1] and a
  wrong one in [0, 0.5]: correctness still decides, and the margin says how close a wrong
  chain is to right (and how safely right a correct one is).

Walks (`mode`):

- `uct` (default): textbook MCTS: descend by UCB through fully expanded nodes, expand one
  untried child (random order), with probability `random_prob` step to a random child.
  `descend_to_leaf=True` instead descends until a node with no children, as the public code
  does (a node never gets a second child: the "tree" is one random walk).
- `expand_all` (PoLar's): descend while a node has children (an unvisited child first, at
  random), then expand ALL children of the leaf reached and evaluate one at random.
- `cola` ("Skip a Layer or Loop it?" as written; `protocol=cola`): descend by UCB; a node
  with no child yet, or, with probability `random_prob`, a node with untried moves, expands
  a random untried move (the paper's "random unexplored child") and that child is
  evaluated. So the tree deepens by one edit a simulation and widens at random, as the
  paper's text is read here (docs/protocols.md); nothing guides which edit is tried
  (`_select_cola` gives the exact order of the random draws; tests/test_search_space.py
  walks it step by step).
- `deep` (mcts_deep.py; use it with `actions`): built for ~200 evaluations against
  ~600 children per node (k, r in 1..4), where `uct` spends its budget on the root's one-edit
  neighbours and never reaches depth 3. What it changes, and why (measured on the fakes of
  tests/test_mcts_deep.py, L = 30, a chain three edits away planted, budget 200: the deep
  mode finds it in 40 of 40 seeds, uct and random search in 0; with 0/1 rewards, without the
  root scan, without the additive prediction, with c = 1.8 or with pw_c = 1: 0, 1, 1, 0, 6
  of 40; with Q as the mean reward instead of the best, a right chain is shortened to 18
  layers instead of 8):
  1. the graded reward (the default in this mode): with 0/1 rewards every wrong chain ties,
     so nothing leads a search towards a fix;
  2. a root scan: the root's first children are its single-layer moves (skip one layer,
     loop one layer once), ~2L evaluations that say what each layer does;
  3. expansion by predicted gain: an edit (its kind and the layers it touches, e.g.
     "skip 20-21", "loop 10-12 x2") is predicted by its mean reward gain where it was
     tried, else by the sum of its layers' gains alone (first order, like layer-importance
     scores); an edit tried with no gain ranks below the untried ones. Once a node's chain
     is correct, the length penalty of the layers a move adds is charged too, so a right
     chain is shortened. Good edits found anywhere are combined everywhere: the deep chains;
  4. progressive widening: a node has at most ceil(pw_c * visits ** pw_alpha) children
     (the root: its scan plus that), and Q in the UCB is the best reward in the child's
     subtree (a search for one best chain, not an average outcome), with c = 0 by default:
     any exploration bonus spreads simulations over siblings that score alike (every safe
     skip of a right chain), which keeps the tree shallow; exploration comes from widening,
     and from `random_prob` (the chance that a node expands a random untried move, the
     paper's "random unexplored child"; 0 by default here, as it costs evaluations).
  The length penalty stays in the UCB. Chains already evaluated are not expanded again, and
  a subtree with nothing left to expand is not selected. A budget too small for the root
  scan (budget < 1 + the scan's ~2L edits) makes the "search" the full chain plus single
  edits: that is warned of once and noted in every result (`SearchResult.notes`).

`parallel=W` runs the simulations in rounds of up to W new chains asked at once, with a
virtual loss on each selected path (parallel.py: the exact rule, and how a selection that
lands on a known or pending chain is handled); W = 1, the default, is one simulation at a
time, the sequence of asks of before.

Early stop (`early_stop`, the paper's rule, see base.py) applies in every walk; the deep
presets switch it off, so the search keeps looking for shorter correct chains and fills the
Pareto set. The defaults are the public code's settings (200 evaluations, c=1.8, lambda=3,
random child with probability 0.1, chains up to 2L); `protocol=cola|drllm|polar` sets a
paper's whole protocol and `protocol=cola-deep` this project's deep search on the paper's
space (protocols.py; each preset's departures from its source: docs/protocols.md).
"""

import logging
import math
import random
from dataclasses import dataclass
from typing import Any

from lm_eval_cola.search.searchers.actions import ActionSpace, parse_sizes
from lm_eval_cola.search.searchers.base import (
    Chain,
    EarlyStopSettings,
    Ledger,
    Outcome,
    Searcher,
    SearchRun,
    begin,
    check_bool,
    check_choice,
    check_float,
    check_int,
    early_stop_hit,
    make_result,
    stops_as_right,
)
from lm_eval_cola.search.searchers.mcts_deep import DeepTree, Node, graded_reward, is_single
from lm_eval_cola.search.searchers.parallel import run_rounds

log = logging.getLogger(__name__)

SIMULATIONS_PER_EVALUATION = 20  # default cap on simulations: revisits are free, loops are not
MODES = ("uct", "deep", "expand_all", "cola")
REWARDS = ("correct", "graded")


@dataclass(frozen=True)
class MctsSettings(EarlyStopSettings):
    budget: int = 200
    # UCB exploration constant. None: 1.8 (uct, expand_all; the public code's), 0.0 (deep:
    # exploration comes from widening; see the module docstring), sqrt(2) (cola: UCB1's, as
    # the paper gives none; protocols.py)
    c: float | None = None
    length_penalty: float = 3.0  # lambda in ucb(); see the module docstring
    # uct / expand_all: chance of stepping to a random child instead of the UCB's; deep:
    # chance that a node expands a random untried move instead of the best-predicted one;
    # cola: chance that a node expands a random untried move instead of descending by UCB.
    # None: 0.1 (uct, expand_all, cola), 0.0 (deep)
    random_prob: float | None = None
    # The public code descends until a node with no children, so a node never gets a
    # second child and the "tree" is one random walk that deepens by one action per
    # simulation. True reproduces that; False (the default) is textbook MCTS, which
    # descends only through fully expanded nodes. `mode=uct` only.
    descend_to_leaf: bool = False
    # Simulations, memoized revisits included. None: 20 * budget, a guard against
    # looping over a tree whose chains are all evaluated; with descend_to_leaf it is
    # `budget`, as the public code counts its 200 simulations.
    max_simulations: int | None = None
    mode: str = "uct"  # uct | deep | expand_all | cola: the walk (module docstring)
    reward: str | None = None  # correct | graded; None: graded in mode deep, else correct
    pw_c: float = 3.0  # mode deep: at most ceil(pw_c * visits ** pw_alpha) children
    pw_alpha: float = 0.5
    exploration: str = "parent"  # parent: c*sqrt(ln N_parent / n); root: c*sqrt(ln(N_root+1)/n)
    root_block_sizes: tuple[int, ...] | None = None  # block sizes at the root only; None: same

    def check(self) -> None:
        super().check()
        check_choice("mode", self.mode, MODES)
        deep = self.mode == "deep"
        if self.c is None:
            self._set("c", 0.0 if deep else math.sqrt(2.0) if self.mode == "cola" else 1.8)
        if self.random_prob is None:
            self._set("random_prob", 0.0 if deep else 0.1)
        self._set("c", check_float("c", self.c, 0.0))
        self._set("length_penalty", check_float("length_penalty", self.length_penalty, 0.0))
        self._set("random_prob", check_float("random_prob", self.random_prob, 0.0, 1.0))
        if self.max_simulations is not None:
            check_int("max_simulations", self.max_simulations, 1)
        check_bool("descend_to_leaf", self.descend_to_leaf)
        if self.reward is None:
            self._set("reward", "graded" if deep else "correct")
        check_choice("reward", self.reward, REWARDS)
        self._set("pw_c", check_float("pw_c", self.pw_c, 0.0))
        if self.pw_c <= 0:
            raise ValueError(f"bad value for setting 'pw_c': {self.pw_c!r} (allowed: > 0)")
        self._set("pw_alpha", check_float("pw_alpha", self.pw_alpha, 0.0, 1.0))
        check_choice("exploration", self.exploration, ("parent", "root"))
        if self.root_block_sizes is not None:
            self._set("root_block_sizes", parse_sizes("root_block_sizes", self.root_block_sizes))
            if not self.paper_space:
                raise ValueError("root_block_sizes needs the paper's action space "
                                 "(actions, block_sizes or loop_repeats)")
        if self.descend_to_leaf and self.mode != "uct":
            raise ValueError("descend_to_leaf is a walk of mode=uct; drop it or set mode=uct")

    def spaces(self, num_layers: int) -> tuple[ActionSpace, ActionSpace]:
        """(the root's action space, every other node's)."""
        space = self.action_space(num_layers)
        if self.root_block_sizes is None:
            return space, space
        return space.with_sizes(self.root_block_sizes), space


class MctsSearcher(Searcher):
    name = "mcts"
    Settings = MctsSettings
    settings: MctsSettings

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._scan_warned: set[int] = set()  # layer counts already warned of (mode deep)

    def search(self, ledger: Ledger, seed: int, keep_correct: int = 5) -> SearchRun:
        s = self.settings
        rng = random.Random(seed)
        spaces = s.spaces(ledger.num_layers)
        root_outcome = yield from begin(ledger, keep_correct)
        stop_right = stops_as_right(ledger, root_outcome)
        root = self._new_node(ledger.full, None, rng, spaces)
        root.reward, root.correct = self.reward(root_outcome), root_outcome.correct
        self._backprop(root, root.reward)
        max_sims = s.max_simulations or ledger.budget * (
            1 if s.descend_to_leaf else SIMULATIONS_PER_EVALUATION
        )
        deep = DeepTree(self, ledger, rng, root, spaces) if s.mode == "deep" else None
        notes = self._root_scan_notes(ledger, spaces[0]) if deep is not None else {}

        def select() -> Node:
            if deep is not None:
                return deep.select()
            return self._select_leaf(rng, root, ledger.num_layers, spaces)

        def stops(node: Node, outcome: Outcome) -> bool:
            hit = s.early_stop and early_stop_hit(
                node.chain, outcome, stop_right, ledger.num_layers, s.min_shorter
            )
            if hit:
                log.debug("early stop at %s", node.chain)
            return hit

        # Stops once the budget is spent or (deep) the tree is done: what is left in it is
        # memoized, nothing new to learn.
        stopped = yield from run_rounds(
            ledger, root, check_int("parallel", s.parallel, 1), max_sims, select,
            deep.tell if deep is not None else self._tell, stops,
        )
        return make_result(ledger, keep_correct, stopped_early=stopped, notes=notes)

    def _root_scan_notes(self, ledger: Ledger, root_space: ActionSpace) -> dict[str, Any]:
        """mode deep: the size of the root scan (its single-layer edits) and whether the
        budget, the full chain included, is too small to finish it -- then the "search" is
        the full chain and some single edits, which a reader must not take for a tree
        search. Said in one warning a searcher and layer count, and in every result."""
        scan = sum(is_single(m.action) for m in root_space.moves(ledger.full))
        short = ledger.budget < scan + 1
        if short and ledger.num_layers not in self._scan_warned:
            self._scan_warned.add(ledger.num_layers)
            log.warning(
                "mcts mode=deep (protocol=%s): budget %d is smaller than its root scan (the "
                "full chain + %d single-layer edits of %d layers): the search is the full "
                "chain and %d single edits, not a tree search (records: search_notes."
                "root_scan_exceeds_budget)", self.settings.protocol, ledger.budget, scan,
                ledger.num_layers, ledger.budget - 1,
            )
        return {"root_scan": scan, "root_scan_exceeds_budget": short}

    def reward(self, outcome: Outcome) -> float:
        if self.settings.reward == "graded":
            return graded_reward(outcome.score)
        return float(outcome.correct)

    def _select_leaf(
        self, rng: random.Random, root: Node, num_layers: int, spaces: tuple[ActionSpace, ...]
    ) -> Node:
        """One simulation's selection in mode uct, expand_all or cola: the node whose chain
        is to be evaluated (a node with no actions left is re-read from the memo, free)."""
        s = self.settings
        if s.mode == "expand_all":
            return self._select_expand_all(root, rng, num_layers, spaces)
        if s.mode == "cola":
            return self._select_cola(root, rng, num_layers, spaces)
        node = self._select(root, rng, num_layers)
        if node.untried:
            node = self._expand(node, rng, spaces)
        return node

    def _tell(self, node: Node, outcome: Outcome) -> None:
        """Back a selected node's outcome up (mode uct, expand_all, cola)."""
        node.reward = self.reward(outcome)
        self._backprop(node, node.reward)

    def _new_node(
        self, chain: Chain, parent: Node | None, rng: random.Random, spaces: tuple
    ) -> Node:
        if self.settings.mode == "deep":
            return Node(chain, parent, [])  # its moves are listed when it first widens
        untried = spaces[0 if parent is None else 1].chains(chain)
        if self.settings.mode != "cola":  # cola draws a random index when it expands
            rng.shuffle(untried)  # the public code tries actions in random order too
        return Node(chain, parent, untried)

    def _select(self, node: Node, rng: random.Random, num_layers: int) -> Node:
        s = self.settings
        root = node
        while node.children and (s.descend_to_leaf or not node.untried):
            if rng.random() < s.random_prob:
                node = rng.choice(node.children)
            else:
                parent = node
                node = max(parent.children, key=lambda ch: self._ucb(ch, parent, root, num_layers))
        return node

    def _select_expand_all(
        self, node: Node, rng: random.Random, num_layers: int, spaces: tuple
    ) -> Node:
        s, root = self.settings, node
        while node.children:
            unvisited = [ch for ch in node.children if ch.visits == 0]
            if unvisited:
                return rng.choice(unvisited)  # an unvisited child's UCB is infinite
            if rng.random() < s.random_prob:
                node = rng.choice(node.children)
            else:
                parent = node
                node = max(parent.children, key=lambda ch: self._ucb(ch, parent, root, num_layers))
        while node.untried:  # a visited leaf: expand all its children ...
            self._expand(node, rng, spaces)
        return rng.choice(node.children) if node.children else node  # ... evaluate one

    def _select_cola(
        self, node: Node, rng: random.Random, num_layers: int, spaces: tuple
    ) -> Node:
        """mode cola (the paper's walk): from the root, at each node: if it has untried
        moves and either no child yet or a draw `rng.random() < random_prob` (drawn only
        when both children and untried moves exist), expand the untried move at index
        `rng.randrange(len(untried))` (the space's fixed order, expanded ones removed) and
        return that child; else, with no child, return the node (nothing below it to try:
        re-read, free); else step to the child of highest UCB (ties: the first expanded)."""
        s, root = self.settings, node
        while True:
            if node.untried and (not node.children or rng.random() < s.random_prob):
                chain = node.untried.pop(rng.randrange(len(node.untried)))
                child = self._new_node(chain, node, rng, spaces)
                node.children.append(child)
                return child
            if not node.children:
                return node
            parent = node
            node = max(parent.children, key=lambda ch: self._ucb(ch, parent, root, num_layers))

    def _ucb(self, child: Node, parent: Node, root: Node, num_layers: int) -> float:
        s = self.settings
        # deep: Q is the best reward in the child's subtree (a search for one best chain)
        mean = child.best if s.mode == "deep" else child.wins / child.visits
        if s.exploration == "root":
            explore = s.c * math.sqrt(math.log(root.visits + 1) / child.visits)
        else:
            explore = s.c * math.sqrt(math.log(parent.visits) / child.visits)
        return mean + explore - s.length_penalty * len(child.chain) / num_layers

    def _expand(self, node: Node, rng: random.Random, spaces: tuple) -> Node:
        child = self._new_node(node.untried.pop(), node, rng, spaces)
        node.children.append(child)
        return child

    @staticmethod
    def _backprop(node: Node | None, reward: float) -> None:
        while node is not None:
            node.visits += 1
            node.best = max(node.best, reward)
            node.wins += reward
            node = node.parent
