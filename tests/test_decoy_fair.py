"""A fair chance control on every task (issue #21): no decoy the full chain already gives
(two-choice tasks), label decoys from the item's own labels, no decoy the task's metric
counts as the gold (math), the decoy search under the gold search's early-stop rule, and
a non-finite full chain judged as lm-eval judges it. Fake tasks and evaluators: no model."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest

from lm_eval_cola.chains.syntax import full_chain
from lm_eval_cola.search.decoy import (
    ALL_GOLD,
    NO_OTHER,
    ONLY_FULL,
    Decoy,
    NoDecoy,
    draw_decoy,
    judge_decoy,
    satisfies,
)
from lm_eval_cola.search.judge import Judgement, TaskJudge
from lm_eval_cola.search.searchers import Outcome, get_searcher
from lm_eval_cola.tasks.arc import arc_doc_to_target, arc_process_results
from lm_eval_cola.tasks.dart import dart_doc_to_target, dart_process_results
from tests.support.fake_tasks import NAN, FakeChoiceTask, pairs

pytestmark = pytest.mark.quick

LAYERS = 6
FULL = full_chain(LAYERS)


class FakeLabelTask:
    """A generated-answer task with the item's own labels, judged as ``cola_arc_*`` is."""

    OUTPUT_TYPE = "generate_until"

    def __init__(self, docs: list[dict]):
        self.config = SimpleNamespace(task="fake_arc", metric_list=[{"metric": "exact_match"}],
                                      doc_to_choice=None)
        self._filters: list = []
        self.eval_docs = docs

    def doc_to_target(self, doc):
        return arc_doc_to_target(doc)

    def process_results(self, doc, results):
        return arc_process_results(doc, results)


class FakeDartTask(FakeLabelTask):
    """A generated-answer math task judged as ``cola_dart_*`` is (math-verify)."""

    def __init__(self, answers: list[str]):
        super().__init__([{"problem": f"p{i}", "solution": f"So \\boxed{{{a}}}."}
                          for i, a in enumerate(answers)])
        self.config.metric_list = [{"metric": "math_verify"}]

    def doc_to_target(self, doc):
        return dart_doc_to_target(doc)

    def process_results(self, doc, results):
        return dart_process_results(doc, results)


def arc_doc(labels: str, gold: str, i: int = 0) -> dict:
    return {"id": f"q{i}", "question": "Which?", "answerKey": gold,
            "choices": {"label": list(labels), "text": [f"t{label}" for label in labels]}}


# --------------------------------------------------------------------------- the draws


def test_a_two_choice_wrong_sample_has_no_decoy_a_right_one_has_the_other_choice():
    judge = TaskJudge(FakeChoiceTask(), None, None)
    doc = {"choices": ["yes", "no"], "gold": 0}
    wrong = judge.judge(doc, pairs(-3.0, -1.0), full=True)  # the full chain says "no"
    right = judge.judge(doc, pairs(-1.0, -3.0), full=True)
    for seed in range(20):
        assert draw_decoy(judge, doc, 0, seed, wrong) == NoDecoy(ONLY_FULL)
        assert draw_decoy(judge, doc, 0, seed, right) == Decoy(target=1)
    every = {"choices": ["yes", "yes!"], "gold": ["yes", "yes!"]}
    assert draw_decoy(judge, every, 0, 1, right) == NoDecoy(ALL_GOLD)


def test_a_label_task_draws_only_the_items_own_labels():
    """An item labelled 1-4 among items labelled A-E: its decoy is one of 1-4, never the
    gold nor what the full chain says, judged on a copy of the item with that label as its
    answer key. The old pool (other items' golds) gave letters it can never answer."""
    docs = [arc_doc("1234", "3")] + [arc_doc("ABCDE", g, i + 1) for i, g in enumerate("AEBDC")]
    judge = TaskJudge(FakeLabelTask(docs), None, None)
    for said, allowed in (([" 2"], {"1", "4"}), (["3"], {"1", "2", "4"})):
        full = judge.judge(docs[0], said)
        drawn = set()
        for seed in range(60):
            decoy = draw_decoy(judge, docs[0], 0, seed, full, said)
            assert isinstance(decoy, Decoy) and decoy.target in allowed
            assert decoy.doc == {**docs[0], "answerKey": decoy.target}
            assert decoy.describe() == {"target": decoy.target}  # no other doc
            assert not judge_decoy(judge, docs[0], said, full, decoy).correct
            hit = [f" {decoy.target}"]
            assert judge_decoy(judge, docs[0], hit, judge.judge(docs[0], hit), decoy).correct
            drawn.add(decoy.target)
        assert drawn == allowed  # every allowed label is drawn
    two = [arc_doc("12", "1")] + docs[1:]
    judge = TaskJudge(FakeLabelTask(two), None, None)
    full = judge.judge(two[0], ["2"])
    assert draw_decoy(judge, two[0], 0, 5, full, ["2"]) == NoDecoy(ONLY_FULL)


