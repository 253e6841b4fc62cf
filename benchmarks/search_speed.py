"""Search speed: naive, exact and fast numerics, W chains a sample at once, side by side.

    python benchmarks/search_speed.py --task arc_challenge --limit 20 --budget 40 \
        --protocol cola --parallel 8 --numerics fast
    python benchmarks/search_speed.py --task gsm8k --limit 8 --budget 16 --parallel 8
    # GPU-ready: one short device run
    python benchmarks/search_speed.py --task gsm8k --limit 32 --budget 16 --parallel 8 \
        --numerics fast --model_args dtype=bfloat16,device=cuda --search_batch 32

One run searches the same samples with the same seed in up to four configurations, each
through the search driver itself (``OracleSearch.run``, no records file, every evaluated
chain kept in the records):

- naive: every evaluation through lm-eval's own path under the chain (loglikelihood: a
  full forward per request with full logits; generation: ``generate`` from scratch), one
  sample at a time, one chain at a time (W = 1), as the paper's code does;
- exact W=1: the fast engine (``fast=True``, ``numerics=exact``), ``search_batch`` samples
  side by side, one chain a sample at a time: the same chains as naive;
- exact W=<W>: the same with ``parallel=W`` (mcts asks W chains a round, virtual loss);
- <numerics> W=<W>: the configuration asked (left out when it is the row above).

Per row: wall and CPU seconds, evaluations, evaluations/s, token-layers computed (tokens x
decoder layers, padding included) and rows per layer call. Then ``speed-up: X`` (the asked
configuration's evaluations/s over naive's) and ``decision agreement: Y%``: of the (sample,
chain) evaluations both the asked configuration and its exact reference made (exact W=<W>;
for an exact configuration, naive: lm-eval's path), the share with the same decision (the
chosen answer and its correctness), and the share of samples with the same best chain and
with the same findings (full chain right, best chain right, shorter when right). Exact W=1
is checked against naive the same way. ``--profile N`` prints the asked configuration's N
costliest functions (cProfile). ``--parts fixed,identity`` adds the cost of fixed chains
against depth and the identity chain against plain lm-eval (log-likelihood tasks).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import os
import platform
import time
from collections import defaultdict
from typing import Any

import torch


def build(task_name: str, limit: int, model_args: dict, max_gen_toks: int | None = None):
    import lm_eval.tasks  # noqa: F401  (the start-up hook patches local data in)
    from lm_eval.tasks import TaskManager

    from lm_eval_cola.deploy.calibrate import FEWSHOT_SEED
    from lm_eval_cola.harness.models import ColaHFLM

    lm = ColaHFLM(searcher="mcts", **model_args)
    task = TaskManager().load([task_name])["tasks"][task_name]
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


@dataclasses.dataclass(frozen=True)
class Config:
    """One row: which path, which numerics, how many chains a sample asks at once."""

    label: str
    fast: bool
    numerics: str = "exact"
    parallel: int = 1


@dataclasses.dataclass
class Measured:
    config: Config
    records: dict[int, Any]  # doc_id -> Record (every evaluated chain in ``chains``)
    wall: float
    cpu: float
    token_layers: int
    rows_per_call: float | None
    notes: list[str]
    peak_bytes: int | None = None  # CUDA: the most memory allocated during the row

    @property
    def evaluations(self) -> int:
        return sum(r.evaluations for r in self.records.values())


def fresh_runner(lm, config: Config, kv_bytes: int | None):
    """A runner set up as the model's own (its settings, however the model builds it), with
    this row's path and numerics and nothing kept from an earlier row."""
    runner = copy.copy(lm.runner)
    runner.fast, runner.numerics = config.fast, config.numerics
    if getattr(runner, "prompt_cache", None) is not None:  # share_prompts: start empty
        runner.prompt_cache = type(runner.prompt_cache)(runner.cache_bytes)
    if kv_bytes is not None:
        runner.kv_bytes = kv_bytes
    return runner


