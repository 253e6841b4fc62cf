"""The graded reward of generation tasks: the gold answer's teacher-forced log-likelihood
under a chain (``teacher_forced.py``) equals lm-eval's ``hf`` loglikelihood on a model
rebuilt with the chain's layers, on the fast path (prompt KV replayed, batched) and on
lm-eval's own; the text forced (``forced_text.py``); a right chain always outscores a
wrong one; the decoy's graded score forces the decoy's answer; reward=correct runs no
teacher-forced pass and keeps scores 0/1."""

from __future__ import annotations

import json
import math
import os
from types import SimpleNamespace

import pytest

from lm_eval_cola.engine.teacher_forced import FORCE_STATS, ForcedResponses
from lm_eval_cola.search.decoy import Decoy, judge_decoy
from lm_eval_cola.search.forced_text import EDGE, forced_continuation, likelihood_margin
from lm_eval_cola.search.judge import TaskJudge
from tests.support.lm_eval_setup import install_cola

pytestmark = pytest.mark.tiny

CHAINS = [(0, 1, 2, 3), (0, 1, 1, 2, 3), (0, 2, 3), (3, 2, 1, 0), (1, 3)]
CONTEXT = "Question: Which of these is a mammal? Answer:"
GOLD = " the whale is a mammal"
GREEDY = {"until": ["."], "max_gen_toks": 6, "do_sample": False}


