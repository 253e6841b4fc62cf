"""Cached search vs naive recompute, side by side on the same samples and seed.

    python benchmarks/search_speed.py --task arc_challenge --limit 20 --budget 40

Naive: every evaluation runs lm-eval's own loglikelihood path under the chain (a full
forward per request, full logits), as the paper's code does. Fast: the packed shared
context, prefix reuse and scored-positions-only LM head of lm_eval_cola/fast.py.
Prints evaluations/s for each, the ratio, whether both chose the same chains with the
same correctness decisions, and fixed-chain time against depth.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
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


def run_search(lm, samples, fast: bool, budget: int):
    from lm_eval_cola.searchers import get_searcher

    lm.fast = fast
    lm.searcher = get_searcher("mcts", budget=budget, max_len=lm.max_chain_length)
    lm._writer = None
    lm.records_path = tempfile.mktemp(suffix=".jsonl")
    chosen, evaluations, started = [], 0, time.perf_counter()
    for requests in samples:
        record = lm._search_one(requests[0].request_type, requests[0].task_name,
                                requests[0].doc_id, requests)
        chosen.append((record["best_chain"], record["best_correct"], record["full_correct"]))
        evaluations += record["evaluations"]
    return chosen, evaluations, time.perf_counter() - started


def fixed_chain_times(lm, samples, depths, repeats: int = 3):
    """Seconds per sample for chains of each depth (fresh scorer: no prefix reuse)."""
    from lm_eval_cola.fast import SampleScorer, pack

    total = lm.num_layers
    out = {}
    for depth in depths:
        chain = tuple(range(depth)) if depth <= total else tuple(range(total)) + tuple(
            range(total - (depth - total), total))
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            for requests in samples:
                sample = pack([lm.encode_pair(*r.args) for r in requests], lm.max_length)
                SampleScorer(lm.model, sample, lm.device, 0)(chain)
            best = min(best, time.perf_counter() - started)
        out[depth] = best / len(samples)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="arc_challenge")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--model_args", default="", help="e.g. pretrained=...,dtype=bfloat16")
    parser.add_argument("--data_dir", default=os.environ.get("COLA_DATA_DIR"),
                        help="local benchmark data (default: $COLA_DATA_DIR)")
    args = parser.parse_args()
    if args.data_dir:
        os.environ["COLA_DATA_DIR"] = os.path.abspath(args.data_dir)
    from lm_eval_cola.cli import parse_model_args

    lm, samples = build(args.task, args.limit, parse_model_args(args.model_args))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"torch {torch.__version__}, device {lm.device}, dtype {lm.model.dtype}")
    print(f"model: {lm.pretrained_label} ({lm.num_layers} layers); task {args.task}, "
          f"{len(samples)} samples, mcts budget {args.budget}")
    naive, naive_evals, naive_s = run_search(lm, samples, fast=False, budget=args.budget)
    fast, fast_evals, fast_s = run_search(lm, samples, fast=True, budget=args.budget)
    naive_rate, fast_rate = naive_evals / naive_s, fast_evals / fast_s
    agree = sum(a == b for a, b in zip(naive, fast, strict=True))
    print(f"naive: {naive_evals} evaluations in {naive_s:.1f} s = {naive_rate:.2f} eval/s")
    print(f"fast:  {fast_evals} evaluations in {fast_s:.1f} s = {fast_rate:.2f} eval/s")
    print(f"speed-up: {fast_rate / naive_rate:.1f}x")
    print(f"agreement: {agree}/{len(samples)} samples with the same best chain and decisions")
    total = lm.num_layers
    if samples[0][0].request_type != "loglikelihood":
        return
    depths = [total // 2, (3 * total) // 4, total, (3 * total) // 2]
    times = fixed_chain_times(lm, samples, depths)
    print("fixed chain cost vs depth (fast scorer, no reuse):")
    print("| depth | d/L | seconds/sample | time / full |")
    print("|---:|---:|---:|---:|")
    for depth, seconds in times.items():
        print(f"| {depth} | {depth / total:.2f} | {seconds:.4f} | {seconds / times[total]:.3f} |")


if __name__ == "__main__":
    main()