def run_config(lm, samples, config: Config, budget: int, search_batch: int,
               searcher_args: dict, kv_bytes: int | None = None, profile: int = 0) -> Measured:
    """One search over ``samples`` through ``OracleSearch.run`` with a fresh runner (no
    reuse from an earlier row), no records file and every evaluated chain recorded."""
    import cProfile
    import pstats

    from lm_eval_cola.engine.fast import SCORE_STATS
    from lm_eval_cola.engine.fast_generate import DECODE_STATS
    from lm_eval_cola.search.driver import OracleSearch, Sample
    from lm_eval_cola.search.searchers import get_searcher

    searcher = get_searcher("mcts", budget=budget, max_len=lm.max_chain_length,
                            parallel=config.parallel, **searcher_args)
    runner = fresh_runner(lm, config, kv_bytes)
    facts = dataclasses.replace(lm.run_facts(), searcher=searcher, record_chains="all")
    driver = OracleSearch(runner, lm.judges, facts, search_batch, None)
    kind = samples[0][0].request_type
    todo = [Sample(r[0].task_name, r[0].doc_id, r) for r in samples]
    DECODE_STATS.reset()
    SCORE_STATS.reset()
    profiler = cProfile.Profile() if profile else None
    on_cuda = lm.device.type == "cuda"
    if on_cuda:  # time the row's own work: nothing queued before, all of it finished after
        torch.cuda.synchronize(lm.device)
        torch.cuda.reset_peak_memory_stats(lm.device)
    started, cpu = time.perf_counter(), time.process_time()
    # the runner installs its own decoding hook while it runs (engine.runner.decoding_by)
    if profiler is not None:
        profiler.enable()
    records = driver.run(kind, todo)
    if profiler is not None:
        profiler.disable()
    if on_cuda:
        torch.cuda.synchronize(lm.device)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    if config.fast and kind == "generate_until" and not DECODE_STATS.steps:
        raise RuntimeError("the fast run decoded nothing in batches: generation took "
                           "lm-eval's path (see ChainRunner.evaluator)")
    if profiler is not None:
        print(f"profile of {config.label} (top {profile} by own time):")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(profile)
    by_doc = {r.doc_id: r for r in records}
    token_layers, per_call, notes = work_of(lm, samples, by_doc, config, kind,
                                            SCORE_STATS.copy(), DECODE_STATS.copy())
    print(f"{config.label}: {wall:.1f} s wall, {cpu:.1f} s cpu", flush=True)
    peak = torch.cuda.max_memory_allocated(lm.device) if on_cuda else None
    return Measured(config, by_doc, wall, cpu, token_layers, per_call, notes, peak)


def work_of(lm, samples, records, config: Config, kind: str, scores, decoding
            ) -> tuple[int, float | None, list[str]]:
    """(token-layers computed, rows per layer call, notes) of one row."""
    if config.fast and kind == "loglikelihood":
        rows = scores.row_calls / scores.layer_calls if scores.layer_calls else None
        return scores.token_layers, rows, [
            f"{scores.forwards} batched forwards, {scores.layer_calls} layer calls, "
            f"{scores.real_token_layers:,} of the token-layers real (not padding)"]
    if kind == "loglikelihood":
        # lm-eval's path: one forward per evaluation, the sample's requests padded to its
        # longest, every chain position over all of them
        from lm_eval_cola.compat.lm_eval_private import encode_pair

        total, rows, evaluations = 0, 0, 0
        for requests in samples:
            lengths = [len((c + t)[-(lm.max_length + 1):]) - 1
                       for c, t in (encode_pair(lm, *r.args) for r in requests)]
            record = records[requests[0].doc_id]
            total += len(lengths) * max(lengths) * record.evaluated_layers
            rows += len(lengths) * record.evaluations
            evaluations += record.evaluations
        return total, rows / max(evaluations, 1), []
    notes = []
    if decoding.steps:
        notes.append(f"decoding: {decoding.steps} batched steps, mean "
                     f"{decoding.row_steps / decoding.steps:.1f} rows a step (max "
                     f"{decoding.max_rows}), {decoding.tokens} tokens generated "
                     f"({decoding.tokens_from_drafts} from drafts)")
    rows = (decoding.call_tokens / decoding.layer_calls) if decoding.layer_calls else None
    return decoding.token_layers, rows, notes


