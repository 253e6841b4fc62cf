"""The action space (actions.py), the protocol presets (protocols.py), the Pareto set and
broken (non-finite) scores, for every searcher."""

import math
import random

import pytest

from lm_eval_cola.searchers import (
    PROTOCOLS,
    ActionSpace,
    Outcome,
    get_searcher,
    pareto_front,
    pick_best,
    run_search,
)
from lm_eval_cola.searchers.actions import Action, parse_actions, parse_sizes
from lm_eval_cola.searchers.base import neighbours
from tests.searcher_fakes import (
    FULL,
    SEARCHING,
    Fake,
    L,
    check_invariants,
    needs_146,
    never,
    run,
    run_searcher,
    skip3_keep5,
)

FULL30 = tuple(range(30))
PAPER = {"actions": "skip+loop", "block_sizes": "1+2+3+4", "loop_repeats": "1+2+3+4"}


# --- actions ---------------------------------------------------------------------------


def test_loop_runs_a_block_r_more_times():
    looped = Action("loop", 10, 3, 2).apply(FULL30)
    assert looped == FULL30[:13] + (10, 11, 12) * 2 + FULL30[13:]
    assert Action("loop", 10, 3, 2).describe(FULL30) == "loop 10-12 x2 more"
    assert Action("skip", 20, 2).apply(FULL30) == FULL30[:20] + FULL30[22:]
    assert Action("swap", 1, 2).apply((0, 1, 2, 3, 4, 5)) == (0, 3, 4, 1, 2, 5)
    assert Action("skip", 20, 2).key(FULL30) == ("skip", (20, 21), 0)
    assert Action("swap", 1, 2).key((0, 1, 2, 3, 4)) == ("swap", (1, 2), (3, 4))


def test_old_repeat_is_a_loop_of_one_position():
    # "repeat k" of the older space = loop with block size 1 and r = k, same order
    rng = random.Random(0)
    for _ in range(50):
        chain = tuple(rng.randrange(8) for _ in range(rng.randrange(1, 12)))
        for skips, repeats, lo, hi in [((1, 2), (1,), 1, 16), ((1, 3), (1, 2), 3, 12)]:
            space = ActionSpace.legacy(skips, repeats, lo, hi)
            old = []
            for k in skips:
                old += [chain[:i] + chain[i + k :] for i in range(len(chain) - k + 1)]
            for k in repeats:
                n = len(chain)
                old += [chain[: i + 1] + (chain[i],) * k + chain[i + 1 :] for i in range(n)]
            old = [c for c in dict.fromkeys(old) if c and lo <= len(c) <= hi]
            assert space.chains(chain) == old == neighbours(chain, skips, repeats, lo, hi)
            assert [m.chain for m in space.moves(chain)] == old


def test_moves_order_bounds_and_copies():
    space = ActionSpace.of(("skip", "loop", "swap"), (1, 2), (1, 2), 2, 7, max_copies=2)
    chain = (0, 1, 2, 3, 4)
    moves = space.moves(chain)
    assert moves == space.moves(chain)  # deterministic
    kinds = [m.action.kind for m in moves]
    assert kinds == sorted(kinds, key=["skip", "loop", "swap"].index)  # skips, loops, swaps
    for m in moves:
        assert m.action.apply(chain) == m.chain and m.chain != chain
        assert 2 <= len(m.chain) <= 7 and max(m.chain.count(x) for x in m.chain) <= 2
    assert len({m.chain for m in moves}) == len(moves) == len(space.chains(chain))
    assert (0, 1, 0, 1, 2, 3, 4) in space.chains(chain)  # loop 0-1 once more
    assert (0, 1, 0, 1, 0, 1, 2, 3, 4) not in space.chains(chain)  # 3 copies, and too long


