"""The lm-eval models behave as lm-eval does where a user reaches them (issue #22):
``--samples`` ids, a model object reused across evaluations, ``--seed``, ``--log_samples``
and the notes under lm-eval's table. On the tiny random model and the local ARC data."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.support import cli_helpers as cli
from tests.support.lm_eval_setup import install_cola

pytestmark = [
    pytest.mark.tiny,
    pytest.mark.skipif(not os.environ.get("COLA_DATA_DIR"),
                       reason="needs COLA_DATA_DIR (local benchmark data)"),
]


@pytest.fixture(scope="module", autouse=True)
def hooks_installed():
    install_cola()


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in open(path) if line.strip()]


def evaluate(model, **kwargs):
    import lm_eval

    kwargs.setdefault("tasks", ["arc_challenge"])
    return lm_eval.simple_evaluate(model=model, **kwargs)


def test_samples_records_carry_lm_evals_doc_ids_and_verify_them(tiny_llama_dir, tmp_path):
    """--samples {task: [0, 5]}: document 5's record says doc_id 5, equals the record a
    run over the first six documents makes for it, and verify reads the same document."""
    from lm_eval_cola.cli import main

    chosen, first_six = tmp_path / "chosen.jsonl", tmp_path / "six.jsonl"
    args = f"pretrained={tiny_llama_dir},device=cpu,budget=4"
    results = evaluate("cola_mcts", model_args=f"{args},records={chosen}",
                       samples={"arc_challenge": [0, 5]}, log_samples=True)
    evaluate("cola_mcts", model_args=f"{args},records={first_six}", limit=6)
    rows = {r["doc_id"]: r for r in read_jsonl(chosen)}
    assert sorted(rows) == [0, 5]
    six = {r["doc_id"]: r for r in read_jsonl(first_six)}
    for doc in (0, 5):
        timing = ("seconds",)
        assert ({k: v for k, v in rows[doc].items() if k not in timing}
                == {k: v for k, v in six[doc].items() if k not in timing})
    assert [s["doc_id"] for s in results["samples"]["arc_challenge"]] == [0, 5]
    assert main(["verify", str(chosen), "--model_args", "device=cpu"]) == 0


def test_a_reused_model_object_starts_each_evaluation_fresh(tiny_llama_dir, tmp_path):
    """simple_evaluate(model=ColaMCTS(...)) twice: the second call's summary and records
    are its own; and each call's search seed follows that call's lm-eval seed."""
    from lm_eval_cola.harness.models import ColaMCTS
    from lm_eval_cola.search.driver import sample_seed

    lm = ColaMCTS(pretrained=tiny_llama_dir, device="cpu", budget=4,
                  records=str(tmp_path / "records.jsonl"))
    first = evaluate(lm, tasks=["arc_challenge"], limit=2)
    second = evaluate(lm, tasks=["arc_easy"], limit=3, random_seed=7)
    one, two = first["config"]["cola_summary"], second["config"]["cola_summary"]
    assert (one["tasks"], one["samples"]) == (["arc_challenge"], 2)
    assert (two["tasks"], two["samples"]) == (["arc_easy"], 3)
    assert list(two["per_task"]) == ["arc_easy"]
    assert (first["config"]["cola_seed"], first["config"]["cola_seed_source"]) == (1234, "default")
    assert (second["config"]["cola_seed"], second["config"]["cola_seed_source"]) == (7, "--seed")
    rows = read_jsonl(tmp_path / "records.jsonl")
    assert [(r["task"], r["seed"]) for r in rows] == (
        [("arc_challenge", sample_seed(1234, "arc_challenge", d)) for d in range(2)]
        + [("arc_easy", sample_seed(7, "arc_easy", d)) for d in range(3)])


def test_seed_in_model_args_wins_over_lm_evals_seed(tiny_llama_dir, tmp_path):
    results = evaluate("cola_random", model_args=f"pretrained={tiny_llama_dir},device=cpu,"
                       f"budget=2,seed=5,records={tmp_path / 'r.jsonl'}", limit=1,
                       random_seed=7)
    assert (results["config"]["cola_seed"], results["config"]["cola_seed_source"]) == (5, "seed=")


def test_logged_samples_carry_their_chain(tiny_llama_dir, tmp_path):
    """--log_samples: each sample says which chain answered it, its length and whether the
    gold chose it: the searched best chain of its record, or the fixed chain."""
    records = tmp_path / "records.jsonl"
    searched = evaluate("cola_greedy", model_args=f"pretrained={tiny_llama_dir},device=cpu,"
                        f"budget=4,records={records}", limit=3, log_samples=True)
    best = {r["doc_id"]: (r["best_chain"], r["best_length"]) for r in read_jsonl(records)}
    logged = searched["samples"]["arc_challenge"]
    assert {s["doc_id"]: (s["cola_chain"], s["cola_chain_length"]) for s in logged} == best
    assert all(s["cola_oracle"] is True for s in logged)
    fixed = evaluate("cola_hf", model_args=f"pretrained={tiny_llama_dir},device=cpu,"
                     "chain=0-1+1+2-3", limit=2, log_samples=True)
    assert [(s["cola_chain"], s["cola_chain_length"], s["cola_oracle"])
            for s in fixed["samples"]["arc_challenge"]] == [("0-1+1-3", 5, False)] * 2


def test_lm_eval_command_samples_seed_log_samples_and_table_notes(tiny_llama_dir, tmp_path):
    """The issue's commands as a new user types them, in one real ``lm_eval`` run."""
    from lm_eval_cola.cli import main
    from lm_eval_cola.search.driver import sample_seed

    out = tmp_path / "out"
    done = cli.run_lm_eval([
        "--model", "cola_mcts", "--model_args", f"pretrained={tiny_llama_dir},budget=4",
        "--tasks", "arc_challenge", "--samples", '{"arc_challenge": [0, 5]}',
        "--seed", "1,2,3,4", "--log_samples", "--output_path", str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    records = cli.load_records(out)
    assert sorted(r["doc_id"] for r in records) == [0, 5]
    assert all(r["seed"] == sample_seed(1, "arc_challenge", r["doc_id"]) for r in records)
    config = cli.load_results(out)["config"]
    assert (config["cola_seed"], config["cola_seed_source"]) == (1, "--seed")
    logged = read_jsonl(next(out.rglob("samples_arc_challenge_*.jsonl")))
    assert ({s["doc_id"]: s["cola_chain"] for s in logged}
            == {r["doc_id"]: r["best_chain"] for r in records})
    # under lm-eval's table (stdout), one line for the task: the caveat and the findings
    lines = done.stdout.splitlines()
    table_end = max(i for i, line in enumerate(lines) if line.startswith("|"))
    notes = [line for line in lines if line.startswith("cola arc_challenge:")]
    assert len(notes) == 1 and lines.index(notes[0]) == table_end + 1, done.stdout[-3000:]
    summary = config["cola_summary"]
    assert "oracle upper bound, not a deployable score" in notes[0]
    assert re.search(rf"oracle right {summary['oracle_correct']}/2 vs full chain "
                     rf"{summary['full_chain_right']}/2", notes[0]), notes[0]
    assert main(["verify", *map(str, cli.record_files(out)), "--model_args", "device=cpu"]) == 0


def test_rank_zero_logs_every_ranks_chains(tiny_llama_dir, monkeypatch):
    """With data parallel ranks lm-eval logs every rank's samples on rank 0: the chains
    each rank chose are gathered there (lm-eval's gather_object, faked for two ranks)."""
    from lm_eval_cola.compat.lm_eval_private import set_data_parallel
    from lm_eval_cola.harness.evaluation_call import ChosenChain
    from lm_eval_cola.harness.models import ColaMCTS

    lm = ColaMCTS(pretrained=tiny_llama_dir, device="cpu", budget=2)
    set_data_parallel(lm, 0, 2)
    lm.call.chosen = {("arc_easy", 0): ChosenChain("0-3", 4, True)}
    other_rank = {("arc_easy", 1): ChosenChain("0-1", 2, True)}
    monkeypatch.setattr(lm, "gather_object", lambda obj, dst=0: [obj, other_rank])
    results = {"samples": {"arc_easy": [{"doc_id": 0}, {"doc_id": 1}]}}
    lm.finish_evaluation(results, log_samples=True)
    assert results["samples"]["arc_easy"] == [
        {"doc_id": 0, "cola_chain": "0-3", "cola_chain_length": 4, "cola_oracle": True},
        {"doc_id": 1, "cola_chain": "0-1", "cola_chain_length": 2, "cola_oracle": True}]