def chain_entries(measured: Measured) -> dict[tuple[int, str], dict[str, Any]]:
    """Every evaluated chain's record entry, by (doc id, chain)."""
    return {(doc, entry["chain"]): entry
            for doc, record in measured.records.items() for entry in record.chains}


def findings(record) -> tuple[bool, bool, bool]:
    """A sample's part in the paper's findings: full chain right, best chain right, and
    a shorter right chain where the full chain is right."""
    return record.full_correct, record.best_correct, record.full_correct and record.shortened


def agreement(asked: Measured, reference: Measured) -> dict[str, Any]:
    mine, theirs = chain_entries(asked), chain_entries(reference)
    common = sorted(set(mine) & set(theirs))
    pairs = [(mine[k], theirs[k]) for k in common]
    scored = [(a["score"], b["score"]) for a, b in pairs
              if a.get("score") is not None and b.get("score") is not None]
    docs = sorted(reference.records)
    return {
        # the decision: the chosen answer and its correctness
        "same": sum((a["answer"], a["correct"]) == (b["answer"], b["correct"])
                    for a, b in pairs),
        "common": len(common),
        # the score a chain was ranked by, compared bit for bit
        "bitwise": sum(a.get("score") == b.get("score") for a, b in pairs),
        "max_diff": max((abs(a - b) for a, b in scored), default=0.0),
        "best": sum(asked.records[d].best_chain == reference.records[d].best_chain
                    for d in docs),
        "findings": sum(findings(asked.records[d]) == findings(reference.records[d])
                        for d in docs),
        "samples": len(docs),
    }


def agreement_line(label: str, reference: str, found: dict[str, Any]) -> str:
    share = 100.0 * found["same"] / found["common"] if found["common"] else float("nan")
    return (f"{label} against {reference}: {found['same']}/{found['common']} common "
            f"evaluations with the same decision ({share:.2f}%), {found['best']}/"
            f"{found['samples']} samples with the same best chain, {found['findings']}/"
            f"{found['samples']} with the same findings; scores: {found['bitwise']}/"
            f"{found['common']} bitwise equal, max difference {found['max_diff']:.2e}")


def configs(parallel: int, numerics: str) -> list[Config]:
    rows = [Config("naive", False), Config("exact W=1", True)]
    if parallel > 1:
        rows.append(Config(f"exact W={parallel}", True, "exact", parallel))
    if numerics != "exact":
        rows.append(Config(f"{numerics} W={parallel}", True, numerics, parallel))
    return rows