def test_parsing_model_args_values():
    assert parse_actions("a", "loop+skip") == ("skip", "loop")
    assert parse_actions("a", ("swap", "skip")) == ("skip", "swap")
    assert parse_sizes("k", "1+2+3+4") == parse_sizes("k", "1-4") == (1, 2, 3, 4)
    assert parse_sizes("k", 3) == (3,) == parse_sizes("k", "3") == parse_sizes("k", [3.0])
    assert parse_sizes("k", ("2", 1, 2)) == (1, 2)
    assert parse_actions("a", "skip+") == ("skip",)
    for bad in ["", "jump", ("skip", 1), 5, None]:
        with pytest.raises(ValueError, match="'actions'"):
            parse_actions("actions", bad)
    for bad in [0, "0", "a", (), "4-1", True, 1.5, None]:
        with pytest.raises(ValueError, match="'block_sizes'"):
            parse_sizes("block_sizes", bad)


# --- the settings ----------------------------------------------------------------------


@pytest.mark.parametrize("name", SEARCHING)
def test_new_settings_default_to_the_old_space(name):
    settings = get_searcher(name).settings
    assert settings.actions is None and settings.block_sizes is None
    assert settings.loop_repeats is None and settings.max_copies is None
    assert settings.protocol is None and not settings.paper_space
    old = (1, 2) if name != "greedy" else (1,)
    assert settings.action_space(L) == ActionSpace.legacy(old, (1,), 1, 2 * L)


@pytest.mark.parametrize("name", SEARCHING)
def test_paper_space_settings(name):
    s = get_searcher(name, actions="loop+skip", block_sizes="1+2+3+4", loop_repeats=2).settings
    assert (s.actions, s.block_sizes, s.loop_repeats) == (("skip", "loop"), (1, 2, 3, 4), (2,))
    s = get_searcher(name, block_sizes=3).settings  # the others: skip+loop, r in 1..4
    assert (s.actions, s.block_sizes, s.loop_repeats) == (("skip", "loop"), (3,), (1, 2, 3, 4))
    assert get_searcher(name, actions="skip").settings.block_sizes == (1, 2, 3, 4)
    space = get_searcher(name, actions="skip+loop+swap", block_sizes=2).settings.action_space(L)
    assert space.swap_sizes == (2,) and space.skip_sizes == (2,) and space.loop_sizes == (2,)
    for key, value in [("actions", "jump"), ("block_sizes", "0"), ("loop_repeats", ()),
                       ("max_copies", 0), ("protocol", "paper")]:
        with pytest.raises(ValueError) as err:
            get_searcher(name, **{key: value})
        assert f"'{key}'" in str(err.value) and "allowed" in str(err.value)


@pytest.mark.parametrize("name", ["mcts", "random"])
def test_old_and_new_space_settings_do_not_mix(name):
    with pytest.raises(ValueError, match="skip_sizes"):
        get_searcher(name, actions="skip", skip_sizes=(1, 2, 3))
    assert get_searcher(name, skip_sizes="1+3").settings.skip_sizes == (1, 3)  # text, as before


@pytest.mark.parametrize("name", ["mcts", "random"])
@pytest.mark.parametrize("actions,grows", [("skip", False), ("loop", True), ("skip+loop", None)])
def test_table1_columns(name, actions, grows):
    # skip-only, recurrence-only and CoLa (skip+loop): what every asked chain can be
    fake = never()
    result, ledger = run(name, fake, budget=60, early_stop=False, actions=actions, block_sizes=2)
    longer = [len(c) > L for c in fake.calls[1:]]
    if grows is None:
        assert any(longer) and not all(longer)
    else:
        assert all(longer) if grows else not any(longer)
    check_invariants(result, ledger, fake)


