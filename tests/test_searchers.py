"""Searchers against fake evaluators whose right answers are known."""

import math
import random
from collections.abc import Callable

import pytest

from lm_eval_cola.searchers import (
    SEARCHERS,
    BudgetExhausted,
    Chain,
    ChainEvaluator,
    Outcome,
    Searcher,
    SearchResult,
    get_searcher,
    pick_best,
    register_searcher,
    searcher_names,
)
from lm_eval_cola.searchers.base import neighbours

L = 8
FULL = tuple(range(L))
PLANTED_REPEAT = (0, 1, 2, 2, 3, 4, 5, 6, 7)
SEARCHING = ["mcts", "greedy", "random"]


class Fake:
    """A raw evaluate function with a known answer that logs every call it gets."""

    def __init__(self, correct: Callable[[Chain], bool], score: Callable[[Chain], float]):
        self.correct = correct
        self.score = score
        self.calls: list[Chain] = []
        self.batches: list[int] = []

    def __call__(self, chain: Chain) -> Outcome:
        self.calls.append(chain)
        return Outcome(self.correct(chain), self.score(chain))

    def many(self, chains: list[Chain]) -> list[Outcome]:
        self.batches.append(len(chains))
        return [self(c) for c in chains]


def skip3_keep5() -> Fake:
    """Full chain wrong; right iff layer 3 is skipped and layer 5 kept. Shortest: (5,)."""
    return Fake(lambda c: 3 not in c and 5 in c, lambda c: -len(c) / L + 0.01 * c.count(5))


def needs_146() -> Fake:
    """Full chain right; monotone: right iff layers 1, 4 and 6 are all in. Shortest: (1, 4, 6)."""
    return Fake(lambda c: {1, 4, 6} <= set(c), lambda c: -len(c) + 0.01 * sum(c))


def repeat2() -> Fake:
    """Full chain wrong; only the full chain with layer 2 repeated once is right."""
    return Fake(lambda c: c == PLANTED_REPEAT, lambda c: c.count(2) - 0.1 * abs(len(c) - L))


def never() -> Fake:
    return Fake(lambda c: False, lambda c: -sum(c) / 100)


def run(name: str, fake: Fake, seed: int = 0, batched: bool = False, **settings):
    searcher = get_searcher(name, **settings)
    evaluator = searcher.make_evaluator(fake, L, fake.many if batched else None)
    result = searcher.search(evaluator, seed)
    return result, evaluator


def check_invariants(result: SearchResult, evaluator: ChainEvaluator, fake: Fake) -> None:
    assert fake.calls[0] == FULL  # the root is always evaluated first
    assert len(fake.calls) == len(set(fake.calls)) == evaluator.evaluations
    assert result.evaluations == evaluator.evaluations <= evaluator.budget
    assert result.full_correct == fake.correct(FULL)
    for chain in [result.best_chain, *result.correct_chains]:
        assert chain in fake.calls
    for chain in result.correct_chains:
        assert fake.correct(chain)
    assert result.best_chain not in result.correct_chains
    assert len(set(result.correct_chains)) == len(result.correct_chains)
    assert result.best_outcome == evaluator.seen[result.best_chain]
    best, others = pick_best(evaluator.seen, FULL)
    assert result.best_chain == best
    assert result.correct_chains == others[: len(result.correct_chains)]


# --- the evaluator -----------------------------------------------------------------------


def test_evaluator_memoizes_and_counts():
    fake = never()
    ev = ChainEvaluator(fake, L, budget=3)
    assert ev((0, 1)) is ev((0, 1))
    ev([0, 1])  # any sequence is the same chain
    assert fake.calls == [(0, 1)] and ev.evaluations == 1 and ev.remaining == 2
    ev((2,))
    ev((3,))
    with pytest.raises(BudgetExhausted):
        ev((4,))
    assert ev((0, 1)).correct is False  # a memoized chain stays free after the budget
    assert len(fake.calls) == 3 == ev.evaluations