def search(lm, samples, args) -> None:
    if samples[0][0].request_type == "generate_until":
        print(f"generation kwargs: {samples[0][0].args[1]}")
    searcher_args = ({"protocol": args.protocol} if args.protocol else {})
    # the model's setting, wherever its config keeps it
    search_batch = args.search_batch or getattr(getattr(lm.cola, "engine", lm.cola),
                                                "search_batch", 16)
    if lm.device.type == "cuda":
        # the first forward on a device pays one-off costs (kernel choice, library set-up):
        # not the naive row's alone
        with torch.no_grad():
            lm.model(torch.ones(1, 16, dtype=torch.long, device=lm.device))
    measured = []
    rows = configs(args.parallel, args.numerics)
    for config in rows:
        measured.append(run_config(lm, samples, config, args.budget, search_batch,
                                   searcher_args, args.generation_kv_bytes,
                                   args.profile if config is rows[-1] else 0))
    naive = measured[0]
    rate = {m.config.label: m.evaluations / m.wall for m in measured}
    print(f"\nmcts {searcher_args or '(default space)'}, budget {args.budget}, "
          f"{len(samples)} samples, search_batch {search_batch} (fast rows)")
    print("| path | wall s | s / sample | cpu s | evaluations | eval/s | speed-up (wall) "
          "| token-layers "
          "| rows per layer call |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in measured:
        rows_text = f"{m.rows_per_call:.1f}" if m.rows_per_call is not None else "-"
        print(f"| {m.config.label} | {m.wall:.1f} | {m.wall / len(samples):.3f} | "
              f"{m.cpu:.1f} | {m.evaluations} | "
              f"{rate[m.config.label]:.2f} | {rate[m.config.label] / rate['naive']:.2f}x | "
              f"{f'{m.token_layers:,}' if m.token_layers else '-'} | {rows_text} |")
    for m in measured:
        for note in m.notes:
            print(f"{m.config.label}: {note}")
        if m.peak_bytes is not None:
            print(f"{m.config.label}: peak CUDA memory allocated {m.peak_bytes / 2**30:.2f} GiB")
    print(agreement_line("exact W=1", "naive", agreement(measured[1], naive)))
    asked = measured[-1]
    reference = naive if asked.config.numerics == "exact" else measured[-2]
    found = agreement(asked, reference)
    if asked is not measured[1]:
        print(agreement_line(asked.config.label, reference.config.label, found))
    print(f"speed-up: {rate[asked.config.label] / rate['naive']:.2f}x "
          f"({asked.config.label} against naive, evaluations/s wall; cpu "
          f"{(asked.evaluations / asked.cpu) / (naive.evaluations / naive.cpu):.2f}x)")
    share = 100.0 * found["same"] / found["common"] if found["common"] else float("nan")
    print(f"decision agreement: {share:.2f}% ({found['same']}/{found['common']} evaluations "
          f"against {reference.config.label}; same best chain {found['best']}/"
          f"{found['samples']}, same findings {found['findings']}/{found['samples']})")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="arc_challenge")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--parallel", type=int, default=8,
                        help="W: chains a sample asks at once in the last rows (mcts parallel=)")
    parser.add_argument("--numerics", choices=("exact", "fast"), default="fast",
                        help="numerics of the last row (the configuration asked)")
    parser.add_argument("--protocol", default=None,
                        help="mcts protocol preset, e.g. cola (the paper's action space); "
                             "--budget still sets the budget")
    parser.add_argument("--search_batch", type=int, default=None,
                        help="samples searched side by side on the fast path (default: the "
                             "model's, see docs/performance.md)")
    parser.add_argument("--model_args", default="", help="e.g. pretrained=...,dtype=bfloat16")
    parser.add_argument("--max_gen_toks", type=int, default=None,
                        help="cap the generation task's max_gen_toks (default: the task's)")
    parser.add_argument("--generation_kv_bytes", type=int, default=None,
                        help="KV bytes of the rows decoding at once (default: the model's)")
    parser.add_argument("--profile", type=int, default=0,
                        help="print the asked configuration's N costliest functions (cProfile)")
    parser.add_argument("--parts", default="search",
                        help="what to measure: search (the rows above), fixed (cost vs depth), "
                             "identity (identity chain vs plain hf), comma-separated")
    parser.add_argument("--data_dir", default=os.environ.get("COLA_DATA_DIR"),
                        help="local benchmark data (default: $COLA_DATA_DIR)")
    args = parser.parse_args()
    if args.parallel < 1:
        parser.error("--parallel must be >= 1")
    if args.data_dir:
        os.environ["COLA_DATA_DIR"] = os.path.abspath(args.data_dir)
    # no records file is the point here: the driver's warning about it is noise
    logging.getLogger("lm_eval_cola.search.driver").setLevel(logging.ERROR)
    from lm_eval_cola.compat.lm_eval_private import parse_model_args

    lm, samples = build(args.task, args.limit, parse_model_args(args.model_args),
                        args.max_gen_toks)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"torch {torch.__version__}, device {lm.device}, dtype {lm.model.dtype}")
    print(f"model: {lm.model_label} ({lm.num_layers} layers); task {args.task}, "
          f"{len(samples)} samples, mcts budget {args.budget}")
    parts = set(args.parts.split(","))
    if "search" in parts:
        search(lm, samples, args)
    if "fixed" in parts and samples[0][0].request_type == "loglikelihood":
        fixed(lm, samples)
    if "identity" in parts and samples[0][0].request_type == "loglikelihood":
        plain, chained = identity_vs_hf(lm, samples)
        print(f"identity chain vs plain hf (lm-eval's loglikelihood path, "
              f"{sum(len(s) for s in samples)} requests, best of 3): hf {plain:.2f} s, "
              f"cola_hf identity {chained:.2f} s, ratio {chained / plain:.3f}")


if __name__ == "__main__":
    main()