def test_greedy_uses_the_space():
    fake = needs_146()
    result, ledger = run("greedy", fake, actions="loop")  # recurrence only: nothing to prune
    assert result.best_chain == FULL and all(len(c) >= L for c in fake.calls)
    fake = needs_146()
    result, _ = run("greedy", fake, batched=True, actions="skip", block_sizes="1+2")
    assert result.best_chain == (1, 4, 6)
    assert fake.batches[1] == len(ActionSpace.of(("skip",), (1, 2), (), 1, 2 * L).chains(FULL))
    fake = skip3_keep5()
    result, _ = run("greedy", fake, batched=True, actions="skip+loop", block_sizes=2)
    assert fake.batches[1] == len(ActionSpace.of(("skip", "loop"), (2,), (1, 2, 3, 4), 1,
                                                 2 * L).chains(FULL))


@pytest.mark.parametrize("name", SEARCHING)
def test_max_copies(name):
    fake = never()
    run(name, fake, budget=80, actions="loop", max_copies=2, **({} if name == "greedy" else
                                                                  {"early_stop": False}))
    assert all(c.count(x) <= 2 for c in fake.calls for x in c)


# --- protocols -------------------------------------------------------------------------


def test_protocols_are_documented_presets():
    assert sorted(PROTOCOLS) == ["cola", "drllm", "polar"]
    s = get_searcher("mcts", protocol="cola").settings
    assert s.protocol == "cola" and s.mode == "deep" and s.reward == "graded"
    assert (s.actions, s.block_sizes, s.loop_repeats) == (("skip", "loop"), (1, 2, 3, 4),
                                                          (1, 2, 3, 4))
    assert (s.budget, s.length_penalty, s.random_prob, s.early_stop) == (200, 5.0, 0.1, False)
    # explicit settings win, and the name stays in the settings (so in records)
    d = get_searcher("mcts", protocol="cola", budget=50, length_penalty=1).settings_dict()
    assert d["protocol"] == "cola" and d["budget"] == 50 and d["length_penalty"] == 1.0
    # random and greedy take what they have of a preset: the control at equal cost
    r = get_searcher("random", protocol="cola").settings
    assert (r.budget, r.actions, r.block_sizes, r.early_stop) == (200, ("skip", "loop"),
                                                                  (1, 2, 3, 4), False)
    g = get_searcher("greedy", protocol="polar").settings
    assert (g.budget, g.max_copies, g.block_sizes) == (100, 2, (1,))


def test_drllm_is_todays_descend_to_leaf_walk():
    for make_fake in (needs_146, skip3_keep5, never):
        for seed in range(3):
            a, b = make_fake(), make_fake()
            ra, _ = run("mcts", a, seed=seed, protocol="drllm")
            rb, _ = run("mcts", b, seed=seed, descend_to_leaf=True)
            assert a.calls == b.calls and ra == rb
    d = get_searcher("mcts", protocol="drllm").settings_dict()
    assert d == {**get_searcher("mcts", descend_to_leaf=True).settings_dict(), "protocol": "drllm"}


def test_polar_walk():
    searcher = get_searcher("mcts", protocol="polar")
    s = searcher.settings
    assert (s.budget, s.length_penalty, s.exploration, s.mode) == (100, 5.0, "root", "expand_all")
    assert s.c == pytest.approx(math.sqrt(2)) and not s.early_stop and s.max_copies == 2
    nodes = []
    new_node = searcher._new_node
    searcher._new_node = lambda *args: nodes.append(new_node(*args)) or nodes[-1]
    fake = needs_146()
    result, ledger = run_searcher(searcher, fake)
    root = nodes[0]
    assert ledger.evaluations == 100 and not result.stopped_early
    root_sizes = {len(c) for c in (ch.chain for ch in root.children)}
    assert {L - 2, L - 3, L - 4, L + 2, L + 3, L + 4} <= root_sizes  # blocks of 2-4 at the root
    assert len(root.children) == len(s.spaces(L)[0].chains(FULL))  # all expanded at once
    deeper = [n for n in nodes if n.parent is not None and n.parent is not root]
    assert deeper  # it went below the root
    for node in deeper:  # single layers below the root
        assert abs(len(node.chain) - len(node.parent.chain)) == 1
    assert all(c.count(x) <= 2 for c in fake.calls for x in c)  # at most 2 copies
    check_invariants(result, ledger, fake)