def test_evaluator_many_dedups_truncates_and_aligns():
    fake = needs_146()
    ev = ChainEvaluator(fake, L, budget=3, evaluate_many=fake.many)
    ev((1, 4, 6))
    chains = [(1, 4, 6), (0,), (0,), (1,), (2,), (3,)]
    out = ev.many(chains)
    # (0,) and (1,) fit the 2 units left; (2,) is the first chain it could not afford.
    assert fake.batches == [2] and fake.calls[1:] == [(0,), (1,)]
    assert out == [ev.seen[c] for c in chains[:4]]
    assert ev.many([(0,), (1, 4, 6)]) == [ev.seen[(0,)], ev.seen[(1, 4, 6)]]
    with pytest.raises(BudgetExhausted):
        ev.many([(0,), (5,)])
    assert ev.evaluations == 3 == len(fake.calls)


def test_evaluator_rejects_bad_chains_and_budgets():
    ev = ChainEvaluator(never(), L, budget=2)
    for bad in [(), (L,), (-1,), (0, 1.0)]:
        with pytest.raises(ValueError, match=r"chain|index"):
            ev(bad)
    with pytest.raises(ValueError, match="budget"):
        ChainEvaluator(never(), L, budget=0)
    with pytest.raises(TypeError, match="Outcome"):
        ChainEvaluator(lambda c: True, L, budget=1)(FULL)


def test_outcome_nan_score_ranks_last():
    assert Outcome(True, float("nan")).score == -math.inf


def test_pick_best_rule():
    seen = {
        FULL: Outcome(True, 0.0),
        (0, 1, 2): Outcome(True, 0.1),
        (0, 2, 3): Outcome(True, 0.5),
        (1, 2, 3): Outcome(True, 0.5),
        (0,): Outcome(False, 9.0),
        (5, 6, 7, 0): Outcome(True, 9.0),
    }
    best, others = pick_best(seen, FULL)
    # shortest first, then higher score, then the lexicographically smaller chain
    assert best == (0, 2, 3)
    assert others == [(1, 2, 3), (0, 1, 2), (5, 6, 7, 0), FULL]
    assert pick_best({FULL: Outcome(False, 0.0), (1,): Outcome(False, 5.0)}, FULL) == (FULL, [])


def test_neighbours_are_the_skip_and_repeat_actions():
    chain = (0, 1, 2)
    got = set(neighbours(chain, (1, 2), (1,), 1, 6))
    skips = {(1, 2), (0, 2), (0, 1), (2,), (0,)}
    repeats = {(0, 0, 1, 2), (0, 1, 1, 2), (0, 1, 2, 2)}
    assert got == skips | repeats
    assert set(neighbours(chain, (1, 2), (1,), 2, 3)) == {(1, 2), (0, 2), (0, 1)}


# --- every searcher ----------------------------------------------------------------------


def test_none_is_the_full_chain_alone():
    fake = needs_146()
    searcher = get_searcher("none")
    evaluator = searcher.make_evaluator(fake, L)
    assert evaluator.budget == 1
    result = searcher.search(evaluator, seed=0)
    assert fake.calls == [FULL]
    assert result.best_chain == FULL and result.evaluations == 1 and result.full_correct
    assert result.correct_chains == [] and not result.stopped_early


def test_greedy_finds_shortest_under_monotone_fake():
    fake = needs_146()
    result, evaluator = run("greedy", fake)
    assert result.best_chain == (1, 4, 6)
    check_invariants(result, evaluator, fake)


def test_greedy_rescues_then_prunes():
    fake = skip3_keep5()
    result, evaluator = run("greedy", fake, batched=True)
    assert result.best_chain == (5,)
    assert fake.batches[0] == len(neighbours(FULL, (1,), (1,), 1, 2 * L))  # one batch
    check_invariants(result, evaluator, fake)


@pytest.mark.parametrize("name,budget", [("greedy", 60), ("mcts", 30), ("random", 1000)])
def test_finds_planted_repeat(name, budget):
    for seed in range(3):
        fake = repeat2()
        result, evaluator = run(name, fake, seed=seed, budget=budget)
        assert result.best_chain == PLANTED_REPEAT
        assert not result.full_correct and result.best_outcome.correct
        check_invariants(result, evaluator, fake)


