"""One chain for a whole task, found on a calibration split (the library of
``lm-eval-cola calibrate``; its arguments and run are in ``cli/calibrate.py``).

Oracle runs pick a chain per test sample with the gold answer; a deployable chain must be
chosen without it. ``calibrate`` searches one chain for all samples of a task on another
split (``--split train`` or ``validation``) and writes it as a chain file; ``cola_hf
chain=FILE`` then evaluates it on the task's own evaluation split. Asking to calibrate on
the evaluated split (the task's ``test_split``, or its ``validation_split`` when it has no
test split) is refused in one line.

Search: any registered searcher (``greedy`` by default), driven through its ask/tell run
(``Searcher.start``) over a *task-level* evaluator: a chain's outcome is its accuracy on the
calibration samples, by the task's own metric (``judge.TaskJudge``), computed by the fast
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

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from lm_eval_cola.chains.syntax import Chain, format_chain, full_chain, parse_chain
from lm_eval_cola.errors import UserError

logger = logging.getLogger(__name__)

JOBS_PER_FORWARD = 64  # (sample, chain) rows per batched forward: bounds activation memory


# ----------------------------------------------------------------------------- splits


def load_task(name: str, include_path: str | None = None) -> Any:
    """lm-eval's task object of ``name`` (exactly one task, not a group)."""
    from lm_eval_cola.compat import local_data
    from lm_eval_cola.search.judge import task_manager

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
        from lm_eval_cola.harness.requests import group_by_doc
        from lm_eval_cola.search.judge import TaskJudge

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
        # one sample per doc, as a searching model groups lm-eval's requests
        by_doc = sorted(group_by_doc(task.instances), key=lambda sample: sample.key)
        if not by_doc:
            raise UserError(f"task {task.config.task!r} has no docs in its calibration split")
        self.kind = "generate_until" if self.judge.output_type == "generate_until" \
            else "loglikelihood"
        share = max(cache_bytes // len(by_doc), 1 << 20)
        self.samples = [_Sample(s.doc, lm.runner.evaluator(self.kind, s.requests, share),
                                s.requests) for s in by_doc]
        self.cache: dict[Chain, list[bool] | None] = {}  # None: a non-finite answer

    def __len__(self) -> int:
        return len(self.samples)

    def correct(self, chains: Sequence[Chain], progress: bool = False
                ) -> list[list[bool] | None]:
        """Per chain, whether each sample is judged correct under it (memoized); None for a
        chain with a non-finite log-likelihood on some sample."""
        from lm_eval_cola.engine.runner import evaluate_many

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
    from lm_eval_cola.search.searchers import Outcome

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
    from lm_eval_cola.results.records import latest_per_sample, read_records

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