class FakeTextAnswerTask(FakeLabelTask):
    """Items list labels, but the gold is the answer's text (not a label)."""

    def doc_to_target(self, doc):
        return doc["choices"]["text"][doc["choices"]["label"].index(doc["answerKey"])]

    def process_results(self, doc, results):
        return {"exact_match": float(results[0].strip() == self.doc_to_target(doc))}


def test_items_whose_gold_is_no_label_draw_from_other_docs_golds():
    """Labels are the answer space only where the gold is one of them; otherwise the decoy
    is another doc's gold (answer text), as for any generation task."""
    docs = [arc_doc("ABCD", "B", i) for i in range(4)]
    for i, doc in enumerate(docs):
        doc["choices"]["text"] = [f"answer {i}{label}" for label in "ABCD"]
    judge = TaskJudge(FakeTextAnswerTask(docs), None, None)
    for doc_id, doc in enumerate(docs):
        full = judge.judge(doc, ["something else"])
        decoy = draw_decoy(judge, doc, doc_id, 3, full, ["something else"])
        assert isinstance(decoy, Decoy), decoy
        assert decoy.target.startswith("answer ") and decoy.doc_id != doc_id


def test_a_math_decoy_equivalent_to_the_gold_is_rejected():
    """\\frac{1}{2} and 0.5 are different strings and the same answer under math-verify:
    never each other's decoy. With no other answer, no decoy."""
    task = FakeDartTask(["\\frac{1}{2}", "0.5", "3", "\\dfrac{1}{2}"])
    judge = TaskJudge(task, None, None)
    docs = task.eval_docs
    assert satisfies(judge, docs[0], "0.5") and not satisfies(judge, docs[0], "3")
    said = ["no box"]
    full = judge.judge(docs[0], said)
    for seed in range(30):
        decoy = draw_decoy(judge, docs[0], 0, seed, full, said)
        assert isinstance(decoy, Decoy) and (decoy.doc_id, decoy.target) == (2, "3")
    # the full chain says 3: the only other answer is its own
    says_three = ["so \\boxed{3}"]
    assert draw_decoy(judge, docs[0], 0, 1, judge.judge(docs[0], says_three),
                      says_three) == NoDecoy(ONLY_FULL)
    same = FakeDartTask(["\\frac{1}{2}", "0.5"])
    judge = TaskJudge(same, None, None)
    assert draw_decoy(judge, same.eval_docs[0], 0, 1, full, said) == NoDecoy(NO_OTHER)


# --------------------------------------------------------------------------- the searches


def run_sample(doc: dict, respond, control: str | None = "decoy", searcher: str = "mcts",
               budget: int = 8, **settings):
    from lm_eval_cola.search.driver import RunFacts, Sample, SampleSearch
    from lm_eval_cola.search.scheduler import run_searches

    judge = TaskJudge(FakeChoiceTask(), None, None)
    requests = [SimpleNamespace(doc=doc, args=("Q:", f" {c}")) for c in doc["choices"]]
    facts = RunFacts(model="fake", load_args={}, num_layers=LAYERS,
                     searcher=get_searcher(searcher, budget=budget, **settings), seed=3,
                     keep_correct=5, dtype="float32", control=control, record_chains="all")
    calls: list = []

    def evaluator(chain):
        calls.append(chain)
        return respond(chain)

    search = SampleSearch(Sample("fake_mc", 0, requests), "loglikelihood", judge, facts,
                          evaluator)
    done: list = []
    run_searches([lambda: search], lambda asks: [ev(chain) for ev, chain in asks],
                 lambda i, s, seconds: done.append(s.record(seconds)), 1)
    return done[0], calls


def choosing(pick):
    """Responses whose argmax is ``pick(chain)`` among as many choices as ``pick`` says."""
    def respond(chain):
        answer, count = pick(chain)
        noise = random.Random(str(chain)).uniform(0.0, 0.1)
        return pairs(*[-1.0 - noise if i == answer else -4.0 for i in range(count)])
    return respond


def test_the_wrong_two_choice_sample_searches_no_decoy_and_says_why():
    doc = {"choices": ["yes", "no"], "gold": 0}
    wrong = choosing(lambda chain: (1 if chain == FULL or len(chain) > 5 else 0, 2))
    record, calls = run_sample(doc, wrong)
    plain, plain_calls = run_sample(doc, wrong, control=None)
    assert not record.full_correct
    assert record.decoy == {"target": None, "none": ONLY_FULL, "reached": False,
                            "evaluations": 0}
    assert plain.decoy is None and calls == plain_calls  # nothing searched toward a decoy
    right = choosing(lambda chain: (0 if chain == FULL or len(chain) > 5 else 1, 2))
    record, _ = run_sample(doc, right)
    assert record.full_correct and record.decoy["target"] == 1
    assert all(e["chain"] != "0-5" or not e["correct"] for e in record.decoy["chains"])


