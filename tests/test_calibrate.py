"""Calibrated static chains: the task-level search, the consensus of records, and the rule
that calibration never touches the evaluated split."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest

from lm_eval_cola.chains.syntax import full_chain
from lm_eval_cola.deploy.calibrate import consensus_chain, pick, score, search_chain
from lm_eval_cola.errors import UserError
from lm_eval_cola.search.searchers import get_searcher

pytestmark = pytest.mark.tiny

needs_data = pytest.mark.skipif(not os.environ.get("COLA_DATA_DIR"),
                                reason="needs COLA_DATA_DIR (local benchmark data)")


def fake_accuracy(chains):
    """Layers 3 and 5 of 8 are useless, 0 is vital, every other one costs 0.02 when gone."""
    out = []
    for chain in chains:
        if 0 not in chain:
            out.append(0.1)
            continue
        missing = {i for i in range(8) if i not in chain} - {3, 5}
        out.append(0.6 - 0.02 * len(missing))
    return out


@pytest.mark.quick  # no model
def test_greedy_calibration_drops_exactly_the_useless_layers():
    chain, seen = search_chain(fake_accuracy, 8, get_searcher("greedy", budget=100), seed=1,
                               length_penalty=0.05, tolerance=0.0)
    assert chain == (0, 1, 2, 4, 6, 7)
    assert seen[full_chain(8)] == pytest.approx(0.6) and seen[chain] == pytest.approx(0.6)


@pytest.mark.quick  # no model
def test_the_length_penalty_trades_accuracy_for_depth():
    seen = {full_chain(8): 0.6, (0, 1, 2, 4, 6, 7): 0.6, (0, 1, 2, 4, 6): 0.58,
            (0, 1, 2): 0.5}
    assert pick(seen, 8, 0.0) == (0, 1, 2, 4, 6, 7)  # most accurate, then shortest
    assert pick(seen, 8, 0.2) == (0, 1, 2, 4, 6)  # 0.58 - 0.125 > 0.6 - 0.15
    assert pick(seen, 8, 1.0) == (0, 1, 2)
    assert score(0.6, 6, 8, 0.2) == pytest.approx(0.45)


@pytest.mark.quick  # no model
def test_a_tolerance_lets_the_search_trade_some_calibration_accuracy():
    chain, _ = search_chain(fake_accuracy, 8, get_searcher("greedy", budget=200), seed=1,
                            length_penalty=0.5, tolerance=0.05)
    assert len(chain) == 4 and 0 in chain  # two more layers at 0.02 each, within 0.05


def record(chains, full_correct=True, **extra):
    fields = dict(num_layers=4, chains=[{"chain": c, "correct": ok} for c, ok in chains],
                  full_correct=full_correct, correct_chains=[], pareto=[], best_chain="0-3",
                  best_correct=full_correct)
    fields.update(extra)
    return SimpleNamespace(**fields)


@pytest.mark.quick  # no model
def test_consensus_is_the_chain_correct_on_most_samples():
    records = [record([("0-3", True), ("0-1+3", True), ("0+3", False)]),
               record([("0-3", False), ("0-1+3", True), ("0+3", True)], full_correct=False),
               record([("0-3", True), ("0-1+3", True)]),
               record([("0-3", True), ("0+3", True)])]
    chain, share, n = consensus_chain(records, 4, length_penalty=0.0)
    assert (chain, share, n) == ((0, 1, 3), 0.75, 4)  # full: 3 of 4, 0-1+3: 3 of 4, shorter
    chain, share, _ = consensus_chain(records, 4, length_penalty=1.0)
    assert chain == (0, 3) and share == 0.5  # 0.5 - 0.5 > 0.75 - 0.75
    # records that list only their correct chains (record_chains=best)
    old = record([], correct_chains=["0+2"], pareto=["0"], best_chain="0", best_correct=True)
    old.chains = []
    assert consensus_chain([old], 4, 0.0)[0] == (0,)
    with pytest.raises(UserError, match="8-layer"):
        consensus_chain([record([], num_layers=8)], 4, 0.0)


@needs_data
def test_calibration_refuses_the_evaluated_split_and_unknown_splits():
    from lm_eval_cola.deploy.calibrate import calibration_task

    with pytest.raises(UserError, match=r"^--split 'test' is the split 'arc_challenge' is "
                                        r"evaluated on.*allowed: train, validation\)$"):
        calibration_task("arc_challenge", "test")
    with pytest.raises(UserError, match="no such split"):
        calibration_task("arc_challenge", "dev")
    task = calibration_task("arc_challenge", "validation")
    first = json.loads(open(os.path.join(os.environ["COLA_DATA_DIR"], "ai2_arc", "ARC-Challenge",
                                         "validation.jsonl")).readline())
    assert task.eval_docs[0]["id"] == first["id"]


@needs_data
def test_consensus_refuses_records_of_the_evaluated_split(tmp_path):
    from lm_eval_cola.compat.lm_eval_private import hash_doc
    from lm_eval_cola.deploy.calibrate import load_task, read_calibration_records

    task = load_task("arc_challenge")
    test_doc = task.eval_docs[0]
    path = tmp_path / "records.jsonl"
    base = {"task": "arc_challenge", "doc_id": 0, "model": "m", "searcher": "mcts",
            "oracle": True, "settings": {}, "seed": 1, "num_layers": 4, "full_correct": True,
            "best_chain": "0-3", "best_length": 4, "best_correct": True, "best_score": 1.0,
            "evaluations": 1, "seconds": 0.1, "responses": []}
    path.write_text(json.dumps({**base, "doc_hash": "not-a-test-doc"}) + "\n")
    assert len(read_calibration_records([str(path)], task)) == 1
    path.write_text(json.dumps({**base, "doc_hash": hash_doc(test_doc)}) + "\n")
    with pytest.raises(UserError, match="evaluated on \\(test\\)"):
        read_calibration_records([str(path)], task)


@needs_data
def test_task_evaluator_accuracy_equals_lm_evals_path(tiny_llama_dir):
    from lm_eval_cola.deploy.calibrate import TaskEvaluator, calibration_task
    from lm_eval_cola.harness.models import ColaHFLM

    lm = ColaHFLM(pretrained=tiny_llama_dir, device="cpu")
    task = calibration_task("arc_challenge", "train")
    evaluator = TaskEvaluator(lm, task, limit=10)
    assert len(evaluator) == 10
    chains = [(0, 1, 2, 3), (0, 1, 1, 3), (2, 3)]
    fast = evaluator.accuracy(chains)
    slow = []
    for chain in chains:
        correct = 0
        for index in range(10):
            doc = task.eval_docs[index]
            requests = [i for i in task.instances if i.doc_id == index]
            responses = lm.runner.run("loglikelihood", requests, chain)
            correct += evaluator.judge.judge(doc, responses).correct
        slow.append(correct / 10)
    assert fast == slow
    assert len(set(fast)) > 1 or fast[0] not in (0.0, 1.0)  # the chains are told apart


@needs_data
def test_calibrate_command_writes_a_chain_file_cola_hf_runs(tiny_llama_dir, tmp_path, capsys):
    from lm_eval_cola.chains.files import ChainFile
    from lm_eval_cola.cli import main
    from lm_eval_cola.harness.models import ColaHFLM

    out = tmp_path / "calibrated.json"
    args = ["calibrate", "--tasks", "arc_challenge", "--model_args",
            f"pretrained={tiny_llama_dir}", "--limit", "8", "--budget", "6"]
    assert main([*args, "--split", "train", "--out", str(out)]) == 0
    found = ChainFile.read(out)
    assert found.method == "calibrate:greedy" and found.split == "train"
    assert found.samples == 8 and found.score["chains_evaluated"] <= 6
    lm = ColaHFLM(pretrained=tiny_llama_dir, device="cpu", chain=str(out))
    assert lm.chain == found.layers()
    assert main([*args, "--split", "test", "--out", str(tmp_path / "no.json")]) == 2
    assert "is the split 'arc_challenge' is evaluated on" in capsys.readouterr().err
    assert not (tmp_path / "no.json").exists()
    # A chain file of another depth is refused by cola_hf in one line.
    ChainFile.make((0, 1), 2).write(tmp_path / "two.json")
    with pytest.raises(UserError, match="made for a model of 2 layers; this model has 4"):
        ColaHFLM(pretrained=tiny_llama_dir, device="cpu", chain=str(tmp_path / "two.json"))


@needs_data
def test_task_evaluator_builds_lm_evals_seeded_few_shot_prompts(tiny_llama_dir):
    """A few-shot task's prompts are the ones lm_eval builds (its few-shot sampler seeded
    as simple_evaluate seeds it), the same on every build: unseeded, each task object would
    draw other examples."""
    from lm_eval_cola.deploy.calibrate import FEWSHOT_SEED, TaskEvaluator, calibration_task
    from lm_eval_cola.harness.models import ColaHFLM

    lm = ColaHFLM(pretrained=tiny_llama_dir, device="cpu", max_length=4096)  # 5-shot prompts
    built = []
    for _ in range(2):
        task = calibration_task("gsm8k", "train")
        TaskEvaluator(lm, task, limit=3)
        built.append(sorted((i.doc_id, i.args[0]) for i in task.instances))
    reference = calibration_task("gsm8k", "train")
    reference.set_fewshot_seed(seed=FEWSHOT_SEED)
    reference.build_all_requests(limit=3, rank=0, world_size=1)
    assert built[0] == built[1] == sorted((i.doc_id, i.args[0]) for i in reference.instances)
    assert built[0][0][1].count("Question:") > 1  # few-shot examples are in the prompt
