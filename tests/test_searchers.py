"""Searchers against fake evaluators whose right answers are known."""

import random

import pytest

from lm_eval_cola.search.searchers import (
    SEARCHERS,
    Ledger,
    Searcher,
    get_searcher,
    register_searcher,
    searcher_names,
)
from lm_eval_cola.search.searchers.base import neighbours
from tests.support.searcher_fakes import (
    FULL,
    PLANTED_REPEAT,
    SEARCHING,
    L,
    answer,
    check_invariants,
    needs_146,
    never,
    repeat2,
    run,
    run_searcher,
    skip3_keep5,
)

pytestmark = pytest.mark.quick

# --- every searcher ----------------------------------------------------------------------


def test_none_is_the_full_chain_alone():
    fake = needs_146()
    searcher = get_searcher("none")
    ledger, search = searcher.start(L, seed=0)
    assert ledger.budget == 1
    result, yields = answer(search, fake, ledger)
    assert fake.calls == [FULL] and yields == [[FULL]]
    assert result.best_chain == FULL and result.evaluations == 1 and result.full_correct
    assert result.correct_chains == [] and not result.stopped_early


def test_greedy_finds_shortest_under_monotone_fake():
    fake = needs_146()
    result, ledger = run("greedy", fake)
    assert result.best_chain == (1, 4, 6)
    check_invariants(result, ledger, fake)


def test_greedy_rescues_then_prunes():
    fake = skip3_keep5()
    result, ledger = run("greedy", fake, batched=True)
    assert result.best_chain == (5,)
    # the full chain alone, then the rescue candidates in one batch
    assert fake.batches[:2] == [1, len(neighbours(FULL, (1,), (1,), 1, 2 * L))]
    check_invariants(result, ledger, fake)


@pytest.mark.parametrize("name,budget", [("greedy", 60), ("mcts", 30), ("random", 1000)])
def test_finds_planted_repeat(name, budget):
    for seed in range(3):
        fake = repeat2()
        result, ledger = run(name, fake, seed=seed, budget=budget)
        assert result.best_chain == PLANTED_REPEAT
        assert not result.full_correct and result.best_outcome.correct
        check_invariants(result, ledger, fake)


@pytest.mark.parametrize("name", ["mcts", "random"])
def test_early_stop_when_full_is_wrong(name):
    for seed in range(3):
        fake = skip3_keep5()
        result, ledger = run(name, fake, seed=seed, budget=100)
        assert result.stopped_early and fake.correct(result.best_chain)
        assert ledger.evaluations < 100
        # it stopped at the first correct chain it saw
        assert [c for c in fake.calls if fake.correct(c)] == [fake.calls[-1]]
        check_invariants(result, ledger, fake)


@pytest.mark.parametrize("name", ["mcts", "random"])
@pytest.mark.parametrize("min_shorter", [2, 3])
def test_early_stop_when_full_is_right(name, min_shorter):
    for seed in range(3):
        fake = needs_146()
        result, ledger = run(name, fake, seed=seed, budget=100, min_shorter=min_shorter)
        assert result.stopped_early
        assert len(result.best_chain) <= L - min_shorter
        assert len(fake.calls[-1]) <= L - min_shorter and fake.correct(fake.calls[-1])
        hits = [c for c in fake.calls if fake.correct(c) and len(c) <= L - min_shorter]
        assert hits == [fake.calls[-1]]
        check_invariants(result, ledger, fake)


@pytest.mark.parametrize("name", ["mcts", "random"])
def test_without_early_stop_spends_the_budget(name):
    fake = needs_146()
    result, ledger = run(name, fake, budget=40, early_stop=False)
    assert not result.stopped_early and ledger.evaluations == 40
    assert len(result.best_chain) < L
    check_invariants(result, ledger, fake)


@pytest.mark.parametrize("name", SEARCHING)
@pytest.mark.parametrize("budget", [1, 2, 7, 37])
@pytest.mark.parametrize("batched", [False, True])
def test_budget_is_never_exceeded(name, budget, batched):
    fake = never()
    result, ledger = run(name, fake, seed=1, batched=batched, budget=budget)
    assert len(fake.calls) == ledger.evaluations == result.evaluations <= budget
    if name != "greedy":  # greedy gives up after max_rounds rescue rounds
        assert ledger.evaluations == budget
    assert result.best_chain == FULL and not result.best_outcome.correct
    check_invariants(result, ledger, fake)


@pytest.mark.parametrize("name", SEARCHING)
def test_keep_correct_caps_the_list(name):
    for keep in [0, 1, 3]:
        fake = needs_146()
        extra = {} if name == "greedy" else {"early_stop": False}
        searcher = get_searcher(name, budget=60, **extra)
        ledger, search = searcher.start(L, seed=0, keep_correct=keep)
        result, _ = answer(search, fake, ledger)
        assert len(result.correct_chains) == keep  # plenty of correct chains were seen
        check_invariants(result, ledger, fake)
    with pytest.raises(ValueError, match="keep_correct"):
        searcher.start(L, seed=0, keep_correct=-1)  # at once, before any chain is asked
    with pytest.raises(ValueError, match="keep_correct"):
        ledger = Ledger(L, 5)
        answer(searcher.search(ledger, seed=0, keep_correct=-1), fake, ledger)


@pytest.mark.parametrize("name", SEARCHING)
def test_chains_respect_length_bounds(name):
    fake = never()
    result, ledger = run(name, fake, budget=50, min_len=6, max_len=9)
    assert all(6 <= len(c) <= 9 for c in fake.calls[1:])
    check_invariants(result, ledger, fake)


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
        assert len(traces) == 1  # deterministic given the outcomes
    else:
        assert len(traces) > 1  # the seed matters


@pytest.mark.parametrize("descend_to_leaf", [False, True])
def test_mcts_tree_shape(descend_to_leaf):
    fake = needs_146()
    searcher = get_searcher("mcts", budget=30, early_stop=False, descend_to_leaf=descend_to_leaf)
    nodes = []
    new_node = searcher._new_node
    searcher._new_node = lambda *args: nodes.append(new_node(*args)) or nodes[-1]
    result, ledger = run_searcher(searcher, fake)
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
        assert ledger.evaluations == 30
    check_invariants(result, ledger, fake)


def test_random_asks_one_chain_at_a_time():
    fake = never()
    run("random", fake, batched=True, budget=25)
    assert fake.batches == [1] * 25  # never an evaluation past an early stop


def test_batch_size_is_not_a_random_setting():
    # It was once; lm-eval's own `-b/--batch_size` model argument then reached the searcher.
    with pytest.raises(ValueError) as err:
        get_searcher("random", batch_size=8)
    assert "'batch_size'" in str(err.value) and "random" in str(err.value)


# --- names and settings ------------------------------------------------------------------


def test_registry_names():
    assert searcher_names() == ["greedy", "mcts", "none", "random"]
    with pytest.raises(ValueError) as err:
        get_searcher("x")
    assert str(err.value) == "unknown searcher 'x'; allowed: greedy, mcts, none, random"


def test_register_searcher():
    class Echo(Searcher):
        def search(self, ledger, seed, keep_correct=5):
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