@pytest.mark.parametrize("searcher", ["mcts", "random"])
def test_the_decoy_search_stops_under_the_golds_rule(searcher):
    """A right sample: the gold search stops only at a correct chain min_shorter (2) shorter
    than the full one, so the decoy search must too; its hits are all 5 or more layers
    long (1 shorter at most), so it runs its whole budget. A wrong sample: both stop at
    their first hit."""
    doc = {"choices": ["yes", "no", "maybe"], "gold": 0}
    # right: the full chain says 0 (gold); chains over 4 layers say 1, the decoy
    right = choosing(lambda chain: (0 if chain == FULL or len(chain) <= 4 else 1, 2))
    record, _ = run_sample({**doc, "choices": doc["choices"][:2]}, right, searcher=searcher)
    decoy = record.decoy
    assert record.full_correct and decoy["target"] == 1 and decoy["reached"]
    assert decoy["evaluations"] == 8 == len(decoy["chains"])  # no early stop
    assert sum(e["correct"] for e in decoy["chains"]) > 1
    assert min(e["length"] for e in decoy["chains"] if e["correct"]) == decoy["shortest"] >= 5
    # wrong: the full chain says 1; the decoy is 2, which every other chain says
    wrong = choosing(lambda chain: (1 if chain == FULL else 2, 3))
    record, _ = run_sample(doc, wrong, searcher=searcher)
    decoy = record.decoy
    assert not record.full_correct and decoy["target"] == 2
    assert [e["correct"] for e in decoy["chains"]] == [False, True]  # its first hit


@pytest.mark.parametrize("searcher", ["mcts", "random"])
def test_a_searchers_stop_rule_comes_from_the_ledger_where_set(searcher):
    """Outcomes where the full chain is wrong and every 5-layer chain is right: the full
    chain's own rule stops at the first hit; told the sample is right, the search runs on
    (5 is not 2 shorter than 6), and stops at a 4-layer hit once those count."""
    def run(stop_as_right, hit_lengths):
        ledger, search = get_searcher(searcher, budget=10).start(LAYERS, 5, 5, stop_as_right)
        told = None
        try:
            while True:
                chains = search.send(told)
                told = [Outcome(correct=c != FULL and len(c) in hit_lengths, score=0.0)
                        for c in chains]
        except StopIteration as stop:
            return stop.value, list(ledger.seen)

    alone, seen = run(None, {5})
    assert alone.stopped_early and len(seen[-1]) == 5 and alone.evaluations < 10
    assert run(False, {5})[1] == seen  # False: the rule of a wrong sample, as alone
    held, _ = run(True, {5})
    assert not held.stopped_early and held.evaluations == 10 and len(held.best_chain) == 5
    stopped, seen = run(True, {4, 5})
    assert stopped.stopped_early and len(seen[-1]) == 4


# --------------------------------------------------------------------------- non-finite


def test_the_full_chains_verdict_is_lm_evals_even_when_not_finite():
    task = FakeChoiceTask()
    judge = TaskJudge(task, None, None)
    doc = {"choices": ["A", "BB", "C"], "gold": 0}
    broken = pairs(NAN, NAN, NAN)
    assert task.process_results(doc, broken)["acc"] == 1.0  # argmax of NaNs: choice 0
    assert judge.judge(doc, broken, full=True) == Judgement(correct=True, score=1.0,
                                                            finite=False, answer=0)
    assert judge.judge(doc, broken) == Judgement(correct=False, score=-math.inf,
                                                 finite=False, answer=None)
    other = {**doc, "gold": 1}
    assert task.process_results(other, broken)["acc"] == 0.0
    assert judge.judge(other, broken, full=True) == Judgement(
        correct=False, score=-math.inf, finite=False, answer=0)
    one_nan = pairs(-1.0, NAN, -0.5)  # numpy: the NaN is the maximum
    assert judge.judge(other, one_nan, full=True).correct
    assert judge.judge(other, one_nan, full=True).answer == 1


def test_a_non_finite_full_chains_record_agrees_with_lm_eval():
    """The full chain overflows (NaN: lm-eval's acc picks choice 0, the gold); the chains
    of 4 layers or fewer overflow too and stay wrong; the others answer choice 2. The
    record says right, as lm-eval does, and the decoy is not 0, nor reached by the full
    chain."""
    doc = {"choices": ["A", "BB", "C", "DD"], "gold": 0}

    def respond(chain):
        if chain == FULL or len(chain) <= 4:
            return pairs(NAN, NAN, NAN, NAN)
        return pairs(-3.0, -2.0, -1.0, -4.0)

    record, _ = run_sample(doc, respond, budget=10, early_stop=False)
    lm_eval_says = FakeChoiceTask().process_results(doc, pairs(NAN, NAN, NAN, NAN))["acc"]
    assert record.full_correct is True and lm_eval_says == 1.0
    assert record.full_finite is False
    assert record.best_chain == "0-5" and record.best_correct  # no shorter chain is right
    assert all(not e["correct"] for e in record.chains if e["chain"] != "0-5")
    assert record.nonfinite == sum(not e["finite"] for e in record.chains) >= 2
    assert record.decoy["target"] in (1, 2, 3)  # never 0, the full chain's answer
    assert record.decoy["chains"][0] == {**record.decoy["chains"][0], "chain": "0-5",
                                         "correct": False, "finite": False}
