"""Cached search vs naive recompute, side by side on the same samples and seed.

    python benchmarks/search_speed.py --task arc_challenge --limit 20 --budget 40
    python benchmarks/search_speed.py --task gsm8k --limit 3 --budget 8 --parts search

Naive: every evaluation runs lm-eval's own path under the chain (loglikelihood: a full
forward per request with full logits; generation: ``generate`` from scratch), as the
paper's code does. Fast: lm_eval_cola/fast.py (packed shared context, prefix reuse,
scored-positions-only LM head) and lm_eval_cola/fast_generate.py (prompt reuse, earlier
answers as drafts). Prints evaluations/s for each, the ratio, whether both chose the same
chains with the same correctness decisions, fixed-chain time against depth, and the
identity chain against plain lm-eval ``hf`` on the same requests (--parts picks these).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections import defaultdict

import torch


def build(task_name: str, limit: int, model_args: dict):
    import lm_eval.tasks  # noqa: F401  (the start-up hook patches local data in)
    from lm_eval.tasks import TaskManager, get_task_dict

    from lm_eval_cola.models import ColaHFLM

    lm = ColaHFLM(searcher="mcts", **model_args)
    task = get_task_dict([task_name], TaskManager())[task_name]
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    lm.attach_tasks({task_name: task})
    by_doc = defaultdict(list)
    for instance in task.instances:
        by_doc[instance.doc_id].append(instance)
    return lm, [sorted(v, key=lambda i: i.idx) for _, v in sorted(by_doc.items())]


def run_search(lm, samples, fast: bool, budget: int, search_batch: int = 1):
    """One search over ``samples`` through the public driver (search.OracleSearch), with a
    fresh runner (no reuse from an earlier run) and no records file."""
    from lm_eval_cola.runner import ChainRunner
    from lm_eval_cola.search import OracleSearch, Sample
    from lm_eval_cola.searchers import get_searcher

    lm.searcher = get_searcher("mcts", budget=budget, max_len=lm.max_chain_length)
    runner = ChainRunner(lm, fast, lm.cola.prefix_cache_bytes)
    driver = OracleSearch(runner, lm.judges, lm.run_facts(), search_batch, records_file=None)
    todo = [Sample(r[0].task_name, r[0].doc_id, r) for r in samples]
    started = time.perf_counter()
    records = driver.run(samples[0][0].request_type, todo)
    seconds = time.perf_counter() - started
    by_doc = {r.doc_id: r for r in records}
    chosen = [(by_doc[s.doc_id].best_chain, by_doc[s.doc_id].best_correct,
               by_doc[s.doc_id].full_correct) for s in todo]
    return chosen, sum(r.evaluations for r in records), seconds


def fixed_chain_times(lm, samples, depths, repeats: int = 5, together: bool = True):
    """Seconds per sample for chains of each depth (fresh scorers: no prefix reuse), all
    samples in one batch as a search scores them side by side (``together``), or one at
    a time. Depths alternate within each repeat, so drift in machine speed hits all
    alike; the best repeat counts."""
    from lm_eval_cola.compat.lm_eval_private import encode_pair
    from lm_eval_cola.fast import SampleScorer, pack, score_many

    total = lm.num_layers
    packed = [pack([encode_pair(lm, *r.args) for r in requests], lm.max_length)
              for requests in samples]
    best = dict.fromkeys(depths, float("inf"))
    for _ in range(repeats):
        for depth in depths:
            chain = tuple(range(depth)) if depth <= total else tuple(range(total)) + tuple(
                range(total - (depth - total), total))
            started = time.perf_counter()
            scorers = [SampleScorer(lm.model, sample, lm.device, 0) for sample in packed]
            if together:
                score_many(lm.model, [(scorer, chain) for scorer in scorers])
            else:
                for scorer in scorers:
                    scorer(chain)
            best[depth] = min(best[depth], time.perf_counter() - started)
    return {depth: seconds / len(samples) for depth, seconds in best.items()}


def identity_vs_hf(lm, samples, repeats: int = 3) -> tuple[float, float]:
    """Seconds for all requests through lm-eval's own loglikelihood path: plain (what
    ``--model hf`` runs) and under the identity chain (what ``cola_hf`` runs), alternated."""
    from lm_eval.models.huggingface import HFLM

    from lm_eval_cola.chain import full_chain
    from lm_eval_cola.engine import chain_applied

    requests = [r for sample in samples for r in sample]
    plain, chained = float("inf"), float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        HFLM.loglikelihood(lm, requests, disable_tqdm=True)
        plain = min(plain, time.perf_counter() - started)
        started = time.perf_counter()
        with chain_applied(lm.model, full_chain(lm.num_layers)):
            HFLM.loglikelihood(lm, requests, disable_tqdm=True)
        chained = min(chained, time.perf_counter() - started)
    return plain, chained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="arc_challenge")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--search_batch", type=int, default=None,
                        help="samples searched side by side on the fast path (default: the "
                             "model's, see README)")
    parser.add_argument("--model_args", default="", help="e.g. pretrained=...,dtype=bfloat16")
    parser.add_argument("--parts", default="search,fixed,identity",
                        help="what to measure: search (naive vs fast), fixed (cost vs depth), "
                             "identity (identity chain vs plain hf)")
    parser.add_argument("--data_dir", default=os.environ.get("COLA_DATA_DIR"),
                        help="local benchmark data (default: $COLA_DATA_DIR)")
    args = parser.parse_args()
    if args.data_dir:
        os.environ["COLA_DATA_DIR"] = os.path.abspath(args.data_dir)
    from lm_eval_cola.compat.lm_eval_private import parse_model_args

    lm, samples = build(args.task, args.limit, parse_model_args(args.model_args))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"torch {torch.__version__}, device {lm.device}, dtype {lm.model.dtype}")
    print(f"model: {lm.model_label} ({lm.num_layers} layers); task {args.task}, "
          f"{len(samples)} samples, mcts budget {args.budget}")
    parts = set(args.parts.split(","))
    if "search" in parts:
        search(lm, samples, args.budget, args.search_batch or lm.cola.search_batch)
    if "fixed" in parts and samples[0][0].request_type == "loglikelihood":
        fixed(lm, samples)
    if "identity" in parts and samples[0][0].request_type == "loglikelihood":
        plain, chained = identity_vs_hf(lm, samples)
        print(f"identity chain vs plain hf (lm-eval's loglikelihood path, "
              f"{sum(len(s) for s in samples)} requests, best of 3): hf {plain:.2f} s, "
              f"cola_hf identity {chained:.2f} s, ratio {chained / plain:.3f}")


def search(lm, samples, budget: int, search_batch: int) -> None:
    naive, naive_evals, naive_s = run_search(lm, samples, fast=False, budget=budget)
    fast, fast_evals, fast_s = run_search(lm, samples, fast=True, budget=budget,
                                          search_batch=search_batch)
    naive_rate, fast_rate = naive_evals / naive_s, fast_evals / fast_s
    agree = sum(a == b for a, b in zip(naive, fast, strict=True))
    print(f"naive: {naive_evals} evaluations in {naive_s:.1f} s = {naive_rate:.2f} eval/s")
    print(f"fast:  {fast_evals} evaluations in {fast_s:.1f} s = {fast_rate:.2f} eval/s "
          f"({search_batch} samples side by side)")
    print(f"speed-up: {fast_rate / naive_rate:.1f}x")
    print(f"agreement: {agree}/{len(samples)} samples with the same best chain and decisions")


def fixed(lm, samples) -> None:
    total = lm.num_layers
    depths = [total // 2, (3 * total) // 4, total, (3 * total) // 2]
    batched = fixed_chain_times(lm, samples, depths)
    alone = fixed_chain_times(lm, samples, depths, together=False)
    print("fixed chain cost vs depth (fast scorer, no reuse; seconds per sample, best of 5):")
    print("| depth | d/L | all samples in one batch | time / full | one sample at a time "
          "| time / full |")
    print("|---:|---:|---:|---:|---:|---:|")
    for depth in depths:
        print(f"| {depth} | {depth / total:.2f} | {batched[depth]:.4f} | "
              f"{batched[depth] / batched[total]:.3f} | {alone[depth]:.4f} | "
              f"{alone[depth] / alone[total]:.3f} |")


if __name__ == "__main__":
    main()
