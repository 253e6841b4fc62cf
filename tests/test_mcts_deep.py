"""mcts's deep mode against fakes of a 30-layer model (see mcts.py and mcts_deep.py).

The planted fake: one chain, three edits from the full chain in the paper's action space
(k, r in 1..4), is the only right answer: block 10-12 looped twice more, layers 20-21
skipped, layers 25-28 skipped:

    0..12, 10, 11, 12, 10, 11, 12, 13..19, 22, 23, 24, 29

Its graded score rises smoothly with closeness, like a real model's margin: closeness is
the fraction of the planted chain's 12 single-layer changes (6 extra copies, 6 skipped
layers) that a chain has, i.e. 1 - its edit distance to the planted chain / 12, less 1/12
for each layer the planted chain needs that the chain has lost (no action brings a skipped
layer back); margin = 0.49 * tanh(2 * closeness - 1), score = correct + margin.

Measured with this file's code (seeds 0..39, budget 200, the same action space):

| searcher | planted chain found |
|---|---|
| mcts mode=deep (its defaults) | 40 / 40 |
| mcts protocol=cola-deep (lambda 5, random child 0.1) | 27 / 40 |
| mcts protocol=cola (the paper's walk: 0/1 reward, c = sqrt(2)) | 0 / 40 |
| mcts (uct) | 0 / 40 |
| random | 0 / 40 |
| greedy | 0 / 40 |
| deep with reward=correct / c=1.8 / pw_c=1 | 0 / 0 / 6 of 40 |
| deep without the root scan / the additive prediction | 1 / 1 of 40 |

The test runs seeds 0..23 for deep and 0..19 for random (random is the slow one).
On the right-when-needs-kept fake below, protocol=cola shortens the right full chain to 23-26
layers (seeds 0..9) where cola-deep reaches 8.
"""

import logging
import math
from types import SimpleNamespace

import pytest

from lm_eval_cola.search.searchers import Chain, Outcome, get_searcher, run_search
from tests.support.fake_tasks import FakeChoiceTask

pytestmark = pytest.mark.quick

L = 30
FULL = tuple(range(L))
SKIPPED = (20, 21, 25, 26, 27, 28)
PLANTED = FULL[:13] + (10, 11, 12) * 2 + tuple(x for x in range(13, L) if x not in SKIPPED)
NEEDED = set(PLANTED)
SPACE = {"actions": "skip+loop", "block_sizes": "1+2+3+4", "loop_repeats": "1+2+3+4"}


def edit_distance(a: Chain, b: Chain) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


D0 = edit_distance(FULL, PLANTED)  # 12


def planted(chain: Chain) -> Outcome:
    lost = len(NEEDED - set(chain))
    closeness = (D0 - edit_distance(chain, PLANTED) - lost) / D0
    right = chain == PLANTED
    return Outcome(right, float(right) + 0.49 * math.tanh(2 * closeness - 1))


def found(name: str, seeds: range, **settings) -> int:
    hits = 0
    for seed in seeds:
        result = run_search(get_searcher(name, **settings), planted, L, seed)
        assert result.evaluations <= 200
        hits += result.best_chain == PLANTED
    return hits


def test_the_planted_chain_is_three_edits_away():
    assert D0 == 12 and len(PLANTED) == L
    space = get_searcher("mcts", **SPACE).settings.action_space(L)
    step1 = {m.action.describe(FULL): m.chain for m in space.moves(FULL)}
    step2 = {m.action.describe(step1["loop 10-12 x2 more"]): m.chain
             for m in space.moves(step1["loop 10-12 x2 more"])}
    assert PLANTED in {m.chain for m in space.moves(step2["skip 20-21"])}
    assert PLANTED not in step1.values() and PLANTED not in step2.values()
    # the score rises with each planted edit
    scores = [planted(c).score for c in (FULL, step1["loop 10-12 x2 more"], step2["skip 20-21"])]
    assert scores == sorted(scores) and planted(PLANTED).correct


def test_deep_mcts_finds_the_planted_chain_where_random_does_not():
    deep = found("mcts", range(24), mode="deep", **SPACE)
    rand = found("random", range(20), **SPACE)
    assert deep >= 0.8 * 24, deep  # measured: 24 / 24
    assert rand <= 2, rand  # measured: 0 / 20
    assert deep / 24 - rand / 20 >= 0.6


def test_uct_mode_does_not_reach_the_planted_chain():
    # the old walk, same space and budget: the root's 570 children come first, and outnumber
    # the budget of 200
    assert found("mcts", range(4), **SPACE) == 0


NEEDS = {3, 8, 14, 19, 26}


def right_when_needs_kept(chain: Chain) -> Outcome:
    """The full chain is right; right iff layers 3, 8, 14, 19 and 26 are all kept. The
    margin falls a little with length (a shorter right chain is a little less sure)."""
    right = NEEDS <= set(chain)
    return Outcome(right, float(right) + 0.4 - 0.3 * (1 - len(chain) / L))


@pytest.mark.parametrize("settings", [{"protocol": "cola-deep"},
                                      {"mode": "deep", "early_stop": False, **SPACE}])
def test_deep_keeps_shortening_a_right_chain(settings):
    for seed in range(3):
        result = run_search(get_searcher("mcts", **settings), right_when_needs_kept, L, seed)
        assert result.full_correct and not result.stopped_early
        assert result.evaluations == 200
        assert len(result.best_chain) <= 10, result.best_chain  # measured: 8 (shortest: 5)
        pareto = result.pareto
        assert pareto[0] == result.best_chain and len(pareto) >= 5
        lengths = [len(c) for c in pareto]
        scores = [right_when_needs_kept(c).score for c in pareto]
        assert lengths == sorted(set(lengths)) and scores == sorted(set(scores))
    # the default (the paper's early stop) ends at the first right chain 2 layers shorter
    result = run_search(get_searcher("mcts"), right_when_needs_kept, L, 0)
    assert result.stopped_early and len(result.best_chain) == L - 2