def hf_mean_loglikelihood(lm, chain, context, text):
    """lm-eval's own ``hf`` model on a fresh model whose layers are the chain's: the
    independent reference, per token of the text."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from lm_eval_cola.compat.lm_eval_private import encode_pair
    from tests.support.reference_paths import materialized

    reference = HFLM(pretrained=materialized(lm.model, chain), tokenizer=lm.tokenizer,
                     device="cpu", batch_size=1)
    [(ll, _)] = reference.loglikelihood([Instance("loglikelihood", {}, (context, text), 0)],
                                        disable_tqdm=True)
    return ll / len(encode_pair(reference, context, text)[1])


@pytest.mark.parametrize("fast", [True, False])
def test_teacher_forced_value_equals_hf_loglikelihood_on_the_rebuilt_model(tiny_llama_dir,
                                                                          fast):
    from lm_eval.api.instance import Instance

    from lm_eval_cola.engine.runner import Evaluations, ForcedCall, SampleDecoder, evaluate_many
    from lm_eval_cola.harness.models import ColaHFLM

    lm = ColaHFLM(pretrained=tiny_llama_dir, device="cpu", searcher="mcts",
                  protocol="cola-deep", fast=fast)
    assert lm.runner.teacher_forcing  # cola-deep: reward=graded
    request = Instance("generate_until", {}, (CONTEXT, GREEDY), idx=0, metadata=("t", 0, 1))
    evaluator = lm.runner.evaluator("generate_until", [request], 1 << 26)
    assert isinstance(evaluator, SampleDecoder if fast else ForcedCall)
    FORCE_STATS.reset()
    first = evaluate_many(lm.model, [(evaluator, CHAINS[0])])[0]
    assert isinstance(first, ForcedResponses)
    assert first == lm.runner.run("generate_until", [request], CHAINS[0])  # answers as before
    values = {CHAINS[0]: first.mean_loglikelihood(GOLD)}  # asked: computed alone, registered
    answers = evaluate_many(lm.model, [(evaluator, chain) for chain in CHAINS[1:]])
    if fast:
        inputs, targets = evaluator.forcer._encoded(GOLD)
        rows = len(CHAINS)
        # one alone, the rest batched beside their decoding; the prompt never runs again
        # (its slots replayed, its last output scores the first token): the text less its
        # last token is all that is fed
        assert (FORCE_STATS.rows, FORCE_STATS.alone, FORCE_STATS.lm_eval_calls) == (rows, 1, 0)
        assert FORCE_STATS.fed_tokens == rows * (len(targets) - 1)
        assert FORCE_STATS.reused_tokens == rows * (len(inputs) - len(targets) + 1)
    for chain, answer in zip(CHAINS[1:], answers, strict=True):
        values[chain] = answer.mean_loglikelihood(GOLD)
    if not fast:
        assert FORCE_STATS.lm_eval_calls == len(CHAINS) and FORCE_STATS.rows == 0
    for chain, value in values.items():
        assert value == pytest.approx(hf_mean_loglikelihood(lm, chain, CONTEXT, GOLD),
                                      abs=1e-5)
    assert len({round(v, 4) for v in values.values()}) > 1  # the chain matters
    # A one-token answer (a label) is scored from what decoding stored: no layer runs.
    FORCE_STATS.reset()
    for chain, answer in zip(CHAINS, [first, *answers], strict=True):
        assert answer.mean_loglikelihood(" mammal") == pytest.approx(
            hf_mean_loglikelihood(lm, chain, CONTEXT, " mammal"), abs=1e-5)
    assert FORCE_STATS.fed_tokens == 0 and (FORCE_STATS.rows > 0) == fast
    # Through the stream (continuous batching), a fresh sample gets the same values.
    stream_evaluator = lm.runner.evaluator("generate_until", [request], 1 << 26)
    stream_evaluator_first = evaluate_many(lm.model, [(stream_evaluator, CHAINS[0])])[0]
    stream_evaluator_first.mean_loglikelihood(GOLD)
    stream = Evaluations(lm.model)
    stream.submit("s", [(stream_evaluator, chain) for chain in CHAINS[1:]])
    got = {}
    while not got:
        got.update(stream.step())
    for chain, answer in zip(CHAINS[1:], got["s"], strict=True):
        assert answer.mean_loglikelihood(GOLD) == pytest.approx(values[chain], abs=1e-5)


def test_no_teacher_forcing_where_the_reward_is_not_graded(tiny_llama_dir):
    from lm_eval.api.instance import Instance

    from lm_eval_cola.engine.runner import evaluate_many
    from lm_eval_cola.harness.models import ColaHFLM

    lm = ColaHFLM(pretrained=tiny_llama_dir, device="cpu", searcher="mcts",
                  protocol="cola-deep", reward="correct")
    assert not lm.runner.teacher_forcing
    request = Instance("generate_until", {}, (CONTEXT, GREEDY), idx=0, metadata=("t", 0, 1))
    evaluator = lm.runner.evaluator("generate_until", [request], 1 << 26)
    answers = evaluate_many(lm.model, [(evaluator, chain) for chain in CHAINS])
    assert not any(isinstance(a, ForcedResponses) for a in answers)


def test_margin_keeps_every_right_chain_above_every_wrong_one():
    means = [0.0, -1e-12, -0.1, -0.5, -1.0, -3.0, -6.0, -8.0, -50.0, -1e9, -math.inf,
             math.nan, None]
    margins = [likelihood_margin(m) for m in means]
    assert all(-0.5 < m < 0.5 for m in margins)
    assert max(0.0 + m for m in margins) < min(1.0 + m for m in margins)
    finite = margins[:10]
    assert all(a >= b for a, b in zip(finite, finite[1:], strict=False))
    usual = margins[1:9]  # a gradient wherever the edges do not clamp
    assert all(a > b for a, b in zip(usual, usual[1:], strict=False))
    assert finite[7] - finite[6] < -0.01  # still apart several nats a token from the answer
    assert likelihood_margin(-1.0) == pytest.approx(0.0, abs=1e-12)
    assert margins[-3] == margins[-2] == -0.5 + EDGE and margins[-1] == 0.0


class FakeTask:
    """A generation task as forced_text reads one (lm-eval's ConfigurableTask fields)."""

    OUTPUT_TYPE = "generate_until"

    def __init__(self, name="fake_gen", gen_prefix=None, delimiter=" ", choices=None):
        self.config = SimpleNamespace(task=name, metric_list=[{"metric": "exact_match"}],
                                      doc_to_choice=choices, target_delimiter=delimiter,
                                      gen_prefix=gen_prefix)
        self._filters: list = []
        self.eval_docs = [{"q": "two plus two", "answer": "4"}, {"q": "one", "answer": "1"}]

    def doc_to_text(self, doc):
        return f"Question: {doc['q']}\nAnswer:"

    def doc_to_target(self, doc):
        return doc["answer"]

    def doc_to_choice(self, doc):
        return doc["options"]

    def doc_to_prefix(self, doc):
        return self.config.gen_prefix

    def process_results(self, doc, results):
        return {"exact_match": float(str(results[0]).strip() == doc["answer"])}


def test_the_forced_text_is_the_answer_as_lm_eval_writes_it_after_the_prompt():
    doc = {"q": "two plus two", "answer": "4", "solution": "2+2 = \\boxed{4}",
           "options": ["three", "four"]}
    plain = "Question: two plus two\nAnswer:"
    chat = "<|user|>Question: two plus two\nAnswer:<|assistant|>\n"
    # no gen_prefix: the target delimiter in plain text, the answer alone in a chat turn
    assert forced_continuation(FakeTask(), doc, "Few.\n\n" + plain) == " 4"
    assert forced_continuation(FakeTask(), doc, chat) == "4"
    # after a gen_prefix: one space, unless the prefix or the answer brings whitespace
    assert forced_continuation(FakeTask(gen_prefix="Answer:", delimiter="\n"), doc,
                               plain + "\nAnswer:") == " 4"
    assert forced_continuation(FakeTask(gen_prefix="Answer: "), doc, plain) == "4"
    # the per-task override (cola_dart_*: the reference solution); a choice index's text
    assert forced_continuation(FakeTask("cola_dart_3", gen_prefix="Solution:"), doc,
                               plain) == " 2+2 = \\boxed{4}"
    indexed = {**doc, "answer": 1}
    assert forced_continuation(FakeTask(choices="options"), indexed, plain) == " four"
    # another doc's answer after this doc's prompt (the decoy)
    assert forced_continuation(FakeTask(), doc, plain, {"answer": "9"}) == " 9"


class FakeForcer:
    """Teacher-forced values by text; notes what the judge asks for."""

    def __init__(self, values):
        self.values, self.asked, self.context = values, [], "Question: two plus two\nAnswer:"

    def mean_loglikelihood(self, chain, text):
        self.asked.append((chain, text))
        return self.values[text]


def test_the_graded_score_forces_the_gold_and_the_decoy_its_own_answer():
    task = FakeTask()
    judge = TaskJudge(task, None, None)
    doc, other = task.eval_docs
    forcer = FakeForcer({" 4": -0.25, " 1": -4.0})
    chain = (0, 2)
    wrong = ForcedResponses([" 1"], forcer, chain)  # says the decoy's answer, not the gold
    gold = judge.judge(doc, wrong)
    assert not gold.correct
    assert gold.score == pytest.approx(likelihood_margin(-0.25))
    assert forcer.asked == [(chain, " 4")]
    decoy = Decoy(target="1", doc=other, doc_id=1)
    toward = judge_decoy(judge, doc, wrong, gold, decoy)
    assert toward.correct
    assert toward.score == pytest.approx(1.0 + likelihood_margin(-4.0))
    assert forcer.asked[-1] == (chain, " 1")
    # a right chain outscores the wrong one whatever their likelihoods
    right = judge.judge(doc, ForcedResponses([" 4"], FakeForcer({" 4": -40.0}), chain))
    assert right.correct and right.score > gold.score
    # plain responses (reward=correct, records read back): the metric alone
    assert judge.judge(doc, [" 1"]).score == 0.0
    assert judge_decoy(judge, doc, [" 1"], judge.judge(doc, [" 1"]), decoy).score == 1.0


@pytest.mark.skipif(not os.environ.get("COLA_DATA_DIR"),
                    reason="needs COLA_DATA_DIR (local benchmark data)")
def test_a_graded_generation_search_records_graded_scores(tiny_llama_dir, tmp_path):
    """gsm8k on the tiny model, deep MCTS with the decoy: every chain's recorded score is
    its metric plus a margin strictly inside (-1/2, 1/2), for the gold and the decoy;
    reward=correct runs no teacher-forced pass and records 0/1."""
    import lm_eval

    install_cola()

    rows = {}
    for reward in ("graded", "correct"):
        records = tmp_path / f"{reward}.jsonl"
        FORCE_STATS.reset()
        lm_eval.simple_evaluate(
            model="cola_mcts", tasks=["gsm8k"], limit=2, gen_kwargs="max_gen_toks=8",
            model_args=(f"pretrained={tiny_llama_dir},device=cpu,protocol=cola-deep,budget=6,"
                        f"reward={reward},control=decoy,record_chains=all,records={records}"))
        rows[reward] = [json.loads(line) for line in records.read_text().splitlines()]
        forced = FORCE_STATS.rows + FORCE_STATS.lm_eval_calls
        assert (forced > 0) == (reward == "graded")
    for reward, records in rows.items():
        assert len(records) == 2
        for row in records:
            entries = row["chains"] + (row["decoy"] or {}).get("chains", [])
            for entry in entries:
                part = entry["score"] - float(entry["correct"])
                if reward == "graded":
                    assert -0.5 < part < 0.5 and part != 0.0
                else:
                    assert part == 0.0
            best = next(e for e in row["chains"] if e["chain"] == row["best_chain"])
            assert row["best_score"] == best["score"]
