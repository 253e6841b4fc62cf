"""The non-finite rule, answers as the metric reads them, and the chance control (decoy
draws, decoy judging, the decoy search beside the real one) on fake tasks: no model."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest

from lm_eval_cola.chains.syntax import format_chain
from lm_eval_cola.search.decoy import (
    ALL_GOLD,
    NO_OTHER,
    ONLY_FULL,
    NoDecoy,
    draw_choice,
    draw_decoy,
    draw_other_doc,
    judge_decoy,
)
from lm_eval_cola.search.judge import Judgement, TaskJudge
from tests.support.fake_tasks import NAN, FakeChoiceTask, FakeGenTask, pairs

pytestmark = pytest.mark.quick

INF = float("inf")


MC_DOC = {"choices": ["A", "BB", "CCCCCCCC", "DDD"], "gold": 0}


@pytest.mark.parametrize("lls", [(NAN, NAN, NAN, NAN), (-INF, -INF, -INF, -INF),
                                 (NAN, -1.0, -2.0, -3.0), (-1.0, -2.0, INF, -3.0)],
                         ids=["all-nan", "all-minus-inf", "one-nan", "one-inf"])
def test_a_non_finite_chain_is_wrong_even_when_argmax_lands_on_the_gold(lls):
    task = FakeChoiceTask()
    judge = TaskJudge(task, None, None)
    if all(math.isnan(v) for v in lls):
        # what lm-eval itself says: argmax of NaNs is 0, the gold
        assert task.process_results(MC_DOC, pairs(*lls))["acc"] == 1.0
    verdict = judge.judge(MC_DOC, pairs(*lls))
    assert verdict == Judgement(correct=False, score=-math.inf, finite=False, answer=None)


def test_answers_are_read_as_the_metric_reads_them():
    lls = pairs(-2.0, -2.5, -4.0, -9.0)  # raw: choice 0; per character: choice 2
    raw = TaskJudge(FakeChoiceTask("acc"), None, None).judge(MC_DOC, lls)
    norm = TaskJudge(FakeChoiceTask("acc_norm"), "acc_norm", None).judge(MC_DOC, lls)
    assert (raw.correct, raw.answer, raw.finite) == (True, 0, True)
    assert (norm.correct, norm.answer, norm.finite) == (False, 2, True)
    gen = TaskJudge(FakeGenTask(["4", "5"]), None, None)
    verdict = gen.judge({"answer": "4"}, [" 4"])
    assert verdict.correct and verdict.answer == " 4" and verdict.finite


def test_choice_decoys_are_never_gold_nor_the_full_chains_answer():
    for seed in range(200):
        golds = {seed % 4}
        full = (seed // 4) % 4
        decoy = draw_choice(4, golds, full, seed)
        assert decoy not in golds and decoy != full
        assert decoy == draw_choice(4, golds, full, seed)  # the seed decides
    # the only wrong choice is the full chain's answer: no decoy (it would be "reached"
    # before any search), and the reason says so; a two-choice task's wrong samples
    assert draw_choice(2, {0}, 1, 5) == NoDecoy(ONLY_FULL)
    assert draw_choice(2, {0}, 0, 5) == 1  # a right sample: the wrong choice is the decoy
    assert draw_choice(3, {0, 1, 2}, None, 5) == NoDecoy(ALL_GOLD)  # every choice gold
    assert NoDecoy(ONLY_FULL).describe() == {"target": None, "none": ONLY_FULL,
                                             "reached": False, "evaluations": 0}
    assert len({draw_choice(5, {0}, None, s) for s in range(100)}) == 4  # all wrong ones drawn


def test_choice_decoys_through_the_judge():
    judge = TaskJudge(FakeChoiceTask(), None, None)
    full = judge.judge(MC_DOC, pairs(-3.0, -1.0, -2.0, -4.0))  # wrong: says choice 1
    for seed in range(50):
        decoy = draw_decoy(judge, MC_DOC, 0, seed, full)
        assert decoy is not None and decoy.target not in (0, 1)
        assert decoy.describe() == {"target": decoy.target}
        hit = pairs(*[-1.0 if i == decoy.target else -5.0 for i in range(4)])
        gold = judge.judge(MC_DOC, hit)
        assert judge_decoy(judge, MC_DOC, hit, gold, decoy).correct
        assert not judge_decoy(judge, MC_DOC, pairs(-1.0, -5, -5, -5),
                               judge.judge(MC_DOC, pairs(-1.0, -5, -5, -5)), decoy).correct
        broken = pairs(NAN, NAN, NAN, NAN)
        assert not judge_decoy(judge, MC_DOC, broken, judge.judge(MC_DOC, broken), decoy).correct


def test_generation_decoys_are_another_docs_different_gold():
    answers = ["7", "7", "12", "7", "30", "7"]
    task = FakeGenTask(answers)
    judge = TaskJudge(task, None, None)
    full = judge.judge(task.eval_docs[0], ["7"])
    for seed in range(100):
        decoy = draw_decoy(judge, task.eval_docs[0], 0, seed, full)
        assert decoy is not None and decoy.target in ("12", "30")
        assert decoy.doc_id in (2, 4) and decoy.doc is task.eval_docs[decoy.doc_id]
        assert decoy.describe() == {"target": decoy.target, "target_doc_id": decoy.doc_id}
        again = draw_decoy(judge, task.eval_docs[0], 0, seed, full)
        assert again is not None and again.doc_id == decoy.doc_id
        said = [f" {decoy.target}"]
        assert judge_decoy(judge, task.eval_docs[0], said, judge.judge(task.eval_docs[0], said),
                           decoy).correct
        assert not judge_decoy(judge, task.eval_docs[0], ["7"], full, decoy).correct
    # every other doc shares the gold: no decoy (a scan after the random draws finds none)
    same = FakeGenTask(["1"] * 5)
    assert draw_decoy(TaskJudge(same, None, None), same.eval_docs[0], 0, 3,
                      full) == NoDecoy(NO_OTHER)
    # a rare other gold is found (by the scan where the random draws miss it)
    many = ["1"] * 5000 + ["2"]
    assert draw_other_doc(many, 0, "1", str, 11) == (5000, "2")


# --------------------------------------------------------------------------- the search


def fake_responses(chain, choices=4):
    """Deterministic log-likelihoods per chain; chains of 4 layers or fewer overflow to NaN."""
    if len(chain) <= 4:
        return pairs(*[NAN] * choices)
    rng = random.Random(str(chain))
    return pairs(*[-rng.uniform(0.0, 5.0) for _ in range(choices)])


def run_sample(control, record_chains="best", budget=12, seed=3):
    from lm_eval_cola.search.driver import RunFacts, Sample, SampleSearch
    from lm_eval_cola.search.scheduler import run_searches
    from lm_eval_cola.search.searchers import get_searcher

    judge = TaskJudge(FakeChoiceTask(), None, None)
    requests = [SimpleNamespace(doc=MC_DOC, args=("Q:", f" {c}")) for c in MC_DOC["choices"]]
    facts = RunFacts(model="fake", load_args={}, num_layers=6,
                     searcher=get_searcher("mcts", budget=budget, early_stop=False),
                     seed=seed, keep_correct=5, dtype="float32", control=control,
                     record_chains=record_chains)
    evaluated = []

    def evaluator(chain):
        evaluated.append(chain)
        return fake_responses(chain)

    search = SampleSearch(Sample("fake_mc", 0, requests), "loglikelihood", judge, facts,
                          evaluator)
    done = []
    run_searches([lambda: search], lambda asks: [ev(chain) for ev, chain in asks],
                 lambda i, s, seconds: done.append(s.record(seconds)), 1)
    return done[0], evaluated


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_decoy_search_shares_evaluations_and_changes_nothing_real(seed):
    plain, plain_calls = run_sample(None, seed=seed)
    with_decoy, calls = run_sample("decoy", "all", seed=seed)
    new = ("seconds", "chains", "decoy")
    assert ({k: v for k, v in plain.to_json().items() if k not in new}
            == {k: v for k, v in with_decoy.to_json().items() if k not in new})
    assert plain.decoy is None and plain.chains == []
    assert len(calls) == len(set(calls))  # a chain either search asks is computed once
    assert set(plain_calls) <= set(calls)
    decoy = with_decoy.decoy
    assert decoy is not None and decoy["target"] != MC_DOC["gold"]
    assert len(decoy["chains"]) == decoy["evaluations"] <= 12
    assert len(with_decoy.chains) == with_decoy.evaluations
    assert {e["chain"] for e in with_decoy.chains} | {e["chain"] for e in decoy["chains"]} \
        == {format_chain(c) for c in calls}
    assert decoy["reached"] == any(e["correct"] for e in decoy["chains"])
    right = {e["chain"]: e for e in with_decoy.chains if e["correct"]}
    assert set(with_decoy.pareto) <= set(right)  # the Pareto set is on record
    assert bool(with_decoy.pareto) == bool(right)
    if with_decoy.best_correct:
        assert with_decoy.pareto[0] == with_decoy.best_chain
    lengths = [right[c]["length"] for c in with_decoy.pareto]
    assert lengths == sorted(lengths)
    hits = [e["length"] for e in decoy["chains"] if e["correct"]]
    assert decoy["shortest"] == (min(hits) if hits else None)
    assert decoy["shortened"] == (with_decoy.full_correct and bool(hits)
                                  and min(hits) < with_decoy.num_layers)
    for entry in decoy["chains"]:
        assert entry["correct"] == (entry["finite"] and entry["answer"] == decoy["target"])
    for entry in with_decoy.chains:
        assert entry["correct"] == (entry["finite"] and entry["answer"] == MC_DOC["gold"])
        assert entry["finite"] == (entry["length"] > 4)
    assert with_decoy.nonfinite == sum(not e["finite"] for e in with_decoy.chains)
    assert with_decoy.evaluated_layers == sum(e["length"] for e in with_decoy.chains)
    if not with_decoy.full_correct:
        assert decoy["shortened"] is False


def test_decoy_shortened_follows_the_findings_rule():
    """Decoy shortened counts a decoy-answering chain shorter than the full chain, as
    "shorter when right" does; old records without ``shortest`` are read from their chains."""
    from lm_eval_cola.results.summary import decoy_shortened

    assert decoy_shortened({"shortest": 29, "shortened": False}, 30)
    assert not decoy_shortened({"shortest": 30}, 30)
    assert not decoy_shortened({"shortest": None}, 30)
    old = {"shortened": False, "chains": [{"correct": True, "length": 29},
                                          {"correct": False, "length": 12}]}
    assert decoy_shortened(old, 30)
    assert not decoy_shortened({**old, "chains": old["chains"][1:]}, 30)
    assert decoy_shortened({"shortened": True}, 30)


def test_a_generation_decoy_is_not_what_the_full_chain_already_says():
    """As for multiple choice: a short answer the full chain already gives (its wrong "12")
    is no decoy; with no other wrong gold, the sample has none, and says why."""
    task = FakeGenTask(["7", "7", "12", "7", "30", "7"])
    judge = TaskJudge(task, None, None)
    says = [" 12"]
    full = judge.judge(task.eval_docs[0], says)
    for seed in range(60):
        decoy = draw_decoy(judge, task.eval_docs[0], 0, seed, full, says)
        assert decoy is not None and decoy.target == "30"
        assert not judge_decoy(judge, task.eval_docs[0], says, full, decoy).correct
    without = {draw_decoy(judge, task.eval_docs[0], 0, s, full).target for s in range(60)}
    assert without == {"12", "30"}  # the old draw, with no answer to avoid
    only = FakeGenTask(["7", "12", "7"])
    judge = TaskJudge(only, None, None)
    decoy = draw_decoy(judge, only.eval_docs[0], 0, 1, judge.judge(only.eval_docs[0], says), says)
    assert decoy == NoDecoy(ONLY_FULL)
