"""`parallel=W`: several chains of one sample asked at once (issue #24, item 1).

Every searcher and mcts mode, on the fakes of searcher_fakes.py, for W in 1, 2, 4, 8: no
chain asked twice, never past the budget, at most W chains a yield, W = 1 (and the default)
exactly the asks recorded from the code before the setting existed, and a fixed seed gives
one result.
"""

import hashlib
import json
import random

import pytest

from lm_eval_cola.search.searchers import Chain, Ledger, Outcome, get_searcher, pick_best
from lm_eval_cola.search.searchers.mcts_deep import Node
from lm_eval_cola.search.searchers.parallel import add_virtual_loss, run_rounds, take_virtual_loss
from tests.support.searcher_fakes import (
    FULL,
    L,
    answer,
    check_invariants,
    needs_146,
    never,
    repeat2,
    skip3_keep5,
)

pytestmark = pytest.mark.quick

PAPER = {"actions": "skip+loop", "block_sizes": "1+2", "loop_repeats": "1+2"}
CASES = {
    "mcts-uct": ("mcts", {"budget": 40}),
    "mcts-uct-nostop": ("mcts", {"budget": 40, "early_stop": False}),
    "mcts-leaf": ("mcts", {"budget": 40, "descend_to_leaf": True}),
    "mcts-polar": ("mcts", {"protocol": "polar", "budget": 40}),
    "mcts-cola": ("mcts", {"protocol": "cola", "budget": 40}),
    "mcts-cola-stop": ("mcts", {"protocol": "cola", "budget": 40, "early_stop": True}),
    "mcts-deep": ("mcts", {"protocol": "cola-deep", "budget": 40}),
    "mcts-deep-stop": ("mcts", {"mode": "deep", "budget": 40, **PAPER}),
    "random": ("random", {"budget": 30}),
    "random-paper": ("random", {"budget": 30, "early_stop": False, **PAPER}),
    "greedy": ("greedy", {"budget": 30}),
    "greedy-paper": ("greedy", {"budget": 30, **PAPER}),
}
# Runs that never stop early: every round after the root's asks min(W, budget left) chains.
NO_STOP = ("mcts-uct-nostop", "mcts-polar", "mcts-cola", "mcts-deep", "random-paper")
FAKES = {"skip3_keep5": skip3_keep5, "needs_146": needs_146, "repeat2": repeat2,
         "never": never}
SEEDS = range(3)

# sha256[:16] of every (fake, seed)'s yields, best chain and stop, recorded from the code
# just before `parallel` was added (commit f4aa03c with mcts mode cola, then uncommitted).
BEFORE = {
    "mcts-uct": "786b01ae9a179930",
    "mcts-uct-nostop": "5a5449a29c0b218b",
    "mcts-leaf": "38bc54064fe71070",
    "mcts-polar": "080554c86f9f30da",
    "mcts-cola": "56ea97d9e8af2418",
    "mcts-cola-stop": "a3a13f209e34ba82",
    "mcts-deep": "f123cdbe30179ac2",
    "mcts-deep-stop": "7110277c4216da6a",
    "random": "f498622b4a2be314",
    "random-paper": "420f1208bd63f4d3",
    "greedy": "421ca741e0dd9e51",
    "greedy-paper": "21af1633cf752c98",
}


def trace(key: str, fake_name: str, seed: int, **extra):
    """(what the search yielded, its result, its ledger), the protocol checked at every
    yield by `answer` (non-empty, distinct, new, within the budget left)."""
    name, settings = CASES[key]
    fake = FAKES[fake_name]()
    ledger, run = get_searcher(name, **settings, **extra).start(L, seed)
    result, yields = answer(run, fake, ledger)
    check_invariants(result, ledger, fake)
    return yields, result, ledger


def digest(key: str, **extra) -> str:
    out = []
    for fake_name in FAKES:
        for seed in SEEDS:
            yields, result, _ = trace(key, fake_name, seed, **extra)
            out.append([fake_name, seed, yields, list(result.best_chain), result.stopped_early])
    return hashlib.sha256(json.dumps(out).encode()).hexdigest()[:16]


@pytest.mark.parametrize("key", sorted(CASES))
def test_the_default_asks_exactly_as_before(key):
    assert digest(key) == BEFORE[key]
    if CASES[key][0] != "greedy":  # greedy's default is a whole pass a yield (None)
        assert digest(key, parallel=1) == BEFORE[key]


@pytest.mark.parametrize("width", [1, 2, 4, 8])
@pytest.mark.parametrize("key", sorted(CASES))
def test_rounds_ask_new_chains_within_the_budget_at_most_w_at_once(key, width):
    sizes: list[int] = []
    for fake_name in FAKES:
        for seed in SEEDS:
            yields, result, ledger = trace(key, fake_name, seed, parallel=width)
            flat = [c for y in yields for c in y]
            assert len(flat) == len(set(flat)) == result.evaluations <= ledger.budget
            assert yields[0] == [FULL] and all(len(y) <= width for y in yields)
            if key in NO_STOP:
                assert result.evaluations == ledger.budget and not result.stopped_early
                left = ledger.budget - 1
                for y in yields[1:]:
                    assert len(y) == min(width, left)  # every round full
                    left -= len(y)
            sizes += [len(y) for y in yields]
    assert max(sizes) == width  # the setting does batch


@pytest.mark.parametrize("key", sorted(CASES))
def test_a_fixed_seed_gives_one_result(key):
    for fake_name in ("skip3_keep5", "needs_146"):
        first = trace(key, fake_name, 5, parallel=4)
        again = trace(key, fake_name, 5, parallel=4)
        assert first[0] == again[0]  # the same yields, in the same order
        assert first[1] == again[1]