def test_deep_mode_settings():
    s = get_searcher("mcts", mode="deep").settings
    assert (s.reward, s.c, s.random_prob, s.pw_c, s.pw_alpha) == ("graded", 0.0, 0.0, 3.0, 0.5)
    s = get_searcher("mcts", mode="deep", reward="correct", c=0.5, random_prob=0.2).settings
    assert (s.reward, s.c, s.random_prob) == ("correct", 0.5, 0.2)
    s = get_searcher("mcts").settings
    assert (s.mode, s.reward, s.c, s.random_prob) == ("uct", "correct", 1.8, 0.1)
    s = get_searcher("mcts", mode="cola").settings  # the paper's walk, c = UCB1's sqrt(2)
    assert (s.reward, s.random_prob) == ("correct", 0.1) and s.c == pytest.approx(2 ** 0.5)
    for bad in [{"mode": "wide"}, {"reward": "score"}, {"pw_c": 0}, {"pw_alpha": 1.5},
                {"mode": "deep", "descend_to_leaf": True}, {"exploration": "leaf"}]:
        with pytest.raises(ValueError, match="setting|descend_to_leaf"):
            get_searcher("mcts", **bad)


def test_graded_reward_shape():
    from lm_eval_cola.search.searchers.mcts_deep import graded_reward

    assert graded_reward(-0.5) == 0.0 and graded_reward(1.5) == 1.0
    assert graded_reward(0.5) == 0.5 and graded_reward(9.0) == 1.0 and graded_reward(-9.0) == 0.0
    assert graded_reward(float("nan")) == 0.0 and graded_reward(-math.inf) == 0.0
    assert graded_reward(0.9) > graded_reward(0.4)  # right beats wrong: right >= 0.5 >= wrong


# --- a budget below the root scan --------------------------------------------------------


def test_a_budget_below_the_root_scan_is_said_once_and_noted(caplog):
    # L = 30: the scan is the 30 one-layer skips and the 30 one-layer loops (once more); with
    # the full chain first it needs 61 evaluations
    searcher = get_searcher("mcts", protocol="cola-deep", budget=8)
    asked: list[Chain] = []

    def evaluate(chain: Chain) -> Outcome:
        asked.append(chain)
        return planted(chain)

    with caplog.at_level(logging.WARNING, logger="lm_eval_cola.search.searchers.mcts"):
        results = [run_search(searcher, evaluate, L, seed) for seed in range(3)]
    said = [r.getMessage() for r in caplog.records if "root scan" in r.getMessage()]
    assert len(said) == 1 and "\n" not in said[0], said  # one line, once a searcher
    assert "protocol=cola-deep" in said[0] and "budget 8" in said[0] and "60 single" in said[0]
    for result in results:
        assert result.notes == {"root_scan": 60, "root_scan_exceeds_budget": True}
        assert result.evaluations == 8
    # what those runs were: the full chain and 7 single-layer edits each, no tree search
    assert all(len(c) in (L - 1, L + 1) for c in asked if c != tuple(range(L)))
    for budget, short in ((60, True), (61, False)):
        with caplog.at_level(logging.WARNING, logger="lm_eval_cola.search.searchers.mcts"):
            caplog.clear()
            result = run_search(get_searcher("mcts", protocol="cola-deep", budget=budget),
                                planted, L, 0)
        assert result.notes == {"root_scan": 60, "root_scan_exceeds_budget": short}
        assert bool(caplog.records) == short
    # the paper's walk has no scan, so nothing to note
    assert run_search(get_searcher("mcts", protocol="cola", budget=8), planted, L, 0).notes == {}


def record_of(protocol: str):
    """The record of one 6-layer multiple-choice sample searched by mcts under `protocol`
    at budget 8 (a longer chain scores lower; the gold is the first choice)."""
    from lm_eval_cola.search.driver import RunFacts, Sample, SampleSearch
    from lm_eval_cola.search.judge import TaskJudge
    from lm_eval_cola.search.scheduler import run_searches

    doc = {"choices": ["A", "B", "C"], "gold": 0}
    requests = [SimpleNamespace(doc=doc, args=("Q:", f" {c}")) for c in doc["choices"]]
    facts = RunFacts(model="fake", load_args={}, num_layers=6,
                     searcher=get_searcher("mcts", protocol=protocol, budget=8), seed=3,
                     keep_correct=5, dtype="float32")
    search = SampleSearch(Sample("fake_mc", 0, requests), "loglikelihood",
                          TaskJudge(FakeChoiceTask(), None, None), facts,
                          lambda chain: [(-float(len(chain) + i), False) for i in range(3)])
    done = []
    run_searches([lambda: search], lambda asks: [ev(chain) for ev, chain in asks],
                 lambda i, s, seconds: done.append(s.record(seconds)), 1)
    return done[0]


def test_the_root_scan_note_reaches_the_record():
    from lm_eval_cola.results.records import Record

    deep = record_of("cola-deep")  # 6 layers: a scan of 12 single edits, budget 8
    assert deep.search_notes == {"root_scan": 12, "root_scan_exceeds_budget": True}
    assert record_of("cola").search_notes == {}
    # it survives a round trip, and a record written before it existed reads as noting nothing
    data = deep.to_json()
    assert Record.from_json(data).search_notes == deep.search_notes
    del data["search_notes"]
    assert Record.from_json(data).search_notes == {}
