"""The chance control and the non-finite full chain end to end: lm-eval's ``piqa`` (two
choices) on a tiny random model, and the paper's ARC tasks' items with numbered labels, on
the local benchmark data."""

from __future__ import annotations

import json
import os

import pytest

from lm_eval_cola.search.decoy import ONLY_FULL, Decoy, draw_decoy
from tests.support.lm_eval_setup import install_cola

pytestmark = [
    pytest.mark.tiny,
    pytest.mark.skipif(not os.environ.get("COLA_DATA_DIR"),
                       reason="needs COLA_DATA_DIR (local benchmark data)"),
]
NAN = float("nan")


@pytest.fixture(scope="module", autouse=True)
def hooks_installed():
    install_cola()


def evaluate(model: str, model_args: str, task: str, limit: int) -> dict:
    import lm_eval

    return lm_eval.simple_evaluate(model=model, model_args=model_args, tasks=[task],
                                   limit=limit, log_samples=True)


def rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_piqa_wrong_samples_have_no_decoy_and_say_why(tiny_llama_dir, tmp_path):
    """Two choices: a wrong sample's only wrong answer is the full chain's own, so it has no
    decoy (nothing searched, the reason on record); a right sample's decoy is the other
    choice, and the full chain never counts as reaching it."""
    records = tmp_path / "piqa.jsonl"
    evaluate("cola_mcts", f"pretrained={tiny_llama_dir},device=cpu,budget=4,control=decoy,"
             f"record_chains=all,records={records}", "piqa", 4)
    found = rows(records)
    golds = [json.loads(line)["label"] for line in open(
        os.path.join(os.environ["COLA_DATA_DIR"], "piqa", "validation.jsonl"))][:4]
    assert len(found) == 4 and any(not r["full_correct"] for r in found)
    for row in found:
        decoy = row["decoy"]
        if not row["full_correct"]:
            assert decoy == {"target": None, "none": ONLY_FULL, "reached": False,
                             "evaluations": 0}
        else:
            assert decoy["target"] == 1 - golds[row["doc_id"]]
            assert not any(e["correct"] for e in decoy["chains"] if e["chain"] == "0-3")


@pytest.mark.parametrize("model", ["cola_hf", "cola_mcts"])
def test_a_non_finite_full_chain_is_judged_as_lm_eval_judges_it(tiny_llama_dir, tmp_path,
                                                                      monkeypatch, model):
    """Every full chain overflows (NaN log-likelihoods, injected): lm-eval's acc takes the
    argmax of NaNs, choice 0, so it counts the samples whose gold is 0 right. The records
    and the run's summary count the same, and the full chain is on record as not finite."""
    from lm_eval_cola.engine import runner

    plain = runner.evaluate_many

    def overflowing(model_, asks):
        answers = plain(model_, asks)
        return [[(NAN, False)] * len(a) if chain == tuple(range(4)) else a
                for a, (_, chain) in zip(answers, asks, strict=True)]

    monkeypatch.setattr(runner, "evaluate_many", overflowing)
    records = tmp_path / "nan.jsonl"
    extra = "searcher=none" if model == "cola_hf" else "budget=3"
    results = evaluate(model, f"pretrained={tiny_llama_dir},device=cpu,{extra},records={records}",
                       "piqa", 4)
    found = {r["doc_id"]: r for r in rows(records)}
    summary = results["config"]["cola_summary"]
    acc = results["results"]["piqa"]["acc,none"]
    assert summary["samples"] == 4
    assert summary["oracle_accuracy"] == pytest.approx(acc, abs=1e-12)
    for sample in results["samples"]["piqa"]:
        row = found[sample["doc_id"]]
        assert row["full_finite"] is False and row["nonfinite"] >= 1
        assert row["full_correct"] == (sample["target"] == 0)
        assert row["best_correct"] == bool(sample["acc"])
    if model == "cola_hf":  # the unedited answers, as lm-eval scored them
        assert acc == sum(s["target"] == 0 for s in results["samples"]["piqa"]) / 4 > 0


@pytest.mark.parametrize("task", ["cola_arc_easy", "cola_arc_challenge"])
def test_arc_items_with_numbered_labels_get_a_label_of_their_own(task):
    """The items labelled 1-4 among the 500: every decoy is one of the item's own labels,
    never its gold, and judged right only for an answer that gives that label."""
    from lm_eval.tasks import TaskManager

    from lm_eval_cola.compat.task_path import tasks_dir
    from lm_eval_cola.search.judge import TaskJudge

    loaded = TaskManager(include_defaults=False, include_path=str(tasks_dir())).load([task])
    judge = TaskJudge(loaded["tasks"][task], None, None)
    numbered = [(i, d) for i, d in enumerate(judge.eval_docs) if d["choices"]["label"][0] == "1"]
    assert numbered
    for doc_id, doc in numbered:
        labels, gold = list(doc["choices"]["label"]), doc["answerKey"]
        full = judge.judge(doc, ["I do not know"])  # the strict parse finds no label
        for seed in range(3):
            decoy = draw_decoy(judge, doc, doc_id, seed, full, ["I do not know"])
            assert isinstance(decoy, Decoy) and decoy.target in labels and decoy.target != gold
            assert judge.metric_value(decoy.doc, judge.filtered(doc, [decoy.target])) == 1.0
            assert judge.metric_value(doc, judge.filtered(doc, [decoy.target])) == 0.0
