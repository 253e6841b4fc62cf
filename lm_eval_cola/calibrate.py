"""``lm-eval-cola calibrate``: one chain for a whole task, found on a calibration split.

Oracle runs pick a chain per test sample with the gold answer; a deployable chain must be
chosen without it. ``calibrate`` searches one chain for all samples of a task on another
split (``--split train`` or ``validation``) and writes it as a chain file; ``cola_hf
chain=FILE`` then evaluates it on the task's own evaluation split. Asking to calibrate on
the evaluated split (the task's ``test_split``, or its ``validation_split`` when it has no
test split) is refused in one line.

Search: any registered searcher (``greedy`` by default), driven through its ask/tell run
(``Searcher.start``) over a *task-level* evaluator: a chain's outcome is its accuracy on the
calibration samples, by the task's own metric (``oracle.TaskJudge``), computed by the fast
batched scorer (``runner.evaluate_many`` -> ``fast.score_many``). A chain is "correct" for
the searcher when its accuracy is at least the full chain's minus ``--tolerance``; its
score is ``accuracy - length_penalty * len / L``. The chain written is, among the evaluated
chains within ``--tolerance`` of the full chain's accuracy (the full chain included), the
one with the highest score (ties: shorter, then lexicographically smaller): by default
(tolerance 0, penalty 0.05) a chain no less accurate than the full model on the
calibration samples, as short as the search found.

Consensus (``--from-records FILE ...``): from per-sample oracle records (``record_chains=
all`` lists every evaluated chain with its correctness; older records give their correct
chains), the chain that is correct on the most samples, chosen the same way (correct share
in place of accuracy; a chain a sample's search never evaluated counts as not correct
there). Records of the evaluated split's docs are refused (their doc hashes are checked),
so the records must come from a calibration split.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from lm_eval_cola.chain import Chain, format_chain, full_chain, parse_chain
from lm_eval_cola.chain_file import ChainFile
from lm_eval_cola.errors import UserError

logger = logging.getLogger(__name__)

JOBS_PER_FORWARD = 64  # (sample, chain) rows per batched forward: bounds activation memory


# ----------------------------------------------------------------------------- splits


def load_task(name: str, include_path: str | None = None) -> Any:
    """lm-eval's task object of ``name`` (exactly one task, not a group)."""
    from lm_eval_cola.compat import local_data
    from lm_eval_cola.oracle import task_manager

    local_data.install()
    try:
        tasks = task_manager(include_path).load([name])["tasks"]
    except KeyError:
        raise UserError(f"task {name!r} not found; allowed: an lm-eval task name "
                        "(custom tasks need --include_path)") from None
    if len(tasks) != 1:
        raise UserError(f"--tasks {name!r} is a group of {len(tasks)} tasks; allowed: one task")
    return next(iter(tasks.values()))


def evaluated_split(task: Any) -> str:
    """The split lm-eval evaluates ``task`` on: its test split, else its validation split."""
    config = task.config
    return config.test_split or config.validation_split


def check_split(task: Any, split: str) -> None:
    """Refuse calibrating on the evaluated split, or on a split the dataset lacks."""
    name = task.config.task
    evaluated = evaluated_split(task)
    available = sorted(getattr(task, "dataset", None) or [])
    others = [s for s in available if s != evaluated]
    if split == evaluated:
        allowed = ", ".join(others) or "none"
        raise UserError(f"--split {split!r} is the split {name!r} is evaluated on; calibrating "
                        f"there would leak the test answers (allowed: {allowed})")
    if available and split not in available:
        raise UserError(f"--split {split!r}: task {name!r} has no such split; allowed: "
                        f"{', '.join(others) or 'none'}")


# lm-eval's default fewshot_random_seed (simple_evaluate, --fewshot_random_seed)
FEWSHOT_SEED = 1234


def calibration_task(name: str, split: str, num_fewshot: int | None = None,
                     include_path: str | None = None) -> Any:
    """The task with ``split`` as the docs it evaluates (so lm-eval's own request
    building serves the calibration docs), after ``check_split``."""
    task = load_task(name, include_path)
    check_split(task, split)
    task.set_config("test_split", split)
    if num_fewshot is not None:
        task.set_config("num_fewshot", num_fewshot)
    return task


# ----------------------------------------------------------------------------- evaluator


@dataclass
class _Sample:
    doc: dict
    evaluator: Any  # runner.SampleEvaluator
    requests: list  # the doc's distinct lm-eval requests (the router reads their contexts)