@pytest.mark.parametrize("name", ["mcts", "random"])
def test_early_stop_when_full_is_wrong(name):
    for seed in range(3):
        fake = skip3_keep5()
        result, evaluator = run(name, fake, seed=seed, budget=100)
        assert result.stopped_early and fake.correct(result.best_chain)
        assert evaluator.evaluations < 100
        # it stopped at the first correct chain it saw
        assert [c for c in fake.calls if fake.correct(c)] == [fake.calls[-1]]
        check_invariants(result, evaluator, fake)


@pytest.mark.parametrize("name", ["mcts", "random"])
@pytest.mark.parametrize("min_shorter", [2, 3])
def test_early_stop_when_full_is_right(name, min_shorter):
    for seed in range(3):
        fake = needs_146()
        result, evaluator = run(name, fake, seed=seed, budget=100, min_shorter=min_shorter)
        assert result.stopped_early
        assert len(result.best_chain) <= L - min_shorter
        assert len(fake.calls[-1]) <= L - min_shorter and fake.correct(fake.calls[-1])
        hits = [c for c in fake.calls if fake.correct(c) and len(c) <= L - min_shorter]
        assert hits == [fake.calls[-1]]
        check_invariants(result, evaluator, fake)


@pytest.mark.parametrize("name", ["mcts", "random"])
def test_without_early_stop_spends_the_budget(name):
    fake = needs_146()
    result, evaluator = run(name, fake, budget=40, early_stop=False)
    assert not result.stopped_early and evaluator.evaluations == 40
    assert len(result.best_chain) < L
    check_invariants(result, evaluator, fake)


@pytest.mark.parametrize("name", SEARCHING)
@pytest.mark.parametrize("budget", [1, 2, 7, 37])
@pytest.mark.parametrize("batched", [False, True])
def test_budget_is_never_exceeded(name, budget, batched):
    fake = never()
    result, evaluator = run(name, fake, seed=1, batched=batched, budget=budget)
    assert len(fake.calls) == evaluator.evaluations == result.evaluations <= budget
    if name != "greedy":  # greedy gives up after max_rounds rescue rounds
        assert evaluator.evaluations == budget
    assert result.best_chain == FULL and not result.best_outcome.correct
    check_invariants(result, evaluator, fake)


@pytest.mark.parametrize("name", SEARCHING)
def test_keep_correct_caps_the_list(name):
    for keep in [0, 1, 3]:
        fake = needs_146()
        extra = {} if name == "greedy" else {"early_stop": False}
        searcher = get_searcher(name, budget=60, **extra)
        evaluator = searcher.make_evaluator(fake, L)
        result = searcher.search(evaluator, seed=0, keep_correct=keep)
        assert len(result.correct_chains) == keep  # plenty of correct chains were seen
        check_invariants(result, evaluator, fake)
    with pytest.raises(ValueError, match="keep_correct"):
        searcher.search(searcher.make_evaluator(fake, L), seed=0, keep_correct=-1)


@pytest.mark.parametrize("name", SEARCHING)
def test_chains_respect_length_bounds(name):
    fake = never()
    result, evaluator = run(name, fake, budget=50, min_len=6, max_len=9)
    assert all(6 <= len(c) <= 9 for c in fake.calls[1:])
    check_invariants(result, evaluator, fake)


@pytest.mark.parametrize("name", SEARCHING)
def test_same_seed_same_result_and_no_global_random(name):
    def trace(seed):
        fake = needs_146()
        result, _ = run(name, fake, seed=seed, budget=40, **extra)
        return result, fake.calls

    extra = {} if name == "greedy" else {"early_stop": False}
    random.seed(123)
    state = random.getstate()
    assert trace(5) == trace(5)
    assert random.getstate() == state  # the global generator is neither used nor reseeded
    traces = {tuple(trace(seed)[1]) for seed in range(6)}
    if name == "greedy":
        assert len(traces) == 1  # deterministic given the evaluator
    else:
        assert len(traces) > 1  # the seed matters


