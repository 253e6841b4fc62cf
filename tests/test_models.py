"""The lm-eval models end to end on a tiny random model and the local ARC / GSM8K data."""

from __future__ import annotations

import json
import os

import pytest

from tests.support.lm_eval_setup import install_cola

pytestmark = [pytest.mark.tiny, pytest.mark.skipif(
    not os.environ.get("COLA_DATA_DIR"), reason="needs COLA_DATA_DIR (local benchmark data)"
)]


@pytest.fixture(scope="module", autouse=True)
def hooks_installed():
    install_cola()


def evaluate(model, model_args, tasks=("arc_challenge",), limit=4, **kwargs):
    import lm_eval

    return lm_eval.simple_evaluate(model=model, model_args=model_args, tasks=list(tasks),
                                   limit=limit, log_samples=True, **kwargs)


def sample_lls(results, task="arc_challenge"):
    return [[r[0][0] for r in s["resps"]] for s in results["samples"][task]]


def test_identity_chain_reproduces_hf(tiny_llama_dir):
    plain = evaluate("hf", f"pretrained={tiny_llama_dir},device=cpu")
    cola = evaluate("cola_hf", f"pretrained={tiny_llama_dir},device=cpu,chain=identity")
    for key in ("acc,none", "acc_norm,none"):
        assert cola["results"]["arc_challenge"][key] == plain["results"]["arc_challenge"][key]
    for a, b in zip(sample_lls(cola), sample_lls(plain), strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    config = cola["config"]
    assert config["cola_chain"] == "0-3" and config["cola_num_layers"] == 4
    assert config["cola_depth_ratio"] == 1.0


def test_a_repeat_and_a_skip_change_the_scores(tiny_llama_dir):
    plain = sample_lls(evaluate("cola_hf", f"pretrained={tiny_llama_dir},device=cpu"))
    for chain in ("0-1+1+2-3", "skip:1-2"):
        changed = sample_lls(evaluate("cola_hf",
                                      f"pretrained={tiny_llama_dir},device=cpu,chain={chain}"))
        assert max(abs(a - b) for x, y in zip(changed, plain, strict=True)
                   for a, b in zip(x, y, strict=True)) > 1e-3


def read_jsonl(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def test_mcts_records_verify_and_a_forged_chain_fails(tiny_llama_dir, tmp_path):
    from lm_eval_cola.cli import main
    from lm_eval_cola.cli.verify import verify_records

    records = tmp_path / "records.jsonl"
    results = evaluate("cola_mcts",
                       f"pretrained={tiny_llama_dir},device=cpu,budget=6,records={records}",
                       limit=5)
    rows = read_jsonl(records)
    assert sorted(r["doc_id"] for r in rows) == list(range(5))
    assert all(1 <= r["evaluations"] <= 6 for r in rows)
    assert all(r["best_correct"] or not r["full_correct"] for r in rows)  # oracle >= full
    summary = results["config"]["cola_summary"]
    assert summary["samples"] == 5 and summary["oracle"] is True
    assert results["results"]["arc_challenge"]["acc,none"] == pytest.approx(
        sum(r["best_correct"] for r in rows) / 5)
    assert main(["verify", str(records), "--model_args", "device=cpu"]) == 0

    # Forge one record's chain until its recorded correctness no longer holds.
    forged = tmp_path / "forged.jsonl"
    for chain in ("0", "1", "2", "3", "3-0", "0-3*2", "1-2"):
        row = dict(rows[0], best_chain=chain)
        forged.write_text(json.dumps(row) + "\n")
        checks = verify_records([forged], {"device": "cpu"})
        if not all(c.ok for c in checks):
            break
    else:
        pytest.fail("no forged chain changed the answer")
    assert main(["verify", str(forged), "--model_args", "device=cpu"]) == 1


def test_samples_side_by_side_give_the_records_of_one_at_a_time(tiny_llama_dir, tmp_path,
                                                               monkeypatch):
    from lm_eval_cola.engine import fast

    sizes = []
    score_many = fast.score_many

    def counted(model, jobs):
        sizes.append(len(jobs))
        return score_many(model, jobs)

    monkeypatch.setattr("lm_eval_cola.engine.runner.score_many", counted)
    runs = {}
    for width in (1, 4):
        records = tmp_path / f"records_{width}.jsonl"
        args = (f"pretrained={tiny_llama_dir},device=cpu,budget=8,search_batch={width},"
                f"records={records}")
        results = evaluate("cola_mcts", args, limit=6)
        rows = {r["doc_id"]: {k: v for k, v in r.items() if k != "seconds"}
                for r in read_jsonl(records)}
        runs[width] = (rows, results["results"]["arc_challenge"],
                       results["config"]["cola_summary"]["mean_evaluations"])
        if width == 1:
            assert set(sizes) == {1}
            sizes.clear()
    assert max(sizes) > 1, "side by side, evaluations of several samples must share a batch"
    assert runs[1] == runs[4]
    assert len(runs[4][0]) == 6


def test_a_changed_doc_is_searched_again_and_its_new_record_supersedes(tiny_llama_dir, tmp_path,
                                                                      caplog):
    from lm_eval_cola.cli.verify import verify_records
    from lm_eval_cola.results.records import latest_per_sample, read_records

    records = tmp_path / "records.jsonl"
    args = f"pretrained={tiny_llama_dir},device=cpu,budget=4,records={records}"
    evaluate("cola_mcts", args, limit=2)
    first = read_jsonl(records)
    stale = dict(first[0], doc_hash="0" * 64, best_chain="0",
                 best_correct=not first[0]["best_correct"])
    records.write_text("\n".join(json.dumps(r) for r in (stale, first[1])) + "\n")

    with caplog.at_level("WARNING", logger="lm_eval_cola.search.driver"):
        evaluate("cola_mcts", args, limit=2)
    assert "doc 0 changed since its record was written" in caplog.text
    rows = read_jsonl(records)
    assert [r["doc_id"] for r in rows] == [0, 1, 0]  # doc 1 resumed, doc 0 searched again
    latest = latest_per_sample(read_records(records))
    assert [r.doc_id for r in latest] == [0, 1]
    assert latest[0].doc_hash == first[0]["doc_hash"]
    assert latest[0].best_chain == first[0]["best_chain"]  # same seed, same search
    assert all(c.ok for c in verify_records([records], {"device": "cpu"}))


def test_generation_search_runs_through_the_task_filters(tiny_llama_dir, tmp_path):
    records = tmp_path / "gsm8k.jsonl"
    results = evaluate(
        "cola_greedy", f"pretrained={tiny_llama_dir},device=cpu,budget=3,records={records}",
        tasks=("gsm8k",), limit=2, gen_kwargs="max_gen_toks=8",
    )
    rows = read_jsonl(records)
    assert len(rows) == 2 and all(r["request_type"] == "generate_until" for r in rows)
    assert all(r["oracle_filter"] == "strict-match" for r in rows)
    assert "exact_match,strict-match" in results["results"]["gsm8k"]


def test_fast_generation_search_equals_the_plain_path(tiny_llama_dir, tmp_path, monkeypatch):
    from lm_eval_cola.engine.fast_generate import SampleGenerator

    calls = []
    original = SampleGenerator.row  # one row per chain and decoding call, batched or not
    monkeypatch.setattr(SampleGenerator, "row",
                        lambda self, chain, *a: calls.append(chain) or original(self, chain, *a))
    rows = {}
    for fast in (False, True):
        records = tmp_path / f"gsm8k_{fast}.jsonl"
        evaluate("cola_mcts",
                 f"pretrained={tiny_llama_dir},device=cpu,budget=5,fast={fast},records={records}",
                 tasks=("gsm8k",), limit=3, gen_kwargs="max_gen_toks=12")
        rows[fast] = [{k: v for k, v in r.items() if k != "seconds"} for r in read_jsonl(records)]
    assert len(rows[True]) == 3
    assert rows[True] == rows[False]
    # The fast run really generated through the fast path, every evaluation of it.
    assert len(calls) == sum(r["evaluations"] for r in rows[True])


def test_a_device_map_split_model_scores_and_searches_as_the_plain_one(tiny_llama_dir, tmp_path):
    """parallelize=True loads through accelerate's device map; with a small memory cap some
    layers are offloaded (weights moved in by accelerate's hooks at each call). Chains and a
    search then give what the plainly loaded model gives."""
    from lm_eval_cola.harness.models import ColaHFLM

    offload = f"max_cpu_memory=150000,offload_folder={tmp_path / 'offload'}"
    split = ColaHFLM(pretrained=tiny_llama_dir, parallelize=True, max_cpu_memory=150000,
                     offload_folder=str(tmp_path / "offload"))
    placed = {k: v for k, v in split.model.hf_device_map.items() if ".layers." in k}
    assert set(placed.values()) == {"cpu", "disk"}, placed  # layers split by accelerate
    del split
    for chain in ("identity", "0-1+1+2-3"):
        plain = evaluate("cola_hf", f"pretrained={tiny_llama_dir},device=cpu,chain={chain}")
        split = evaluate("cola_hf", f"pretrained={tiny_llama_dir},parallelize=True,{offload},"
                                    f"chain={chain}")
        for a, b in zip(sample_lls(split), sample_lls(plain), strict=True):
            assert a == pytest.approx(b, abs=1e-5)
    rows = {}
    for name, args in (("plain", "device=cpu"), ("split", f"parallelize=True,{offload}")):
        records = tmp_path / f"{name}.jsonl"
        evaluate("cola_mcts", f"pretrained={tiny_llama_dir},{args},budget=5,records={records}")
        rows[name] = [{k: v for k, v in r.items() if k not in ("seconds", "load_args")}
                      for r in read_jsonl(records)]
    assert rows["split"] == rows["plain"]


@pytest.mark.parametrize(("task", "limit", "kwargs"), [
    ("arc_challenge", 4, {}),
    ("gsm8k", 2, {"gen_kwargs": "max_gen_toks=8"}),
])
def test_decoy_control_and_every_chain_on_record(tiny_llama_dir, tmp_path, task, limit, kwargs):
    """control=decoy,record_chains=all: every evaluated chain listed, a decoy that is never
    the gold searched beside each sample, and the metrics lm-eval scores unchanged."""
    runs = {}
    for name, extra in (("plain", ""), ("control", ",control=decoy,record_chains=all")):
        records = tmp_path / f"{name}.jsonl"
        results = evaluate("cola_mcts", f"pretrained={tiny_llama_dir},device=cpu,budget=6,"
                           f"records={records}{extra}", tasks=(task,), limit=limit, **kwargs)
        runs[name] = (results, read_jsonl(records))
    (plain, plain_rows), (control, rows) = runs["plain"], runs["control"]
    assert control["results"][task] == plain["results"][task]
    new = ("seconds", "chains", "decoy")
    assert ([{k: v for k, v in r.items() if k not in new} for r in rows]
            == [{k: v for k, v in r.items() if k not in new} for r in plain_rows])
    assert control["config"]["cola_control"] == "decoy"
    gold = {s["doc_id"]: s["target"] for s in control["samples"][task]}
    for row in rows:
        assert row["schema"] == 3 and len(row["chains"]) == row["evaluations"]
        assert row["chains"][0]["chain"] == "0-3"  # the full chain first, as evaluated
        assert row["evaluated_layers"] == sum(e["length"] for e in row["chains"])
        assert row["nonfinite"] == sum(not e["finite"] for e in row["chains"])
        full = row["chains"][0]
        assert full["correct"] == row["full_correct"]
        decoy = row["decoy"]
        assert decoy is not None and str(decoy["target"]) != str(gold[row["doc_id"]])
        assert 1 <= decoy["evaluations"] == len(decoy["chains"]) <= 6
        assert decoy["reached"] == any(e["correct"] for e in decoy["chains"])
        assert decoy["shortened"] <= (row["full_correct"] and decoy["reached"])
        if task == "arc_challenge":
            assert isinstance(decoy["target"], int)
            for entry in row["chains"]:
                assert entry["correct"] == (entry["finite"]
                                            and entry["answer"] == int(gold[row["doc_id"]]))
            for entry in decoy["chains"]:
                assert entry["correct"] == (entry["finite"] and entry["answer"] == decoy["target"])
        else:
            assert isinstance(full["answer"], str) and "target_doc_id" in decoy
            assert decoy["target_doc_id"] != row["doc_id"]
    summary = control["config"]["cola_summary"]
    assert summary["decoy_full_right"] + summary["decoy_full_wrong"] == limit
    assert summary["total_evaluated_layers"] == sum(r["evaluated_layers"] for r in rows)
    assert summary["per_task"][task]["samples"] == limit
