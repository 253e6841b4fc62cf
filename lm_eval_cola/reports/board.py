"""The board: one row per model x variant, from the results files and records of ``runs``.

Rows, so the numbers can be checked against the inputs:

- a row is one model x variant, where the variant is the searcher, the fixed chain, or the
  plain lm-eval model; results files of one row (same model, lm-eval model, model_args,
  limit and prompt and decoding settings: chat template, system instruction, few-shot,
  gen_kwargs, ``--samples``, see ``identity.EvalIdentity``) are merged task by task, the
  newest file winning a task both have; runs under other such settings are other rows,
  their settings column saying how.
- oracle rows are those whose run wrote ``cola_oracle`` (see ``runs.is_oracle``); they are
  ranked apart from the deployable rows (plain runs, fixed chains, searcher ``none``).
- average: the plain mean of the row's main metrics (a row missing a task is marked).
- depth: mean best-chain length / layers for searcher rows, the chain's length / layers for a
  fixed chain, 1 for a plain run; a router row's mean chain length / layers, and beside it its
  executed depth (``executed_depth_ratio``: with the feature layers its chains skip).
- series kind (``runs.series_kind``): full model, static chain, pruning baseline, router or
  oracle, from the newest file of the row. Evaluations/sample: distinct chains run per sample (1 for
  fixed chains and plain runs).
- findings (searcher rows, see ``summary.py``): the exact merge of the files' ``cola_summary``
  counts; recounted from the records where a file gives only some of its tasks or lacks the
  exact sums; only for old files without exact sums and without records, combined from their
  rounded means.
- wall time: the sum of lm-eval's ``total_evaluation_time_seconds`` over the row's files.
- per-task findings and the plots come from the records (see ``runs.run_records``); a
  searcher row's task columns show the metric and filter its records were judged by, where
  the results config does not name them (see ``runs``).
- seeds: searcher rows that differ only in their seed (``compare --seeds N``) are one row
  whose task metrics, average, depth, evaluations and findings are the mean over the seeds
  (± the sample standard deviation, with N; see ``findings``), wall time their sum; its
  ``members`` are the seeds' own rows. A variant run with one seed is a row as any other.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any

from lm_eval_cola.errors import UserError
from lm_eval_cola.reports.runs import (
    FULL_MODEL,
    PRUNING,
    STATIC_CHAIN,
    RunDirError,
    RunFile,
    TaskScore,
    load_runs,
    number,
    run_records,
)
from lm_eval_cola.results.identity import deciding_args
from lm_eval_cola.results.records import Record
from lm_eval_cola.results.summary import Summary

logger = logging.getLogger(__name__)

# model_args shown elsewhere or part of the variant's name: left out of the settings column.
SHOWN_ARGS = frozenset({"pretrained", "gguf_file", "searcher", "chain", "seed", "budget",
                        "router"})
SUMMARY_COUNTS = ("samples", "full_chain_right", "right_with_shorter_chain", "full_chain_wrong",
                  "wrong_fixed_by_some_chain")


@dataclass
class Row:
    model: str
    kind: str  # "search" | "chain" | "plain"
    variant: str
    oracle: bool
    lm_eval_model: str
    settings: str  # budget, seed and other model_args, as text
    budget: int | None
    seed: int | None
    limit: Any
    scores: dict[str, TaskScore]
    depth_ratio: float | None
    evaluations: float | None
    wall_seconds: float | None
    sources: list[Path]
    summary: Summary | None = None  # exact findings, whenever the inputs allow
    legacy_summary: dict[str, Any] | None = None  # old files only: shares from rounded means
    owner: dict[str, str] = field(default_factory=dict)  # record task -> column
    records: list[Record] = field(default_factory=list)
    task_summaries: dict[str, Summary] = field(default_factory=dict)
    average: float | None = None
    missing_tasks: list[str] = field(default_factory=list)
    family: str = ""  # what rows of one variant run with other seeds share
    members: list[Row] = field(default_factory=list)  # a seed row's seeds' rows, by seed
    score_sd: dict[str, float] = field(default_factory=dict)  # seed rows: sd over seeds
    series_kind: str = FULL_MODEL  # see runs.series_kind
    source_method: str | None = None  # the chain file's method, where it came from one
    executed_depth_ratio: float | None = None  # router rows: the depth a deployment pays
    # router rows: per task, the executed depth of the file that gave the task's score
    task_executed: dict[str, float] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return [m.seed for m in self.members if m.seed is not None]

    @property
    def label(self) -> str:
        return self.variant if not self.settings else f"{self.variant} ({self.settings})"

    @property
    def findings(self) -> dict[str, Any] | None:
        """The row's findings as ``Summary.as_dict`` writes them."""
        return self.summary.as_dict() if self.summary is not None else self.legacy_summary

    def _finding(self, key: str) -> float | None:
        # a row whose chains no gold answer chose found nothing: no finding, rather than 0%
        if self.members:
            return _mean([m._finding(key) for m in self.members])
        return number((self.findings or {}).get(key)) if self.oracle else None

    @property
    def shorter_when_right(self) -> float | None:
        return self._finding("shorter_when_right")

    @property
    def fixed_when_wrong(self) -> float | None:
        return self._finding("fixed_when_wrong")

    def records_of(self, task: str) -> list[Record]:
        """The records under a column: the task's, or its group's subtasks'."""
        return [r for r in self.records if self.owner.get(r.task, r.task) == task]

    def task_depth(self, task: str) -> float | None:
        """Mean depth on one task: from its records for searcher rows."""
        if self.members:
            return _mean([m.task_depth(task) for m in self.members])
        if task in self.task_summaries:
            return number(self.task_summaries[task].as_dict()["mean_depth_ratio"])
        return self.depth_ratio if self.kind != "search" else None

    def executed_depth(self, task: str) -> float | None:
        """The depth the row executed on one task, as the depth plot places it: a router's
        executed depth (that of the file that gave the task's score: the mean over that
        file's samples), else ``task_depth`` (an oracle's: the depth of its best chains, not
        the layers its search ran)."""
        if task in self.task_executed:
            return self.task_executed[task]
        if self.executed_depth_ratio is not None:
            return self.executed_depth_ratio
        return self.task_depth(task)

    @property
    def kind_label(self) -> str:
        """The series kind, with the chain file's method where one gave the chain."""
        if self.source_method and self.series_kind in (STATIC_CHAIN, PRUNING):
            return f"{self.series_kind} ({self.source_method})"
        return self.series_kind