class TaskEvaluator:
    """Which calibration samples (the first ``limit`` docs of a task, or the ``doc_ids``
    among them) each chain answers
    correctly, and so its accuracy.

    ``lm`` is a cola model (``models.ColaHFLM``): its chain runner answers requests and the
    task's own metric judges them. Loglikelihood tasks are scored by the fast batched path;
    generation tasks run through lm-eval's path under each chain (slow)."""

    def __init__(self, lm: Any, task: Any, limit: int | None, metric: str | None = None,
                 cache_bytes: int = 2 << 30, apply_chat_template: bool = False,
                 doc_ids: Sequence[int] | None = None):
        from lm_eval_cola.oracle import TaskJudge

        self.lm = lm
        self.judge = TaskJudge(task, metric, None)
        # the prompts lm-eval builds for the same run flags (see evaluator.evaluate)
        chat = {"apply_chat_template": True, "chat_template": lm.apply_chat_template,
                "tokenizer_name": getattr(lm, "tokenizer_name", "")} \
            if apply_chat_template else {}
        # lm-eval's simple_evaluate seeds the few-shot sampler; unseeded, a few-shot task's
        # examples (so its prompts) would differ from lm_eval's and from run to run.
        task.set_fewshot_seed(seed=FEWSHOT_SEED)
        if doc_ids is not None:  # these docs of the split, within the first ``limit``
            chosen = sorted(d for d in set(doc_ids) if limit is None or d < limit)
            if not chosen:  # lm-eval reads an empty selection as "every doc"
                raise UserError(f"none of the {len(set(doc_ids))} docs asked for is among "
                                f"the first {limit} of {task.config.task!r}")
            task.build_all_requests(samples=chosen, rank=0, world_size=1, **chat)
        else:
            task.build_all_requests(limit=limit, rank=0, world_size=1, **chat)
        by_doc: dict[int, list] = {}
        for instance in task.instances:
            requests = by_doc.setdefault(instance.doc_id, [])
            if all(r.args != instance.args for r in requests):
                requests.append(instance)
        if not by_doc:
            raise UserError(f"task {task.config.task!r} has no docs in its calibration split")
        self.kind = "generate_until" if self.judge.output_type == "generate_until" \
            else "loglikelihood"
        share = max(cache_bytes // len(by_doc), 1 << 20)
        self.samples = [_Sample(reqs[0].doc, lm.runner.evaluator(self.kind, reqs, share), reqs)
                        for _, reqs in sorted(by_doc.items())]
        self.cache: dict[Chain, list[bool] | None] = {}  # None: a non-finite answer

    def __len__(self) -> int:
        return len(self.samples)

    def correct(self, chains: Sequence[Chain], progress: bool = False
                ) -> list[list[bool] | None]:
        """Per chain, whether each sample is judged correct under it (memoized); None for a
        chain with a non-finite log-likelihood on some sample."""
        from lm_eval_cola.runner import evaluate_many

        new = [c for c in dict.fromkeys(tuple(c) for c in chains) if c not in self.cache]
        jobs = [(k, chain) for chain in new for k in range(len(self.samples))]
        right: dict[Chain, list[bool]] = {c: [False] * len(self.samples) for c in new}
        finite: dict[Chain, bool] = {c: True for c in new}
        bar = tqdm(total=len(jobs), desc="calibration samples", disable=not progress,
                   leave=False)
        for start in range(0, len(jobs), JOBS_PER_FORWARD):
            part = jobs[start:start + JOBS_PER_FORWARD]
            answers = evaluate_many(self.lm.model, [(self.samples[k].evaluator, chain)
                                                    for k, chain in part])
            for (k, chain), responses in zip(part, answers, strict=True):
                judgement = self.judge.judge(self.samples[k].doc, responses)
                right[chain][k] = bool(judgement.correct)
                finite[chain] &= judgement.finite
            bar.update(len(part))
        bar.close()
        for chain in new:
            self.cache[chain] = right[chain] if finite[chain] else None
        return [self.cache[tuple(c)] for c in chains]

    def accuracy(self, chains: Sequence[Chain], progress: bool = False) -> list[float]:
        """Each chain's share of samples judged correct; -1 for a non-finite chain."""
        return [-1.0 if right is None else sum(right) / len(right)
                for right in self.correct(chains, progress)]


# ----------------------------------------------------------------------------- search


def score(accuracy: float, length: int, num_layers: int, length_penalty: float) -> float:
    """What the calibrated chain maximizes: accuracy minus ``length_penalty * len / L``."""
    return accuracy - length_penalty * length / num_layers


def pick(scored: dict[Chain, float], num_layers: int, length_penalty: float,
         tolerance: float = math.inf) -> Chain:
    """Among the chains whose accuracy is at least the full chain's minus ``tolerance``, the
    highest-scoring one (ties: shorter, then lexicographically smaller)."""
    floor = scored.get(full_chain(num_layers), -math.inf) - tolerance - 1e-12
    eligible = [c for c, v in scored.items() if v >= floor] or list(scored)
    return min(eligible, key=lambda c: (-score(scored[c], len(c), num_layers, length_penalty),
                                        len(c), c))


def search_chain(accuracy: Callable[[list[Chain]], list[float]], num_layers: int,
                 searcher: Any, seed: int, length_penalty: float,
                 tolerance: float) -> tuple[Chain, dict[Chain, float]]:
    """Drive ``searcher``'s ask/tell run with the task-level ``accuracy``; (the chosen
    chain, every evaluated chain's accuracy)."""
    from lm_eval_cola.searchers import Outcome

    _, run = searcher.start(num_layers, seed)
    full = full_chain(num_layers)
    seen: dict[Chain, float] = {}
    outcomes: list[Outcome] | None = None
    bar = tqdm(total=searcher.settings.budget, desc="chains", unit="chain")
    while True:
        try:
            chains = run.send(outcomes)  # type: ignore[arg-type]
        except StopIteration:
            break
        values = accuracy(chains)
        seen.update(zip(chains, values, strict=True))
        reference = seen.get(full, -math.inf)  # asked first by every searcher
        outcomes = [Outcome(correct=v >= 0 and v >= reference - tolerance - 1e-12,
                            score=score(v, len(c), num_layers, length_penalty) if v >= 0
                            else -math.inf) for c, v in zip(chains, values, strict=True)]
        bar.update(len(chains))
        best = pick(seen, num_layers, length_penalty, tolerance)
        bar.set_postfix_str(f"best {format_chain(best)} acc {seen[best]:.3f}")
    bar.close()
    return pick(seen, num_layers, length_penalty, tolerance), seen


# ----------------------------------------------------------------------------- consensus


def consensus_chain(records: Sequence[Any], num_layers: int, length_penalty: float,
                    tolerance: float = math.inf) -> tuple[Chain, float, int]:
    """(the chain correct on the most samples (see the module docstring), its correct
    share, the samples counted)."""
    correct: Counter[Chain] = Counter()
    for record in records:
        if record.num_layers != num_layers:
            raise UserError(f"records of a {record.num_layers}-layer model cannot calibrate "
                            f"a {num_layers}-layer one")
        if record.chains:
            texts = {e["chain"] for e in record.chains if e.get("correct")}
        else:  # record_chains=best: the correct chains it kept
            texts = set(record.correct_chains) | set(record.pareto)
            if record.best_correct:
                texts.add(record.best_chain)
            if record.full_correct:
                texts.add(format_chain(full_chain(num_layers)))
        for text in texts:
            correct[parse_chain(text, num_layers, 4 * num_layers)] += 1
    full = full_chain(num_layers)
    correct.setdefault(full, 0)
    n = len(records)
    shares = {c: k / n for c, k in correct.items()}
    best = pick(shares, num_layers, length_penalty, tolerance)
    return best, shares[best], n


def read_calibration_records(paths: Sequence[str], task: Any) -> list[Any]:
    """Every sample's latest record, refusing any of the evaluated split's docs."""
    from pathlib import Path

    from lm_eval_cola.compat.lm_eval_private import hash_doc
    from lm_eval_cola.records import latest_per_sample, read_records

    records = []
    for path in paths:
        if not Path(path).is_file():
            raise UserError(f"records file {path!r} does not exist")
        records += read_records(path)
    records = latest_per_sample(records)
    if not records:
        raise UserError(f"no records in {', '.join(paths)}")
    evaluated = {hash_doc(doc) for doc in task.eval_docs}
    leaked = [r for r in records if r.doc_hash in evaluated]
    if leaked:
        raise UserError(f"{len(leaked)} of {len(records)} records are of docs of the split "
                        f"{task.config.task!r} is evaluated on ({evaluated_split(task)}); "
                        "allowed: records of a calibration split")
    return records


# ----------------------------------------------------------------------------- command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", required=True, help="one lm-eval task, e.g. arc_challenge")
    parser.add_argument("--split", default=None,
                        help="the calibration split (e.g. train, validation); never the "
                             "task's evaluated split")
    parser.add_argument("--out", required=True, help="the chain file to write (.json)")
    parser.add_argument("--model_args", default=None,
                        help="pretrained=...,dtype=... (default: the embedded model)")
    parser.add_argument("--limit", type=int, default=200,
                        help="calibration samples: the split's first N docs (default 200)")
    parser.add_argument("--searcher", default="greedy", help="a registered searcher")
    parser.add_argument("--budget", type=int, default=60, help="chains evaluated (default 60)")
    parser.add_argument("--settings", default="",
                        help="more searcher settings, key=value;key=value")
    parser.add_argument("--length_penalty", type=float, default=0.05,
                        help="score = accuracy - this * len / L (default 0.05)")
    parser.add_argument("--tolerance", type=float, default=0.0,
                        help="chains whose accuracy is >= the full chain's minus this are "
                             "eligible (and 'correct' for the searcher); default 0")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--num_fewshot", type=int, default=None)
    parser.add_argument("--metric", default=None, help="the task metric (default acc)")
    parser.add_argument("--include_path", default=None, help="folder of custom task YAMLs")
    parser.add_argument("--from-records", dest="from_records", nargs="+", default=None,
                        help="consensus of these oracle records instead of a search")


def _settings(text: str) -> dict[str, Any]:
    from lm_eval_cola.compat.lm_eval_private import parse_model_args

    return parse_model_args(text.replace(";", ",")) if text else {}


def run(args: argparse.Namespace) -> int:
    if args.length_penalty < 0 or args.tolerance < 0:
        raise UserError("--length_penalty and --tolerance must be >= 0")
    if args.from_records:
        return _run_consensus(args)
    if args.split is None:
        raise UserError("--split is required for a search; allowed: a split of the task "
                        "other than the evaluated one (e.g. train, validation)")
    from lm_eval_cola.compat.lm_eval_private import parse_model_args
    from lm_eval_cola.searchers import get_searcher

    settings = {"budget": args.budget, **_settings(args.settings)}
    try:
        searcher = get_searcher(args.searcher, **settings)
    except ValueError as err:
        raise UserError(str(err)) from None
    task = calibration_task(args.tasks, args.split, args.num_fewshot, args.include_path)
    from lm_eval_cola.models import ColaHFLM

    lm = ColaHFLM(**parse_model_args(args.model_args))
    evaluator = TaskEvaluator(lm, task, args.limit, args.metric)
    logger.info("calibrating on %d docs of %s/%s with %s", len(evaluator), args.tasks,
                args.split, searcher)
    chain, seen = search_chain(evaluator.accuracy, lm.num_layers, searcher, args.seed,
                               args.length_penalty, args.tolerance)
    full = full_chain(lm.num_layers)
    found = ChainFile.make(
        chain, lm.num_layers, model=lm.model_label, method=f"calibrate:{searcher.name}",
        task=args.tasks, split=args.split, samples=len(evaluator),
        settings={"searcher": searcher.settings_dict(), "seed": args.seed,
                  "length_penalty": args.length_penalty, "tolerance": args.tolerance,
                  "metric": evaluator.judge.metric, "num_fewshot": args.num_fewshot},
        score={"accuracy": seen[chain], "full_accuracy": seen[full],
               "objective": score(seen[chain], len(chain), lm.num_layers, args.length_penalty),
               "chains_evaluated": len(seen)})
    found.write(args.out)
    print(f"calibrated chain {found.chain} ({found.length}/{lm.num_layers} layers): "
          f"{evaluator.judge.metric} {seen[chain]:.4f} on {len(evaluator)} {args.split} docs "
          f"(full chain {seen[full]:.4f}; {len(seen)} chains evaluated) -> {args.out}")
    return 0


def _run_consensus(args: argparse.Namespace) -> int:
    task = load_task(args.tasks, args.include_path)
    records = read_calibration_records(args.from_records, task)
    num_layers = records[0].num_layers
    chain, share, n = consensus_chain(records, num_layers, args.length_penalty,
                                      args.tolerance)
    full_share = sum(r.full_correct for r in records) / n
    found = ChainFile.make(
        chain, num_layers, model=records[0].model, method="consensus", task=args.tasks,
        split=args.split, samples=n,
        settings={"records": list(args.from_records), "length_penalty": args.length_penalty,
                  "searcher": records[0].searcher},
        score={"correct_share": share, "full_correct_share": full_share})
    found.write(args.out)
    print(f"consensus chain {found.chain} ({found.length}/{num_layers} layers): correct on "
          f"{share:.4f} of {n} recorded samples (full chain {full_share:.4f}) -> {args.out}")
    return 0
