"""Cached search vs naive recompute, side by side on the same samples and seed.

    python benchmarks/search_speed.py --task arc_challenge --limit 20 --budget 40
    python benchmarks/search_speed.py --task gsm8k --limit 8 --budget 16 --parts search
    python benchmarks/search_speed.py --task arc_challenge_chat --limit 8 --budget 16 --parts search
    # GPU-ready: one short device run
    python benchmarks/search_speed.py --task gsm8k --limit 32 --budget 16 --parts search \
        --model_args dtype=bfloat16,device=cuda --search_batch 32 --generation_kv_bytes 8000000000

Naive: every evaluation runs lm-eval's own path under the chain (loglikelihood: a full
forward per request with full logits; generation: ``generate`` from scratch, batch 1), as
the paper's code does, one sample at a time. Fast: lm_eval_cola/engine/fast.py (packed shared
context, prefix reuse, scored-positions-only LM head) and lm_eval_cola/engine/fast_generate.py
(generation: every pending chain of every sample in flight decoded side by side, one
forward per step, prompt reuse, earlier answers as drafts), ``search_batch`` samples side
by side. Prints evaluations/s for each, the ratio, whether both chose the same chains with
the same correctness decisions (and, for generation, how many chains evaluated by both
got the very same answer text), the decoding batch sizes, fixed-chain time against depth,
and the identity chain against plain lm-eval ``hf`` on the same requests (--parts picks
these). ``--profile N`` prints the fast run's N costliest functions.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections import defaultdict

import torch


def build(task_name: str, limit: int, model_args: dict, max_gen_toks: int | None = None):
    import lm_eval.tasks  # noqa: F401  (the start-up hook patches local data in)
    from lm_eval.tasks import TaskManager, get_task_dict

    from lm_eval_cola.deploy.calibrate import FEWSHOT_SEED
    from lm_eval_cola.harness.models import ColaHFLM

    lm = ColaHFLM(searcher="mcts", **model_args)
    task = get_task_dict([task_name], TaskManager())[task_name]
    if max_gen_toks is not None and task.OUTPUT_TYPE == "generate_until":
        task.config.generation_kwargs["max_gen_toks"] = max_gen_toks
    # as simple_evaluate does: an unseeded few-shot sampler picks other examples each run
    task.set_fewshot_seed(seed=FEWSHOT_SEED)
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    lm.attach_tasks({task_name: task})
    by_doc = defaultdict(list)
    for instance in task.instances:
        by_doc[instance.doc_id].append(instance)
    return lm, [sorted(v, key=lambda i: i.idx) for _, v in sorted(by_doc.items())]


def run_search(lm, samples, fast: bool, budget: int, search_batch: int = 1,
               kv_bytes: int | None = None, profile: int = 0):
    """One search over ``samples`` as ``search.OracleSearch.run`` runs it (its
    ``SampleSearch`` per sample, ``scheduler.run_searches``, ``runner.evaluate_many``),
    with a fresh runner (no reuse from an earlier run), no records file, every evaluated
    chain listed in the records, and ``search_batch`` samples side by side on the fast path
    whatever the request type."""
    import cProfile
    import dataclasses
    import pstats

    from lm_eval_cola.engine.fast_generate import DECODE_STATS
    from lm_eval_cola.engine.runner import ChainRunner, Evaluations
    from lm_eval_cola.search.driver import Sample, SampleSearch
    from lm_eval_cola.search.scheduler import run_searches
    from lm_eval_cola.search.searchers import get_searcher

    lm.searcher = get_searcher("mcts", budget=budget, max_len=lm.max_chain_length)
    runner = ChainRunner(lm, fast, lm.cola.prefix_cache_bytes,
                         kv_bytes or lm.cola.generation_kv_bytes)
    # The model's decoding step asks its own runner for the fast decoder's hook: this
    # fresh runner must be that runner, or generation silently takes lm-eval's path.
    lm.runner = runner
    facts = dataclasses.replace(lm.run_facts(), record_chains="all")
    kind = samples[0][0].request_type
    todo = [Sample(r[0].task_name, r[0].doc_id, r) for r in samples]
    width = search_batch if fast else 1
    cache_bytes = runner.cache_bytes // min(width, len(todo))  # as search.OracleSearch.run
    records = []

    def start(sample):
        def make():
            judge = lm.judges.judge(sample.task)
            evaluator = runner.evaluator(kind, sample.requests, cache_bytes)
            return SampleSearch(sample, kind, judge, facts, evaluator)
        return make

    DECODE_STATS.reset()
    profiler = cProfile.Profile() if profile else None
    started, cpu = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    run_searches([start(s) for s in todo], Evaluations(lm.model),
                 lambda index, search, seconds: records.append(search.record(seconds)), width)
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    if fast and kind == "generate_until" and not DECODE_STATS.steps:
        raise RuntimeError("the fast run decoded nothing in batches: generation took "
                           "lm-eval's path (see ChainRunner.evaluator)")
    print(f"{'fast' if fast else 'naive'} run: {seconds:.1f} s wall, {cpu:.1f} s cpu (all threads)",
          flush=True)
    if profiler is not None:
        print(f"profile of the {'fast' if fast else 'naive'} run (top {profile} by own time):")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(profile)
    by_doc = {r.doc_id: r for r in records}
    chosen = [(by_doc[s.doc_id].best_chain, by_doc[s.doc_id].best_correct,
               by_doc[s.doc_id].full_correct) for s in todo]
    answers = {(r.doc_id, c["chain"]): c["answer"] for r in records for c in r.chains}
    return (chosen, sum(r.evaluations for r in records), seconds, answers, DECODE_STATS.copy(),
            cpu)


def fixed_chain_times(lm, samples, depths, repeats: int = 5, together: bool = True):
    """Seconds per sample for chains of each depth (fresh scorers: no prefix reuse), all
    samples in one batch as a search scores them side by side (``together``), or one at
    a time. Depths alternate within each repeat, so drift in machine speed hits all
    alike; the best repeat counts."""
    from lm_eval_cola.compat.lm_eval_private import encode_pair
    from lm_eval_cola.engine.fast import SampleScorer, pack, score_many

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

    from lm_eval_cola.chains.syntax import full_chain
    from lm_eval_cola.engine.apply import chain_applied

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
                             "model's, see docs/performance.md)")
    parser.add_argument("--model_args", default="", help="e.g. pretrained=...,dtype=bfloat16")
    parser.add_argument("--max_gen_toks", type=int, default=None,
                        help="cap the generation task's max_gen_toks (default: the task's)")
    parser.add_argument("--generation_kv_bytes", type=int, default=None,
                        help="KV bytes of the rows decoding at once (default: the model's)")
    parser.add_argument("--profile", type=int, default=0,
                        help="print the fast search's N costliest functions (cProfile)")
    parser.add_argument("--parts", default="search,fixed,identity",
                        help="what to measure: search (naive vs fast), fixed (cost vs depth), "
                             "identity (identity chain vs plain hf)")
    parser.add_argument("--data_dir", default=os.environ.get("COLA_DATA_DIR"),
                        help="local benchmark data (default: $COLA_DATA_DIR)")
    args = parser.parse_args()
    if args.data_dir:
        os.environ["COLA_DATA_DIR"] = os.path.abspath(args.data_dir)
    from lm_eval_cola.compat.lm_eval_private import parse_model_args

    lm, samples = build(args.task, args.limit, parse_model_args(args.model_args),
                        args.max_gen_toks)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"torch {torch.__version__}, device {lm.device}, dtype {lm.model.dtype}")
    print(f"model: {lm.model_label} ({lm.num_layers} layers); task {args.task}, "
          f"{len(samples)} samples, mcts budget {args.budget}")
    parts = set(args.parts.split(","))
    if "search" in parts:
        search(lm, samples, args.budget, args.search_batch or lm.cola.search_batch,
               args.generation_kv_bytes, args.profile)
    if "fixed" in parts and samples[0][0].request_type == "loglikelihood":
        fixed(lm, samples)
    if "identity" in parts and samples[0][0].request_type == "loglikelihood":
        plain, chained = identity_vs_hf(lm, samples)
        print(f"identity chain vs plain hf (lm-eval's loglikelihood path, "
              f"{sum(len(s) for s in samples)} requests, best of 3): hf {plain:.2f} s, "
              f"cola_hf identity {chained:.2f} s, ratio {chained / plain:.3f}")


def search(lm, samples, budget: int, search_batch: int, kv_bytes: int | None = None,
           profile: int = 0) -> None:
    if samples[0][0].request_type == "generate_until":
        gen = samples[0][0].args[1]
        print(f"generation kwargs: {gen}")
    naive, naive_evals, naive_s, naive_answers, _, naive_cpu = run_search(
        lm, samples, fast=False, budget=budget)
    fast, fast_evals, fast_s, fast_answers, stats, fast_cpu = run_search(
        lm, samples, fast=True, budget=budget, search_batch=search_batch,
        kv_bytes=kv_bytes, profile=profile)
    naive_rate, fast_rate = naive_evals / naive_s, fast_evals / fast_s
    agree = sum(a == b for a, b in zip(naive, fast, strict=True))
    print(f"naive: {naive_evals} evaluations in {naive_s:.1f} s = {naive_rate:.3f} eval/s")
    print(f"fast:  {fast_evals} evaluations in {fast_s:.1f} s = {fast_rate:.3f} eval/s "
          f"({search_batch} samples side by side)")
    print(f"speed-up: {fast_rate / naive_rate:.2f}x wall; "
          f"{(fast_evals / fast_cpu) / (naive_evals / naive_cpu):.2f}x in cpu seconds "
          f"(naive {naive_cpu:.1f} s, fast {fast_cpu:.1f} s: the fairer figure on a busy machine)")
    print(f"agreement: {agree}/{len(samples)} samples with the same best chain and decisions")
    common = sorted(set(naive_answers) & set(fast_answers))
    same = sum(naive_answers[k] == fast_answers[k] for k in common)
    print(f"answers: {same}/{len(common)} chains evaluated by both runs gave the same answer")
    if stats.steps:
        print(f"decoding: {stats.steps} batched steps, {stats.rows} rows, mean "
              f"{stats.row_steps / stats.steps:.1f} rows a step (max {stats.max_rows}), "
              f"{stats.tokens} tokens generated ({stats.tokens_from_drafts} from drafts), "
              f"{stats.fed_tokens / stats.steps:.1f} tokens fed a step")
    if stats.layer_calls:
        print(f"layer calls: {stats.layer_calls} ({stats.layer_calls / stats.steps:.1f} a step), "
              f"{stats.call_tokens / stats.layer_calls:.1f} real tokens a call, "
              f"{stats.padded_tokens / stats.layer_calls:.1f} computed with padding")
    if stats.token_layers:
        print(f"work: {stats.token_layers:,} token-layers computed (padding, prompts and "
              f"rejected guesses included) against {stats.alone_token_layers:,} for generate "
              f"alone on the same rows: {stats.alone_token_layers / stats.token_layers:.2f}x "
              f"less arithmetic in the decoder layers")


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