@dataclass
class Board:
    rows: list[Row]  # deployable rows by average, then oracle rows by average
    tasks: list[str]
    warnings: list[str]
    errors: list[str]

    @property
    def deployable(self) -> list[Row]:
        return [r for r in self.rows if not r.oracle]

    @property
    def oracles(self) -> list[Row]:
        return [r for r in self.rows if r.oracle]

    def settings_of(self, row: Row) -> str:
        """The row's settings, with its limit where the rows' limits differ."""
        if len({json.dumps(r.limit) for r in self.rows}) < 2:
            return row.settings
        return ", ".join(p for p in (row.settings, f"limit={row.limit}") if p)

    def metric_of(self, task: str) -> str:
        labels = {row.scores[task].metric_label for row in self.rows if task in row.scores}
        return " / ".join(sorted(labels))


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mean(values: list[float | None]) -> float | None:
    """The mean, None when a value is missing."""
    if not values or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None) / len(values)


def combine_summaries(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Findings of several runs with disjoint samples from their counts and rounded means:
    the last resort, for results files written before summaries carried exact sums and
    whose records are not at hand (the means are weighted by samples)."""
    total = {k: sum(int(p.get(k) or 0) for p in parts) for k in SUMMARY_COUNTS}
    n = total["samples"]

    def mean(key: str) -> float | None:
        if not n or any(p.get(key) is None for p in parts if p.get("samples")):
            return None
        return round(sum(float(p[key]) * int(p["samples"]) for p in parts if p["samples"]) / n, 4)

    oracle_right = total["full_chain_right"] + total["wrong_fixed_by_some_chain"]
    return {
        **total,
        "shorter_when_right": _share(total["right_with_shorter_chain"], total["full_chain_right"]),
        "fixed_when_wrong": _share(total["wrong_fixed_by_some_chain"], total["full_chain_wrong"]),
        "oracle_accuracy": _share(oracle_right, n),
        "full_chain_accuracy": _share(total["full_chain_right"], n),
        "mean_depth_ratio": mean("mean_depth_ratio"),
        "mean_evaluations": mean("mean_evaluations"),
    }


def merge_exact(parts: list[dict[str, Any]]) -> Summary | None:
    """The exact merge of summaries written with their sums; None when one lacks them."""
    parsed = [s for s in (Summary.from_dict(p) for p in parts) if s is not None]
    if not parsed or len(parsed) < len(parts):
        return None
    try:
        return reduce(Summary.merge, parsed)
    except ValueError as err:  # different layer counts: not one model, cannot be one row
        logger.debug("summaries do not merge: %s", err)
        return None


def _settings_text(run: RunFile) -> tuple[str, int | None]:
    parts = []
    budget = run.settings.get("budget") if run.kind == "search" else None
    if run.kind == "search" and run.variant != "none":  # none: one chain, no randomness
        parts += [f"budget={budget}"] * (budget is not None)
        parts += [f"seed={run.seed}"] * (run.seed is not None)
    extra = {k: v for k, v in deciding_args(run.model_args).items() if k not in SHOWN_ARGS}
    parts += [f"{k}={v}" for k, v in sorted(extra.items())]
    parts += run.evaluation.describe()  # chat template, 5-shot, gen_kwargs ...: other rows
    return ", ".join(parts), budget


def _family(run: RunFile) -> str:
    args = {k: v for k, v in deciding_args(run.model_args).items() if k != "seed"}
    return json.dumps([run.model, run.kind, run.variant, run.oracle, run.lm_eval_model, args,
                       run.limit, run.evaluation.key], sort_keys=True, default=str)


def _new_row(used: list[tuple[RunFile, list[str]]], scores: dict[str, TaskScore]) -> Row:
    first = used[0][0]
    settings, budget = _settings_text(first)
    walls = [r.wall_seconds for r, _ in used]
    wall = None if None in walls else round(sum(w for w in walls if w is not None), 3)
    return Row(
        model=first.model, kind=first.kind, variant=first.variant, oracle=first.oracle,
        lm_eval_model=first.lm_eval_model, settings=settings, budget=budget,
        seed=first.seed if first.kind == "search" else None, limit=first.limit,
        scores=scores, depth_ratio=first.depth_ratio,
        evaluations=None if first.kind == "search" else 1.0,
        wall_seconds=wall,
        sources=[r.path for r, _ in used],
        owner={k: v for r, _ in reversed(used) for k, v in r.owner.items()},
        family=_family(first), series_kind=first.series_kind,
        source_method=first.source_method, executed_depth_ratio=first.executed_depth_ratio,
        task_executed={t: r.executed_depth_ratio for r, mine in used for t in mine
                       if r.executed_depth_ratio is not None},
    )


def _judged_scores(row: Row, run: RunFile, mine: list[str], records: list[Record]) -> None:
    """A searcher run's columns under the metric and filter its records were judged by,
    where its results config does not name them."""
    for task in mine:
        judged = {(r.oracle_metric, r.oracle_filter) for r in records
                  if run.owner.get(r.task, r.task) == task}
        if len(judged) != 1:
            continue
        metric, filt = judged.pop()
        metric = run.oracle_metric or metric or run.model_args.get("oracle_metric")
        filt = run.oracle_filter or filt or run.model_args.get("oracle_filter")
        score = run.rescore(task, metric, filt) if metric or filt else None
        if score is not None:
            row.scores[task] = score


def _add_search_findings(row: Row, used: list[tuple[RunFile, list[str]]], with_records: bool,
                         warnings: list[str]) -> None:
    records: list[Record] = []
    if with_records:
        for run, mine in used:
            try:
                mine_records = run_records(run, mine)
                records += mine_records
                _judged_scores(row, run, mine, mine_records)
            except UserError as err:  # missing or corrupt records: the row stays, unplotted
                warnings.append(f"{err}; no per-task findings or plots for this row")
                records = []
                break
    row.records = records
    for task, score in row.scores.items():
        task_records = row.records_of(task)
        if task_records:
            row.task_summaries[task] = Summary.from_records(task_records)
            if score.samples is not None and len(task_records) < score.samples:
                warnings.append(f"{row.model} {row.variant}: {len(task_records)} records "
                                f"for {score.samples} samples of {task}")
    # a file superseded for some of its tasks: its summary counts samples not in this row
    partial = any(len(mine) < len(run.tasks) for run, mine in used)
    written = [run.summary for run, _ in used if run.summary is not None]
    whole = not partial and len(written) == len(used)
    row.summary = merge_exact(written) if whole else None
    if row.summary is None and records:
        row.summary = Summary.from_records(records)
    elif row.summary is None and whole:
        row.legacy_summary = written[0] if len(written) == 1 else combine_summaries(written)
    elif row.summary is None:
        warnings.append(f"{row.model} {row.variant}: no findings (no cola_summary "
                        "covering exactly its tasks, and no records)")
    if row.findings:
        row.depth_ratio = number(row.findings.get("mean_depth_ratio"))
        row.evaluations = number(row.findings.get("mean_evaluations"))


def build_rows(runs: list[RunFile], with_records: bool = True) -> tuple[list[Row], list[str]]:
    """Rows from results files (see the module docstring) and warnings met on the way."""
    warnings: list[str] = []
    groups: dict[tuple[Any, ...], list[RunFile]] = {}
    for run in runs:
        groups.setdefault(run.key, []).append(run)
    rows: list[Row] = []
    for members in groups.values():
        members.sort(key=lambda r: r.order, reverse=True)  # newest first
        scores: dict[str, TaskScore] = {}
        used: list[tuple[RunFile, list[str]]] = []
        for run in members:
            mine = [t for t in run.tasks if t not in scores]
            if not mine:
                warnings.append(f"{run.path} is superseded by newer results of the same run")
                continue
            scores.update({t: run.scores[t] for t in mine})
            used.append((run, mine))
        row = _new_row(used, scores)
        if row.kind == "search":
            _add_search_findings(row, used, with_records, warnings)
        rows.append(row)
    columns = task_columns(rows)
    for row in rows:
        values = [row.scores[t].value for t in columns if t in row.scores]
        present = [v for v in values if v is not None]
        row.average = sum(present) / len(present) if present else None
        row.missing_tasks = [t for t in columns if t not in row.scores]
    rows = group_seeds(rows, columns)
    # oracle rows are upper bounds: never ranked among the deployable rows
    rows.sort(key=lambda r: (r.oracle, r.average is None, -(r.average or 0.0), r.model, r.label))
    return rows, warnings


def seeds_text(seeds: list[int]) -> str:
    """``N=3 seeds 1234-1236``, or the seeds one by one where they are not consecutive."""
    ordered = sorted(seeds)
    consecutive = ordered == list(range(ordered[0], ordered[0] + len(ordered)))
    listed = f"{ordered[0]}-{ordered[-1]}" if consecutive else "/".join(map(str, ordered))
    return f"N={len(ordered)} seeds {listed}"


def _sd(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def seed_row(members: list[Row], columns: list[str]) -> Row:
    """One row for a variant run with several seeds: means over the seeds (see above)."""
    members = sorted(members, key=lambda r: r.seed or 0)
    first = members[0]
    scores: dict[str, TaskScore] = {}
    spread: dict[str, float] = {}
    for task in columns:
        have = [m.scores[task] for m in members if task in m.scores]
        values = [s.value for s in have if s.value is not None]
        if not have:
            continue
        mean = sum(values) / len(values) if values else None
        scores[task] = TaskScore(task, have[0].metric, mean, None, have[0].samples)
        if values:
            spread[task] = _sd(values)
    present = [s.value for t, s in scores.items() if s.value is not None]
    walls = [m.wall_seconds for m in members]
    settings = ", ".join(p for p in first.settings.split(", ")
                         if not p.startswith("seed=")) if first.settings else ""
    return Row(
        model=first.model, kind=first.kind, variant=first.variant, oracle=first.oracle,
        lm_eval_model=first.lm_eval_model,
        settings=", ".join(p for p in (settings, seeds_text([m.seed or 0 for m in members]))
                           if p),
        budget=first.budget, seed=None, limit=first.limit, scores=scores,
        depth_ratio=_mean([m.depth_ratio for m in members]),
        evaluations=_mean([m.evaluations for m in members]),
        wall_seconds=None if None in walls else round(sum(w or 0.0 for w in walls), 3),
        sources=[p for m in members for p in m.sources],
        owner={k: v for m in members for k, v in m.owner.items()},
        records=[r for m in members for r in m.records],
        average=sum(present) / len(present) if present else None,
        missing_tasks=[t for t in columns if t not in scores], family=first.family,
        members=members, score_sd=spread, series_kind=first.series_kind,
        source_method=first.source_method,
        executed_depth_ratio=None if first.executed_depth_ratio is None
        else _mean([m.executed_depth_ratio for m in members]),
    )


def group_seeds(rows: list[Row], columns: list[str]) -> list[Row]:
    """Searcher rows that differ only in their seed, as one seed row each (order kept)."""
    families: dict[str, list[Row]] = {}
    for row in rows:
        if row.kind == "search" and row.variant != "none" and row.seed is not None:
            families.setdefault(row.family, []).append(row)
    out: list[Row] = []
    for row in rows:
        family = families.get(row.family) if row.kind == "search" else None
        if not family or len(family) < 2 or not any(row is r for r in family):
            out.append(row)
        elif row is family[0]:
            out.append(seed_row(family, columns))
    return out


def task_columns(rows: list[Row]) -> list[str]:
    """Tasks in order of first appearance (rows in input order)."""
    seen: dict[str, None] = {}
    for row in rows:
        for task in row.scores:
            seen.setdefault(task, None)
    return list(seen)


def build_board(run_dirs: list[str | Path], with_records: bool = True) -> Board:
    """The board of ``run_dirs``; RunDirError when no directory gives a row."""
    runs, errors = load_runs(run_dirs)
    if not runs:
        names = ", ".join(repr(str(d)) for d in run_dirs)
        raise RunDirError(f"no usable lm-eval results in {names} ({'; '.join(errors)})")
    rows, warnings = build_rows(runs, with_records=with_records)
    return Board(rows=rows, tasks=task_columns(rows), warnings=warnings, errors=errors)