@pytest.mark.parametrize("descend_to_leaf", [False, True])
def test_mcts_tree_shape(descend_to_leaf):
    fake = needs_146()
    searcher = get_searcher("mcts", budget=30, early_stop=False, descend_to_leaf=descend_to_leaf)
    nodes = []
    new_node = searcher._new_node
    searcher._new_node = lambda *args: nodes.append(new_node(*args)) or nodes[-1]
    evaluator = searcher.make_evaluator(fake, L)
    result = searcher.search(evaluator, seed=0)
    for node in nodes[1:]:  # every edge is one skip/repeat action
        assert node.chain in neighbours(node.parent.chain, (1, 2), (1,), 1, 2 * L)
    widest = max(len(node.children) for node in nodes)
    if descend_to_leaf:
        # The public code's selection: a node never gets a second child, so the tree is
        # one walk, and it runs `budget` simulations (one node each).
        assert widest == 1 and len(nodes) == 1 + 30
    else:
        # Textbook MCTS expands the root fully before going deeper.
        assert widest == len(neighbours(FULL, (1, 2), (1,), 1, 2 * L))
        assert evaluator.evaluations == 30
    check_invariants(result, evaluator, fake)


def test_random_batches_through_evaluate_many():
    fake = never()
    run("random", fake, batched=True, budget=25, batch_size=10)
    assert fake.batches == [10, 10, 4]  # the full chain was evaluated alone first


# --- names and settings ------------------------------------------------------------------


def test_registry_names():
    assert searcher_names() == ["greedy", "mcts", "none", "random"]
    with pytest.raises(ValueError) as err:
        get_searcher("x")
    assert str(err.value) == "unknown searcher 'x'; allowed: greedy, mcts, none, random"


def test_register_searcher():
    class Echo(Searcher):
        def search(self, evaluator, seed, keep_correct=5):
            raise NotImplementedError

    try:
        assert register_searcher("echo")(Echo) is Echo
        assert isinstance(get_searcher("echo", budget=3), Echo)
        with pytest.raises(ValueError, match="already registered"):
            register_searcher("echo")(type("Other", (Echo,), {}))
    finally:
        SEARCHERS.pop("echo", None)


@pytest.mark.parametrize("name", ["none", *SEARCHING])
def test_unknown_setting(name):
    with pytest.raises(ValueError) as err:
        get_searcher(name, bogus=1)
    msg = str(err.value)
    assert "'bogus'" in msg and "allowed: " in msg and "budget" in msg and "\n" not in msg


@pytest.mark.parametrize(
    "name,key,value",
    [
        ("mcts", "c", -1.0),
        ("mcts", "budget", 0),
        ("mcts", "budget", True),
        ("mcts", "random_prob", 1.5),
        ("mcts", "skip_sizes", (0,)),
        ("mcts", "repeat_sizes", ()),
        ("mcts", "early_stop", "yes"),
        ("mcts", "length_penalty", float("nan")),
        ("mcts", "max_simulations", 0),
        ("random", "max_actions", 0),
        ("random", "min_shorter", 0),
        ("greedy", "max_rounds", -2),
        ("greedy", "min_len", 0),
        ("none", "max_len", "many"),
    ],
)
def test_bad_setting_value(name, key, value):
    with pytest.raises(ValueError) as err:
        get_searcher(name, **{key: value})
    msg = str(err.value)
    assert f"'{key}'" in msg and repr(value) in msg and "allowed:" in msg


def test_settings_record_effective_values():
    settings = get_searcher("mcts", budget=100, length_penalty=5, skip_sizes=[2, 1]).settings_dict()
    assert settings["budget"] == 100 and settings["length_penalty"] == 5.0
    assert settings["skip_sizes"] == (1, 2) and settings["c"] == 1.8
    assert settings["random_prob"] == 0.1 and settings["max_len"] is None
    assert settings["early_stop"] is True and settings["min_shorter"] == 2
    assert get_searcher("random").settings.max_actions == 4
    with pytest.raises(ValueError, match="min_len"):
        run("mcts", never(), min_len=20)  # more than 2L for L=8
