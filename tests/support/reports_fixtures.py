"""Fixture runs for the reports tests, written without any model: lm-eval results files shaped
like those ``lm-eval-cola compare`` writes (one folder a variant) and the cola records behind
them, built from ``Record`` objects. Deterministic: every value comes from a seeded RNG.

``legacy=True`` writes what older lm-eval-cola versions wrote: no ``cola_oracle`` and no
``cola_model`` in the config, summaries without exact sums, schema-1 records. Otherwise the
records are schema 3 (cost in evaluated layers; ``decoy=True``: a decoy control's outcome
too; with ``no_decoy=True`` as well, every third sample has no decoy, as a run writes
it). ``seed`` other than ``SEED`` gives the searchers other (seeded) outcomes, as another
seed would.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

from lm_eval_cola.results.records import Record
from lm_eval_cola.results.summary import Summary

TASKS = ["arc_challenge", "gsm8k"]
MAIN_METRIC = {"arc_challenge": "acc,none", "gsm8k": "exact_match,strict-match"}
OTHER_METRIC = {"arc_challenge": "acc_norm,none", "gsm8k": "exact_match,flexible-extract"}
VARIANTS = ["none", "random", "greedy", "mcts", "chain:0+2-3"]
LM_EVAL_MODEL = {"none": "cola_hf", "random": "cola_random", "greedy": "cola_greedy",
                 "mcts": "cola_mcts", "chain:0+2-3": "cola_hf", "hf": "hf"}
SEARCHERS = ("none", "random", "greedy", "mcts")
PRETRAINED = "/models/tiny-llama"
NUM_LAYERS = 4
LIMIT, BUDGET, SEED = 3, 4, 1234
# Chains a fake search may find: (text, length). Shorter ones first.
SHORTER = [("0+2-3", 3), ("1-3", 3), ("0-1+3", 3), ("0+3", 2)]
LONGER = [("0-3+3", 5), ("0-2+2-3", 5), ("3-0", 4)]
# 1/1/2024 + a minute a variant: lm-eval's "date" orders files of one row, newest winning.
DATE = 1_704_067_200.0


def folder_name(variant: str) -> str:
    return variant.replace(":", "_").replace("+", "p")


def make_records(variant: str, tasks: list[str], limit: int, legacy: bool = False,
                 oracle: bool | None = None, seed: int = SEED, decoy: bool = False,
                 judged: dict[str, tuple[str | None, str | None]] | None = None,
                 no_decoy: bool = False) -> list[Record]:
    """One record a sample, as the run would have written them. ``judged``: task ->
    (oracle_metric, oracle_filter) the records say they were judged by."""
    searcher = variant
    oracle = searcher != "none" if oracle is None else oracle
    records = []
    for task in tasks:
        for doc_id in range(limit):
            # the full chain's answer does not depend on the seed; the search's does
            full = random.Random(f"{variant}/{task}/{doc_id}").random() < 0.45
            rng = random.Random(f"{variant}/{task}/{doc_id}" + (f"/{seed}" if seed != SEED
                                                                  else ""))
            rng.random()
            chain, length, correct, evaluations = "0-3", NUM_LAYERS, full, 1
            if searcher != "none":
                evaluations = rng.randint(2, BUDGET)
                if full and rng.random() < 0.6:
                    chain, length = rng.choice(SHORTER)
                elif not full and rng.random() < 0.5:
                    (chain, length), correct = rng.choice(SHORTER + LONGER), True
            records.append(Record(
                task=task, doc_id=doc_id, doc_hash=f"h{task}{doc_id}",
                model="" if legacy else PRETRAINED, searcher=searcher, oracle=oracle,
                settings={"budget": BUDGET if searcher != "none" else 1}, seed=rng.randint(0, 9999),
                num_layers=NUM_LAYERS, full_correct=full, best_chain=chain, best_length=length,
                best_correct=correct, best_score=round(rng.random(), 4), evaluations=evaluations,
                seconds=round(rng.uniform(0.01, 0.2), 4), responses=[[-1.0, False]],
                request_type="loglikelihood", requests=[["q", " a"]],
                correct_chains=["0-3"] if full and chain != "0-3" else [],
                oracle_metric=(judged or {}).get(task, (None, None))[0],
                oracle_filter=(judged or {}).get(task, (None, None))[1],
            ))
            if not legacy:
                records[-1].evaluated_layers = NUM_LAYERS + (evaluations - 1) * 3
                records[-1].nonfinite = 0
            if decoy and searcher != "none" and no_decoy and doc_id % 3 == 2:
                records[-1].decoy = {"target": None, "none": "every choice is a gold answer"}
            elif decoy and searcher != "none":
                records[-1].decoy = {"target": 0, "reached": not full and rng.random() < 0.3,
                                     "shortened": full and rng.random() < 0.2,
                                     "evaluations": evaluations}
                if records[-1].decoy["shortened"] and doc_id % 2 == 0:
                    # the shortest chain answering the decoy; odd docs keep no length,
                    # as records written before ``shortest`` was added
                    records[-1].decoy["shortest"] = 1 + doc_id % (NUM_LAYERS - 1)
    return records


def record_line(record: Record, legacy: bool) -> str:
    data = record.to_json()
    if legacy:  # schema 1: no schema, oracle, model or best_score field
        for key in ("schema", "oracle", "model", "best_score"):
            data.pop(key)
    return json.dumps(data)


def legacy_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """A cola_summary as written before summaries carried exact sums."""
    drop = ("oracle", "num_layers", "total_best_length", "total_evaluations", "oracle_correct")
    return {k: v for k, v in summary.items() if k not in drop}


def task_results(task: str, values: list[bool], rng: random.Random) -> dict[str, Any]:
    n = len(values)
    value = sum(values) / n
    stderr = math.sqrt(value * (1 - value) / (n - 1)) if n > 1 else 0.0
    main = MAIN_METRIC.get(task, "acc,none")
    second = OTHER_METRIC.get(task, "acc_norm,none")
    name, _, filt = main.partition(",")
    other, _, other_filt = second.partition(",")
    return {"alias": task, "sample_len": n, main: value, f"{name}_stderr,{filt}": stderr,
            second: rng.random(), f"{other}_stderr,{other_filt}": 0.1}


def write_run(folder: Path, variant: str, tasks: list[str] | None = None, limit: int = LIMIT,
              legacy: bool = False, number: int = 0, oracle: bool | None = None,
              extra_config: dict[str, Any] | None = None, seed: int = SEED,
              decoy: bool = False, judged: dict[str, tuple[str | None, str | None]] | None = None,
              model_args: str = "", no_decoy: bool = False) -> Path:
    """One variant's results file (and records, for searchers) in ``folder``; returns the
    results file. ``variant``: a searcher, ``chain:<text>`` or ``hf``; ``model_args``: more
    of them (``k=v,...``); for the rest see ``make_records``."""
    tasks = list(tasks or TASKS)
    rng = random.Random(f"results/{variant}/{number}")
    folder.mkdir(parents=True, exist_ok=True)
    model_args = ",".join(p for p in (f"pretrained={PRETRAINED},device=cpu", model_args) if p)
    config: dict[str, Any] = {"model": LM_EVAL_MODEL.get(variant, "cola_hf"), "limit": limit,
                              "model_args": model_args, "batch_size": 1, "random_seed": 0}
    values: dict[str, list[bool]] = {}
    if variant in SEARCHERS or variant not in LM_EVAL_MODEL:
        records = make_records(variant, tasks, limit, legacy, oracle, seed, decoy, judged,
                               no_decoy)
        path = folder / f"cola-records_{variant}_{number:04d}.jsonl"
        path.write_text("".join(record_line(r, legacy) + "\n" for r in records))
        summary = Summary.from_records(records).as_dict()
        budget = BUDGET if variant != "none" else 1
        config["model_args"] = model_args + f",seed={seed}" + (
            f",budget={BUDGET}" if variant != "none" else ",searcher=none")
        config.update({
            "cola_num_layers": NUM_LAYERS, "cola_chain": "0-3", "cola_depth_ratio": 1.0,
            "cola_searcher": variant, "cola_settings": {"budget": budget}, "cola_seed": seed,
            "cola_records": str(path),
            "cola_summary": legacy_summary(summary) if legacy else summary,
        })
        if not legacy:
            config["cola_oracle"] = variant != "none" if oracle is None else oracle
        for task in tasks:
            values[task] = [r.best_correct for r in records if r.task == task]
        if decoy:
            config["cola_control"] = "decoy"
    else:
        if variant.startswith("chain:"):
            chain = variant.partition(":")[2]
            config["model_args"] = model_args + f",chain={chain}"
            config.update({"cola_num_layers": NUM_LAYERS, "cola_chain": chain,
                           "cola_depth_ratio": 0.75})
        for task in tasks:
            values[task] = [rng.random() < 0.4 for _ in range(limit)]
    if not legacy and config["model"] != "hf":
        config["cola_model"] = PRETRAINED
    config.update(extra_config or {})
    data = {
        "results": {t: task_results(t, values[t], rng) for t in tasks},
        "group_subtasks": {t: [] for t in tasks},
        "n-samples": {t: {"original": 1000, "effective": limit} for t in tasks},
        "config": config,
        "model_name": PRETRAINED,
        "date": DATE + 60 * number,
        "total_evaluation_time_seconds": str(round(rng.uniform(1, 300), 6)),
    }
    path = folder / f"results_{number:04d}.json"
    path.write_text(json.dumps(data, indent=1))
    return path


def make_runs(root: Path, legacy: bool = False) -> dict[str, Path]:
    """``root/cmp/<variant>/<model>/`` for every variant and ``root/base/hf/<model>/``, the
    way compare lays them out."""
    model_dir = "__models__tiny-llama"
    for number, variant in enumerate(VARIANTS):
        write_run(root / "cmp" / folder_name(variant) / model_dir, variant, legacy=legacy,
                  number=number)
    write_run(root / "base" / "hf" / model_dir, "hf", legacy=legacy, number=len(VARIANTS))
    return {"root": root, "cmp": root / "cmp", "base": root / "base"}


def load(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def results_file(folder: Path) -> Path:
    (path,) = sorted(Path(folder).rglob("results_*.json"))
    return path


def one_task_part(data: dict[str, Any], task: str, number: int) -> dict[str, Any]:
    """A copy of results file ``data`` with ``task`` alone, ``number`` seconds newer: one
    of the files of a run split by task."""
    part = json.loads(json.dumps(data))
    part["results"] = {task: data["results"][task]}
    part["n-samples"] = {task: data["n-samples"][task]}
    part["date"] = data["date"] + number
    return part
