"""The action space (actions.py), the protocol presets (protocols.py), the Pareto set and
broken (non-finite) scores, for every searcher."""

import math
import random

import pytest

from lm_eval_cola.search.searchers import (
    PROTOCOLS,
    ActionSpace,
    Outcome,
    get_searcher,
    pareto_front,
    pick_best,
    run_search,
)
from lm_eval_cola.search.searchers.actions import Action, parse_actions, parse_sizes
from lm_eval_cola.search.searchers.base import neighbours
from tests.support.searcher_fakes import (
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

pytestmark = pytest.mark.quick

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


# What `protocol=cola` set until issue #21, written out: `cola-deep` must stay exactly this,
# so runs recorded under the old name compare with new ones setting for setting.
FORMER_COLA = {"budget": 200, "mode": "deep", "reward": "graded", "actions": ("skip", "loop"),
               "block_sizes": (1, 2, 3, 4), "loop_repeats": (1, 2, 3, 4),
               "length_penalty": 5.0, "c": 0.0, "random_prob": 0.1, "early_stop": False}


def test_protocols_are_documented_presets():
    assert sorted(PROTOCOLS) == ["cola", "cola-deep", "drllm", "polar"]
    s = get_searcher("mcts", protocol="cola").settings
    assert (s.protocol, s.mode, s.reward, s.exploration) == ("cola", "cola", "correct", "parent")
    assert (s.actions, s.block_sizes, s.loop_repeats) == (("skip", "loop"), (1, 2, 3, 4),
                                                          (1, 2, 3))  # r = 2..4 runs in all
    assert (s.budget, s.length_penalty, s.random_prob, s.early_stop) == (200, 5.0, 0.1, False)
    assert s.c == pytest.approx(math.sqrt(2), abs=1e-12) and s.max_len is None  # 2L
    # explicit settings win, and the name stays in the settings (so in records)
    d = get_searcher("mcts", protocol="cola", budget=50, length_penalty=1).settings_dict()
    assert d["protocol"] == "cola" and d["budget"] == 50 and d["length_penalty"] == 1.0
    g = get_searcher("greedy", protocol="polar").settings
    assert (g.budget, g.max_copies, g.block_sizes) == (100, 2, (1,))


@pytest.mark.parametrize("protocol", ["cola", "cola-deep"])
def test_random_and_greedy_take_the_presets_space(protocol):
    # the control at equal cost: the same moves from every chain, the same budget
    mcts = get_searcher("mcts", protocol=protocol).settings
    for name in ("random", "greedy"):
        other = get_searcher(name, protocol=protocol).settings
        assert other.budget == 200 and other.loop_repeats == mcts.loop_repeats
        for chain in (FULL, FULL[:3] + (2, 2) + FULL[3:]):
            assert (other.action_space(L).chains(chain) == mcts.action_space(L).chains(chain))
    assert not get_searcher("random", protocol=protocol).settings.early_stop


def test_cola_deep_is_the_former_cola():
    deep = get_searcher("mcts", protocol="cola-deep")
    assert deep.settings_dict() == {**get_searcher("mcts", **FORMER_COLA).settings_dict(),
                                    "protocol": "cola-deep"}
    for seed in range(2):
        a, b = skip3_keep5(), skip3_keep5()
        ra, _ = run("mcts", a, seed=seed, protocol="cola-deep", budget=60)
        rb, _ = run("mcts", b, seed=seed, **{**FORMER_COLA, "budget": 60})
        assert a.calls == b.calls and ra == rb


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


def cola_ucb(q: float, v: int, parent_v: int, length: int) -> float:
    """The paper's UCB with protocol cola's constants on 4 layers: c = sqrt(2), lambda = 5."""
    return q / v + math.sqrt(2) * math.sqrt(math.log(parent_v) / v) - 5 * length / 4


def test_cola_walks_as_documented():
    """protocol=cola step by step on 4 layers, a chain right iff it skips layer 3 (every
    score 0), seed 10, budget 6. A node's moves are its `ActionSpace.chains`, in that fixed
    order; the draws are random.Random(10)'s in the order docs/protocols.md gives: at a node
    with untried moves and children `random() < 0.1` expands, as does a node with no child,
    the move `randrange(untried)`; else the walk steps to the child of highest UCB."""
    full = (0, 1, 2, 3)
    space = get_searcher("mcts", protocol="cola").settings.action_space(4)
    root = space.chains(full)
    a, b = root[18], root[15]
    assert len(root) == 30 and a == (0, 1, 1, 1, 1, 2, 3) and b == (0, 1, 2, 2, 2, 3)
    draws = random.Random(10)
    # 0: the full chain, wrong: the root has v = 1, Q = 0.
    # 1: the root has no child: expand its move randrange(30) = 18: a, wrong.
    assert draws.randrange(30) == 18
    # 2: the root has a child and untried moves; random() = 0.033 < 0.1: a random unexplored
    #    child, randrange(29) = 15 of the 29 left (index 15 is still root[15]): b, wrong.
    assert draws.random() < 0.1 and draws.randrange(29) == 15
    # 3: random() = 0.578: UCB over the root's children (V = 3, both Q = 0, v = 1): a -7.268,
    #    b -6.018 (a layer shorter) -> b. b has no child: expand its move randrange(26) = 6,
    #    which skips b's positions 3-4: the full chain, from the memo, not asked (free).
    assert draws.random() >= 0.1
    assert cola_ucb(0, 1, 3, 7) == pytest.approx(-7.268, abs=1e-3)
    assert cola_ucb(0, 1, 3, 6) == pytest.approx(-6.018, abs=1e-3)
    assert len(space.chains(b)) == 26 and draws.randrange(26) == 6 and space.chains(b)[6] == full
    # 4: root: random() = 0.463, UCB (V = 4): a -7.085 < b -6.323 (v = 2, Q = 0) -> b. b has
    #    a child (c: the full chain again) and untried moves: random() = 0.491 -> c, its only
    #    child. c has no child: expand its move randrange(30) = 8: (0,), right.
    assert draws.random() >= 0.1 and cola_ucb(0, 1, 4, 7) < cola_ucb(0, 2, 4, 6)
    assert draws.random() >= 0.1 and draws.randrange(30) == 8 and root[8] == (0,)
    # 5: root: random() = 0.654, UCB (V = 5): a -6.956 < b -6.131 (v = 3, Q = 1) -> b;
    #    random() = 0.160 -> c; random() = 0.521 -> (0,), which has no child: expand its
    #    move randrange(3) = 1 of [(0, 0), (0, 0, 0), (0, 0, 0, 0)]: (0, 0, 0), right.
    assert cola_ucb(0, 1, 5, 7) < cola_ucb(1, 3, 5, 6)
    assert min(draws.random() for _ in range(3)) >= 0.1 and draws.randrange(3) == 1
    assert space.chains((0,)) == [(0, 0), (0, 0, 0), (0, 0, 0, 0)]
    # 6: root: random() = 0.076 < 0.1: a random unexplored child, randrange(28) = 23 of the
    #    28 left (18 and 15 are gone, so it is root[25]): loop 1-2 twice more, wrong. The
    #    budget of 6 is spent.
    assert draws.random() < 0.1 and draws.randrange(28) == 23
    assert root[25] == (0, 1, 2, 1, 2, 1, 2, 3)
    fake = Fake(lambda c: 3 not in c, lambda c: 0.0)
    result = run_search(get_searcher("mcts", protocol="cola", budget=6), fake, 4, seed=10)
    assert fake.calls == [full, a, b, (0,), (0, 0, 0), root[25]]
    assert result.best_chain == (0,) and result.pareto == [(0,)] and result.evaluations == 6
    assert result.notes == {} and not result.stopped_early


def test_cola_deep_preset_loops_blocks_of_up_to_4():
    block = (2, 3, 4, 5)
    target = FULL[:6] + block + FULL[6:]  # loop 2-5 once more
    fake = Fake(lambda c: c == target, lambda c: -abs(len(c) - len(target)) / L
                + 0.1 * sum(c.count(x) for x in block))
    space = get_searcher("mcts", protocol="cola-deep").settings.action_space(L)
    assert space.loop_sizes == (1, 2, 3, 4) and space.loop_repeats == (1, 2, 3, 4)
    assert target in space.chains(FULL)
    assert target in get_searcher("mcts", protocol="cola").settings.action_space(L).chains(FULL)
    for seed in range(3):
        fake.calls.clear()
        result, ledger = run("mcts", fake, seed=seed, protocol="cola-deep")
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