def test_cola_preset_loops_blocks_of_up_to_4():
    block = (2, 3, 4, 5)
    target = FULL[:6] + block + FULL[6:]  # loop 2-5 once more
    fake = Fake(lambda c: c == target, lambda c: -abs(len(c) - len(target)) / L
                + 0.1 * sum(c.count(x) for x in block))
    space = get_searcher("mcts", protocol="cola").settings.action_space(L)
    assert space.loop_sizes == (1, 2, 3, 4) and space.loop_repeats == (1, 2, 3, 4)
    assert target in space.chains(FULL)
    for seed in range(3):
        fake.calls.clear()
        result, ledger = run("mcts", fake, seed=seed, protocol="cola")
        assert result.best_chain == target and result.pareto == [target]
        check_invariants(result, ledger, fake)


# --- the Pareto set, and broken scores -------------------------------------------------


def test_pareto_front_rule():
    seen = {
        (0, 1, 2): Outcome(True, 0.1),
        (0, 1, 3): Outcome(True, 0.5),  # best of length 3
        (0, 1, 2, 3): Outcome(True, 0.4),  # dominated by (0, 1, 3)
        (0, 1, 2, 3, 4): Outcome(True, 0.9),
        (1, 2, 3, 4, 5): Outcome(True, 0.9),  # tie, lexicographically larger
        (0, 1, 2, 3, 4, 5): Outcome(True, 0.9),  # no higher than a shorter one
        (0, 1, 2, 3, 4, 5, 6): Outcome(True, 1.0),
        (0,): Outcome(False, 9.0),  # wrong chains never count
        (1,): Outcome(True, float("nan")),  # broken: never counts
    }
    front = pareto_front(seen)
    assert front == [(0, 1, 3), (0, 1, 2, 3, 4), (0, 1, 2, 3, 4, 5, 6)]
    assert front[0] == pick_best(seen, FULL)[0]
    assert pareto_front({FULL: Outcome(False, 0.0)}) == []


@pytest.mark.parametrize("score", [float("nan"), math.inf, -math.inf])
def test_a_non_finite_score_is_never_correct(score):
    outcome = Outcome(True, score)
    assert outcome.correct is False and outcome.score == -math.inf
    assert Outcome(True, 1.0).correct is True


@pytest.mark.parametrize("name", SEARCHING)
@pytest.mark.parametrize("broken", [float("nan"), -math.inf, math.inf])
def test_broken_chains_are_never_best_nor_in_pareto(name, broken):
    # right iff layer 3 is skipped; but every chain of 6 layers or fewer "overflows"
    def score(c):
        return broken if len(c) <= 6 else -len(c) / L

    fake = Fake(lambda c: 3 not in c, score)
    result, ledger = run(name, fake, budget=60, **({} if name == "greedy" else
                                                   {"early_stop": False}))
    assert any(len(c) <= 6 and 3 not in c for c in fake.calls)  # some broken "right" chains
    for chain in [result.best_chain, *result.pareto, *result.correct_chains]:
        assert math.isfinite(ledger.seen[chain].score) and len(chain) > 6
    assert result.pareto and result.pareto[0] == result.best_chain
    check_invariants(result, ledger, fake)


@pytest.mark.parametrize("name", ["none", *SEARCHING])
def test_every_searcher_fills_pareto(name):
    fake = needs_146()
    result = run_search(get_searcher(name, budget=40), fake, L, 0)
    seen = {c: Outcome(fake.correct(c), fake.score(c)) for c in fake.calls}
    assert result.pareto == pareto_front(seen) and result.pareto[0] == result.best_chain
    result = run_search(get_searcher(name, budget=10), never(), L, 0)
    assert result.pareto == []