@pytest.mark.parametrize("key", ["greedy", "greedy-paper"])
def test_greedy_asks_the_same_chains_in_the_same_order_for_every_w(key):
    for fake_name in FAKES:
        whole, result, _ = trace(key, fake_name, 0)
        for width in (1, 2, 4, 8):
            yields, other, _ = trace(key, fake_name, 0, parallel=width)
            assert [c for y in yields for c in y] == [c for y in whole for c in y]
            assert other == result


@pytest.mark.parametrize("key", ["random", "random-paper"])
def test_random_draws_the_same_chains_and_passes_a_stop_by_less_than_w(key):
    for fake_name in FAKES:
        for seed in SEEDS:
            one, first, _ = trace(key, fake_name, seed)
            serial = [c for y in one for c in y]
            for width in (2, 4, 8):
                yields, result, ledger = trace(key, fake_name, seed, parallel=width)
                flat = [c for y in yields for c in y]
                assert flat[: len(serial)] == serial  # W = 1's asks come first
                assert len(flat) - len(serial) < width
                assert result.stopped_early == first.stopped_early
                assert result.best_chain == pick_best(ledger.seen, FULL)[0]
                if not first.stopped_early:
                    assert flat == serial


def test_a_selection_of_a_pending_or_known_chain_is_never_asked_again():
    """run_rounds with a selection that always lands on one node: the round asks it once;
    its repeats (held by a virtual loss, at most W a round) and the later re-reads are told
    from the ledger; the simulations stop at max_simulations; every loss is taken back."""
    root = Node(FULL, None, [])
    leaf = Node((0, 1), root, [])
    root.children.append(leaf)
    ledger = Ledger(L, budget=10)
    ledger.seen[FULL] = Outcome(False, 0.0)
    told: list[Chain] = []

    def tell(node: Node, outcome: Outcome) -> None:
        told.append(node.chain)
        while node is not None:
            node.visits += 1
            node = node.parent

    run = run_rounds(ledger, root, 4, 9, lambda: leaf, tell, lambda node, outcome: False)
    assert next(run) == [(0, 1)]
    with pytest.raises(StopIteration) as stop:
        run.send([Outcome(True, 1.0)])
    assert stop.value.value is False  # no early stop
    assert ledger.evaluations == 2 and told == [(0, 1)] * 9
    assert leaf.visits == 9 and root.visits == 9  # the told visits only: no loss is left


def test_a_stop_in_a_round_ends_the_search_after_it():
    root = Node(FULL, None, [])
    nodes = [Node((i,), root, []) for i in range(5)]
    picks = iter(nodes)
    ledger = Ledger(L, budget=20)
    ledger.seen[FULL] = Outcome(False, 0.0)
    run = run_rounds(ledger, root, 3, 100, lambda: next(picks), lambda node, outcome: None,
                     lambda node, outcome: outcome.correct)
    assert next(run) == [(0,), (1,), (2,)]
    with pytest.raises(StopIteration) as stop:
        run.send([Outcome(False, 0.0), Outcome(True, 1.0), Outcome(False, 0.0)])
    assert stop.value.value is True and ledger.evaluations == 4


def test_a_round_never_asks_past_the_budget():
    root = Node(FULL, None, [])
    nodes = iter(Node((i,), root, []) for i in range(8))
    ledger = Ledger(L, budget=3)
    ledger.seen[FULL] = Outcome(False, 0.0)
    run = run_rounds(ledger, root, 8, 100, lambda: next(nodes), lambda node, outcome: None,
                     lambda node, outcome: False)
    assert next(run) == [(0,), (1,)]  # 2 left of 3
    with pytest.raises(StopIteration):
        run.send([Outcome(False, 0.0)] * 2)


def test_a_virtual_loss_sends_the_next_selection_elsewhere():
    searcher = get_searcher("mcts", c=0.0, random_prob=0.0, length_penalty=0.0)
    root = Node(FULL, None, [], visits=3, wins=1.6)
    better = Node((0, 1), root, [], visits=1, wins=1.0)
    worse = Node((0, 2), root, [], visits=1, wins=0.6)
    root.children += [better, worse]
    assert searcher._select(root, random.Random(0), L) is better
    add_virtual_loss(better)  # its mean 1/1 -> 1/2 < 0.6, as if it had lost once
    assert (better.visits, root.visits, better.wins) == (2, 4, 1.0)
    assert searcher._select(root, random.Random(0), L) is worse
    take_virtual_loss(better)
    assert (better.visits, root.visits) == (1, 3)


@pytest.mark.parametrize("name", ["mcts", "random", "greedy"])
@pytest.mark.parametrize("value", [0, -1, True, 1.5, "4"])
def test_a_bad_parallel_is_one_line_naming_it(name, value):
    with pytest.raises(ValueError) as err:
        get_searcher(name, parallel=value)
    msg = str(err.value)
    assert "'parallel'" in msg and repr(value) in msg and "an int >= 1" in msg
    assert "\n" not in msg


def test_parallel_is_a_setting_of_every_searcher_but_none():
    assert get_searcher("mcts", parallel=8).settings_dict()["parallel"] == 8
    assert get_searcher("random").settings_dict()["parallel"] == 1
    assert get_searcher("greedy").settings_dict()["parallel"] is None  # a whole pass
    with pytest.raises(ValueError, match="'parallel'"):
        get_searcher("mcts", parallel=None)
    with pytest.raises(ValueError, match="unknown setting 'parallel'"):
        get_searcher("none", parallel=2)
