"""The leaderboard: one table over lm-eval result files and the cola per-sample records.

``lm-eval-cola leaderboard RUN_DIR [RUN_DIR ...] --out board/`` reads every lm-eval results
file (``results*.json``) under the given folders, any ``cola_*`` run and any plain run such as
``--model hf`` (a baseline row), and writes ``leaderboard.md``, ``leaderboard.csv``,
``leaderboard.html`` (self-contained: inline CSS/JS, plots as data URIs) and the plots.
Nothing here runs a model: every number comes from the stored files.

Rows are model x variant, where the variant is the searcher (oracle rows), the fixed chain, or
the plain lm-eval model. Result files of the same row (same lm-eval model, model_args and limit)
are merged task by task, the newest file winning a task both have.

Rules, so the numbers can be checked against the inputs:

- main metric of a task: ``acc`` where the task has it, else ``exact_match``, else the task's
  first metric; of that metric the filter ``none`` if present, else the first filter listed
  (gsm8k: ``exact_match,strict-match``). Its stderr is lm-eval's ``<metric>_stderr,<filter>``.
- average: the plain mean of the row's main metrics (a row missing a task is marked).
- depth: mean best-chain length / layers for searcher rows, the chain's length / layers for a
  fixed chain, 1 for a plain run. Evaluations/sample: distinct chains run per sample (1 for
  fixed chains and plain runs).
- findings (searcher rows only, see ``summary.py``): from the run's ``cola_summary``; merged
  files add their counts; where a file gives only some of its tasks, they are recounted from
  the records.
- wall time: the sum of lm-eval's ``total_evaluation_time_seconds`` over the row's files.
- per-task findings and the plots come from the records: those of the row's tasks (for a
  group, of its subtasks) with ``doc_id`` below the run's effective sample count (lm-eval's
  ``--limit`` takes the first docs), the last record of a sample winning.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_eval_cola.cli import subcommand
from lm_eval_cola.errors import UserError

logger = logging.getLogger(__name__)

RESULTS_GLOB = "results*.json"
# model_args that never change a result: left out when deciding which files make one row.
_NEUTRAL_ARGS = {"device", "batch_size", "max_batch_size", "records", "prefix_cache_bytes",
                 "search_batch", "fast", "parallelize", "trust_remote_code"}
# model_args shown elsewhere or part of the variant's name: left out of the settings column.
_SHOWN_ARGS = {"pretrained", "gguf_file", "searcher", "chain", "seed", "budget"}
ORACLE_NOTE = ("oracle: each sample's chain was searched with that sample's gold answer as "
               "the reward, so its accuracy is an upper bound, not a fair score")
SUMMARY_COUNTS = ("samples", "full_chain_right", "right_with_shorter_chain", "full_chain_wrong",
                  "wrong_fixed_by_some_chain")


class RunDirError(UserError):
    """A run directory (or results file) that is missing or cannot be read."""


# ---------------------------------------------------------------------------- reading


@dataclass
class TaskScore:
    task: str
    metric: str  # "acc,none", "exact_match,strict-match", ...
    value: float | None
    stderr: float | None
    samples: int | None  # lm-eval's effective sample count

    @property
    def metric_label(self) -> str:
        name, _, filt = self.metric.partition(",")
        return name if filt in ("", "none") else f"{name}, {filt}"


@dataclass
class RunFile:
    """One lm-eval results file, read and checked."""

    path: Path
    data: dict[str, Any]
    model: str  # the model's name (pretrained label)
    lm_eval_model: str  # config.model: hf, cola_hf, cola_mcts, ...
    kind: str  # "search" | "chain" | "plain"
    variant: str  # searcher name, "chain <text>" or the lm-eval model
    model_args: dict[str, Any]
    limit: Any
    tasks: list[str]
    scores: dict[str, TaskScore]
    summary: dict[str, Any] | None
    wall_seconds: float | None
    depth_ratio: float | None
    num_layers: int | None
    seed: int | None
    settings: dict[str, Any]
    owner: dict[str, str] = field(default_factory=dict)  # subtask -> its top-level column

    @property
    def key(self) -> tuple:
        args = {k: v for k, v in self.model_args.items() if k not in _NEUTRAL_ARGS}
        return (self.model, self.kind, self.variant, self.lm_eval_model,
                json.dumps(args, sort_keys=True, default=str), json.dumps(self.limit))

    @property
    def order(self) -> tuple:
        """Newest last: lm-eval's start time (``date``), then the file's mtime."""
        return (_number(self.data.get("date")) or 0.0, self.path.stat().st_mtime, str(self.path))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def parse_model_args(value: Any) -> dict[str, Any]:
    """lm-eval stores model_args as given: a ``k=v,k=v`` string or a dict. Values come back
    as text either way, so the two forms of the same arguments compare equal."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if not value:
        return {}
    args: dict[str, Any] = {}
    for part in str(value).split(","):
        key, sep, val = part.partition("=")
        if sep and key.strip():
            args[key.strip()] = val.strip()
    return args


def main_metric(task_results: dict[str, Any]) -> str | None:
    """The task's main metric key ("metric,filter"); see the module docstring."""
    keys = [k for k in task_results
            if "," in k and not k.partition(",")[0].endswith("_stderr")
            and _number(task_results[k]) is not None]

    def pick(name: str) -> str | None:
        found = [k for k in keys if k.partition(",")[0] == name]
        for key in found:
            if key.partition(",")[2] == "none":
                return key
        return found[0] if found else None

    return pick("acc") or pick("exact_match") or (keys[0] if keys else None)


def top_level_tasks(data: dict[str, Any]) -> list[str]:
    """Tasks and groups of a results file that are not a listed group's subtask."""
    groups = data.get("group_subtasks") or {}
    inner = {sub for subs in groups.values() for sub in (subs or [])}
    return [t for t in data["results"] if t not in inner]


def task_owners(data: dict[str, Any], tasks: list[str]) -> dict[str, str]:
    """Each task, and each subtask of a group, -> the top-level task (column) it is under."""
    groups = data.get("group_subtasks") or {}
    owner: dict[str, str] = {}
    for top in tasks:
        todo = [top]
        while todo:
            name = todo.pop()
            if name not in owner:
                owner[name] = top
                todo += list(groups.get(name) or [])
    return owner


def _model_label(config: dict[str, Any], data: dict[str, Any], args: dict[str, Any]) -> str:
    if config.get("cola_model"):
        return str(config["cola_model"])
    name = str(data.get("model_name") or args.get("pretrained") or config.get("model"))
    pretrained = args.get("pretrained")
    if pretrained:
        try:  # the embedded default model run through plain `--model hf`
            from lm_eval_cola.default_model import converted_folder, default_model

            embedded = default_model()
            if ((Path(str(pretrained)) == Path(embedded.folder)
                 and args.get("gguf_file") == embedded.gguf_file)
                    or Path(str(pretrained)) == converted_folder(embedded)):
                return embedded.name
        except UserError:
            pass
    return name


def read_run_file(path: Path) -> RunFile:
    """One results file, or RunDirError saying in one line what is wrong with it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise RunDirError(f"cannot read {str(path)!r}: {err.strerror}") from None
    except ValueError as err:
        raise RunDirError(f"{str(path)!r} is not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict) \
            or not isinstance(data.get("config"), dict):
        raise RunDirError(f"{str(path)!r} is not an lm-eval results file "
                          "(no 'results' and 'config' objects)")
    if not data["results"]:
        raise RunDirError(f"{str(path)!r} has no task results")
    config = data["config"]
    lm_eval_model = str(config.get("model") or "unknown")
    args = parse_model_args(config.get("model_args"))
    samples = {t: (v or {}).get("effective") for t, v in (data.get("n-samples") or {}).items()}
    scores: dict[str, TaskScore] = {}
    tasks = top_level_tasks(data)
    for task in tasks:
        task_results = data["results"][task]
        if not isinstance(task_results, dict):
            raise RunDirError(f"{str(path)!r}: results of {task!r} are not an object")
        metric = main_metric(task_results)
        if metric is None:
            continue  # a group without aggregate metrics, or a task with none numeric
        name, _, filt = metric.partition(",")
        stderr = _number(task_results.get(f"{name}_stderr,{filt}"))
        count = samples.get(task) or task_results.get("sample_len")
        scores[task] = TaskScore(task, metric, _number(task_results[metric]), stderr,
                                 int(count) if count is not None else None)
    if not scores:
        raise RunDirError(f"{str(path)!r} has no task with a numeric metric")
    summary = config.get("cola_summary") if isinstance(config.get("cola_summary"), dict) else None
    if config.get("cola_searcher"):
        kind, variant = "search", str(config["cola_searcher"])
        depth = _number((summary or {}).get("mean_depth_ratio"))
    elif "cola_chain" in config:
        kind, variant = "chain", f"chain {config['cola_chain']}"
        depth = _number(config.get("cola_depth_ratio"))
    else:
        kind, variant, depth = "plain", lm_eval_model, 1.0
    settings = dict(config.get("cola_settings") or {})
    seed = config.get("cola_seed")
    return RunFile(
        path=path, data=data, model=_model_label(config, data, args),
        lm_eval_model=lm_eval_model, kind=kind, variant=variant, model_args=args,
        limit=config.get("limit"), tasks=[t for t in tasks if t in scores], scores=scores,
        summary=summary, wall_seconds=_number(data.get("total_evaluation_time_seconds")),
        depth_ratio=depth, num_layers=config.get("cola_num_layers"),
        seed=int(seed) if isinstance(seed, int) else None, settings=settings,
        owner=task_owners(data, [t for t in tasks if t in scores]),
    )


def find_result_files(run_dir: str | Path) -> list[Path]:
    """The results files of a run directory (or the file itself); RunDirError if none."""
    path = Path(run_dir)
    if not path.exists():
        raise RunDirError(f"run directory {str(path)!r} does not exist")
    if path.is_file():
        if path.suffix != ".json":
            raise RunDirError(f"{str(path)!r} is neither a run directory nor a results .json")
        return [path]
    files = sorted(p for p in path.rglob(RESULTS_GLOB) if p.is_file())
    if not files:
        raise RunDirError(f"no lm-eval results files ({RESULTS_GLOB}) under {str(path)!r}")
    return files


def load_runs(run_dirs: list[str | Path]) -> tuple[list[RunFile], list[str]]:
    """Every readable results file under ``run_dirs``, and one error line per problem.

    A directory that is missing, holds no results or only unreadable ones is an error, and
    so is each unreadable file; the other directories and files are still read.
    """
    runs: list[RunFile] = []
    errors: list[str] = []
    for run_dir in run_dirs:
        try:
            files = find_result_files(run_dir)
        except RunDirError as err:
            errors.append(str(err))
            continue
        good = 0
        for path in files:
            try:
                runs.append(read_run_file(path))
                good += 1
            except RunDirError as err:
                errors.append(str(err))
        if not good and len(files) > 1:
            errors.append(f"no readable lm-eval results under {str(run_dir)!r}")
    return runs, errors


# ---------------------------------------------------------------------------- records


def find_records_files(run: RunFile) -> list[Path] | None:
    """The records files of a searcher run (one, or one a data parallel rank): named in
    its config, each looked for beside the results file first (a moved run folder), then
    at the recorded path. None when any of them is missing."""
    config = run.data["config"]
    recorded = config.get("cola_records_files") or (
        [config["cola_records"]] if config.get("cola_records") else [])
    found = []
    for name in recorded:
        beside = run.path.parent / Path(name).name
        match = next((c for c in (beside, Path(name)) if c.is_file()), None)
        if match is None:
            return None
        found.append(match)
    return found or None


def run_records(run: RunFile, tasks: list[str]) -> list[dict[str, Any]]:
    """The records behind ``tasks`` of a searcher run (see the module docstring)."""
    from lm_eval_cola.records import latest_per_sample, read_records

    paths = find_records_files(run)
    if paths is None:
        config = run.data["config"]
        raise RunDirError(f"records of {str(run.path)!r} not found "
                          f"({config.get('cola_records_files') or config.get('cola_records')!r})")
    samples = {t: (v or {}).get("effective") for t, v in (run.data.get("n-samples") or {}).items()}

    def wanted(record: dict[str, Any]) -> bool:
        task = str(record["task"])
        count = samples.get(task)
        in_limit = count is None or int(record["doc_id"]) < int(count)
        return run.owner.get(task) in tasks and in_limit

    return latest_per_sample([r for path in paths for r in read_records(path) if wanted(r)])


# ---------------------------------------------------------------------------- rows


@dataclass
class Row:
    model: str
    kind: str
    variant: str
    lm_eval_model: str
    settings: str  # budget, seed and other model_args, as text
    budget: int | None
    seed: int | None
    limit: Any
    scores: dict[str, TaskScore]
    depth_ratio: float | None
    evaluations: float | None
    summary: dict[str, Any] | None  # the row's findings (counts and shares)
    wall_seconds: float | None
    sources: list[Path]
    owner: dict[str, str] = field(default_factory=dict)  # record task -> column
    records: list[dict[str, Any]] = field(default_factory=list)
    task_summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    average: float | None = None
    missing_tasks: list[str] = field(default_factory=list)

    @property
    def oracle(self) -> bool:
        # searcher "none" runs the full chain only: no gold answer picks anything
        return self.kind == "search" and self.variant != "none"

    @property
    def label(self) -> str:
        return self.variant if not self.settings else f"{self.variant} ({self.settings})"

    @property
    def shorter_when_right(self) -> float | None:
        # a row that searched nothing found nothing: no finding, rather than 0%
        return (self.summary or {}).get("shorter_when_right") if self.oracle else None

    @property
    def fixed_when_wrong(self) -> float | None:
        return (self.summary or {}).get("fixed_when_wrong") if self.oracle else None

    def records_of(self, task: str) -> list[dict[str, Any]]:
        """The records under a column: the task's, or its group's subtasks'."""
        return [r for r in self.records if self.owner.get(r["task"], r["task"]) == task]

    def task_depth(self, task: str) -> float | None:
        """Mean depth on one task: from its records for searcher rows."""
        if task in self.task_summaries:
            return self.task_summaries[task]["mean_depth_ratio"]
        return self.depth_ratio if self.kind != "search" else None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def combine_summaries(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Findings of several runs with disjoint samples, from their counts (used when their
    records are not at hand; the means are weighted by samples, from rounded inputs)."""
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


def _settings_text(run: RunFile) -> tuple[str, int | None]:
    parts = []
    budget = run.settings.get("budget") if run.kind == "search" else None
    if run.kind == "search" and run.variant != "none":  # none: one chain, no randomness
        parts += [f"budget={budget}"] * (budget is not None)
        parts += [f"seed={run.seed}"] * (run.seed is not None)
    extra = {k: v for k, v in run.model_args.items()
             if k not in _SHOWN_ARGS and k not in _NEUTRAL_ARGS}
    parts += [f"{k}={v}" for k, v in sorted(extra.items())]
    return ", ".join(parts), budget


def build_rows(runs: list[RunFile], with_records: bool = True) -> tuple[list[Row], list[str]]:
    """Rows from results files (see the module docstring) and warnings met on the way."""
    from lm_eval_cola.summary import Summary

    warnings: list[str] = []
    groups: dict[tuple, list[RunFile]] = {}
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
        first = used[0][0]
        settings, budget = _settings_text(first)
        wall = [r.wall_seconds for r, _ in used]
        row = Row(
            model=first.model, kind=first.kind, variant=first.variant,
            lm_eval_model=first.lm_eval_model, settings=settings, budget=budget,
            seed=first.seed if first.kind == "search" else None, limit=first.limit,
            scores=scores, depth_ratio=first.depth_ratio,
            evaluations=None if first.kind == "search" else 1.0, summary=None,
            wall_seconds=None if any(w is None for w in wall) else round(sum(wall), 3),
            sources=[r.path for r, _ in used],
            owner={k: v for r, _ in reversed(used) for k, v in r.owner.items()},
        )
        if first.kind == "search":
            records: list[dict[str, Any]] = []
            records_ok = with_records
            if with_records:
                for run, mine in used:
                    try:
                        records += run_records(run, mine)
                    except UserError as err:
                        warnings.append(f"{err}; no per-task findings or plots for this row")
                        records_ok = False
                        break
            if not records_ok:
                records = []
            row.records = records
            for task in scores:
                task_records = row.records_of(task)
                if task_records:
                    row.task_summaries[task] = Summary.from_records(task_records).as_dict()
                    expected = scores[task].samples
                    if expected is not None and len(task_records) < expected:
                        warnings.append(f"{row.model} {row.variant}: {len(task_records)} records "
                                        f"for {expected} samples of {task}")
            partial = any(len(mine) < len(run.tasks) for run, mine in used)
            summaries = [run.summary for run, _ in used]
            whole = not partial and all(s is not None for s in summaries)
            if whole and len(summaries) == 1:
                row.summary = summaries[0]
            elif records:  # several files: recount exactly from their records
                row.summary = Summary.from_records(records).as_dict()
            elif whole:
                row.summary = combine_summaries(summaries)  # type: ignore[arg-type]
            else:
                warnings.append(f"{row.model} {row.variant}: no findings (no cola_summary "
                                "covering exactly its tasks, and no records)")
            if row.summary:
                row.depth_ratio = _number(row.summary.get("mean_depth_ratio"))
                row.evaluations = _number(row.summary.get("mean_evaluations"))
        rows.append(row)
    columns = task_columns(rows)
    for row in rows:
        values = [row.scores[t].value for t in columns if t in row.scores]
        values = [v for v in values if v is not None]
        row.average = sum(values) / len(values) if values else None
        row.missing_tasks = [t for t in columns if t not in row.scores]
    rows.sort(key=lambda r: (r.average is None, -(r.average or 0.0), r.model, r.label))
    return rows, warnings


def task_columns(rows: list[Row]) -> list[str]:
    """Tasks in order of first appearance (rows in input order)."""
    seen: dict[str, None] = {}
    for row in rows:
        for task in row.scores:
            seen.setdefault(task, None)
    return list(seen)


@dataclass
class Board:
    rows: list[Row]
    tasks: list[str]
    warnings: list[str]
    errors: list[str]

    def settings_of(self, row: Row) -> str:
        """The row's settings, with its limit where the rows' limits differ."""
        if len({json.dumps(r.limit) for r in self.rows}) < 2:
            return row.settings
        return ", ".join(p for p in (row.settings, f"limit={row.limit}") if p)

    def metric_of(self, task: str) -> str:
        labels = {row.scores[task].metric_label for row in self.rows if task in row.scores}
        return " / ".join(sorted(labels))


def build_board(run_dirs: list[str | Path], with_records: bool = True) -> Board:
    """The leaderboard of ``run_dirs``; RunDirError when no directory gives a row."""
    runs, errors = load_runs(run_dirs)
    if not runs:
        names = ", ".join(repr(str(d)) for d in run_dirs)
        raise RunDirError(f"no usable lm-eval results in {names} ({'; '.join(errors)})")
    rows, warnings = build_rows(runs, with_records=with_records)
    return Board(rows=rows, tasks=task_columns(rows), warnings=warnings, errors=errors)


# ---------------------------------------------------------------------------- formatting


def fmt_value(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def fmt_score(score: TaskScore | None) -> str:
    if score is None:
        return "—"
    text = fmt_value(score.value)
    return text if score.stderr is None else f"{text} ± {score.stderr:.4f}"


def fmt_percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def fmt_average(row: Row) -> str:
    text = fmt_value(row.average)
    return f"{text} †" if row.missing_tasks and row.average is not None else text


def _evals(row: Row) -> str:
    return "—" if row.evaluations is None else f"{row.evaluations:g}"


def headers(board: Board) -> list[str]:
    return (["Model", "Variant", "Oracle", "Settings"]
            + [f"{t} ({board.metric_of(t)})" for t in board.tasks]
            + ["Average", "Depth", "Evals/sample", "Shorter when right", "Fixed when wrong",
               "Wall time"])


def row_cells(board: Board, row: Row) -> list[str]:
    return ([row.model, row.variant, "oracle" if row.oracle else "",
             board.settings_of(row) or "—"]
            + [fmt_score(row.scores.get(t)) for t in board.tasks]
            + [fmt_average(row), fmt_value(row.depth_ratio, 3), _evals(row),
               fmt_percent(row.shorter_when_right), fmt_percent(row.fixed_when_wrong),
               fmt_seconds(row.wall_seconds)])


def task_headers() -> list[str]:
    return ["Task", "Model", "Variant", "Samples", "Full-chain acc", "Oracle acc",
            "Shorter when right", "Fixed when wrong", "Depth", "Evals/sample"]


def task_rows(board: Board) -> list[list[str]]:
    """Per-task findings of the searcher rows, from their records."""
    out = []
    for task in board.tasks:
        for row in board.rows:
            s = row.task_summaries.get(task)
            if s is None:
                continue
            out.append([task, row.model, row.label, str(s["samples"]),
                        fmt_percent(s["full_chain_accuracy"]), fmt_percent(s["oracle_accuracy"]),
                        *(fmt_percent(s[k] if row.oracle else None)
                          for k in ("shorter_when_right", "fixed_when_wrong")),
                        fmt_value(s["mean_depth_ratio"], 3), f"{s['mean_evaluations']:g}"])
    return out


def _notes(board: Board) -> list[str]:
    limits = sorted({json.dumps(r.limit) for r in board.rows})
    notes = [
        "Sorted by average. " + ORACLE_NOTE + ".",
        "Main metric: acc where a task has it, else exact_match (first filter), else the "
        "task's first metric; ± is lm-eval's stderr. Depth: mean chain length / layers. "
        "Shorter when right: full chain right and a strictly shorter correct chain found. "
        "Fixed when wrong: full chain wrong and some chain right.",
        f"Samples per task (lm-eval --limit): {', '.join(limits)}.",
    ]
    if any(r.missing_tasks for r in board.rows):
        notes.append("† averaged over fewer tasks: the row lacks some task.")
    return notes


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(head: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_escape(h) for h in head) + " |",
             "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in cells) + " |" for cells in body]
    return lines


def to_markdown(board: Board, plots: list[Path] | None = None, title: str = "Leaderboard") -> str:
    lines = [f"## {title}", ""]
    lines += _md_table(headers(board), [row_cells(board, r) for r in board.rows])
    lines += [""] + [f"{n}  " for n in _notes(board)]
    per_task = task_rows(board)
    if per_task:
        lines += ["", "### Per-task findings (from the per-sample records)", ""]
        lines += _md_table(task_headers(), per_task)
    if plots:
        lines += ["", "### Plots", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def csv_header(board: Board) -> list[str]:
    head = ["model", "variant", "kind", "oracle", "lm_eval_model", "settings", "budget", "seed",
            "limit"]
    for task in board.tasks:
        head += [f"{task} metric", f"{task} value", f"{task} stderr", f"{task} samples"]
    head += ["average", "average_tasks", "depth_ratio", "evaluations_per_sample",
             "shorter_when_right", "fixed_when_wrong", "wall_seconds", "sources"]
    return head


def csv_rows(board: Board) -> list[list[Any]]:
    out = []
    for row in board.rows:
        cells: list[Any] = [row.model, row.variant, row.kind, row.oracle, row.lm_eval_model,
                            row.settings, row.budget, row.seed, row.limit]
        for task in board.tasks:
            s = row.scores.get(task)
            cells += [s.metric, s.value, s.stderr, s.samples] if s else ["", "", "", ""]
        cells += [row.average, len(board.tasks) - len(row.missing_tasks), row.depth_ratio,
                  row.evaluations, row.shorter_when_right, row.fixed_when_wrong,
                  row.wall_seconds, ";".join(str(p) for p in row.sources)]
        out.append(["" if c is None else c for c in cells])
    return out


def write_csv(board: Board, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(board))
        writer.writerows(csv_rows(board))


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f1f3f5;cursor:pointer;user-select:none}
th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}
td.text,th.text{text-align:left}tr.oracle td{background:#fff8e1}
.tag{background:#f59f00;color:#fff;border-radius:3px;padding:0 4px;font-size:11px}
.notes{font-size:13px;color:#555;max-width:1100px}
.plots img{max-width:100%;border:1px solid #ddd;margin:6px 0;display:block}
.error{color:#c92a2a}
"""

_JS = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var desc = !th.classList.contains('sorted-desc');
      table.querySelectorAll('th').forEach(function(h){
        h.classList.remove('sorted-asc','sorted-desc');});
      th.classList.add(desc ? 'sorted-desc' : 'sorted-asc');
      rows.sort(function(a, b){
        var x = a.cells[col].getAttribute('data-sort'), y = b.cells[col].getAttribute('data-sort');
        var nx = parseFloat(x), ny = parseFloat(y), r;
        if (x === '' && y === '') r = 0; else if (x === '') return 1; else if (y === '') return -1;
        else if (!isNaN(nx) && !isNaN(ny)) r = nx - ny; else r = x.localeCompare(y);
        return desc ? -r : r;
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
"""


def _sort_keys(board: Board, row: Row) -> list[Any]:
    return ([row.model, row.variant, int(row.oracle), board.settings_of(row)]
            + [row.scores[t].value if t in row.scores else None for t in board.tasks]
            + [row.average, row.depth_ratio, row.evaluations, row.shorter_when_right,
               row.fixed_when_wrong, row.wall_seconds])


def _html_table(head: list[str], body: list[tuple[list[str], list[Any], str]],
                text_cols: int) -> list[str]:
    out = ['<table class="sortable"><thead><tr>']
    klass = ' class="text"'
    out += [f"<th{klass if i < text_cols else ''}>{html.escape(h)}</th>"
            for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for cells, keys, css in body:
        out.append(f'<tr class="{css}">' if css else "<tr>")
        for i, (cell, key) in enumerate(zip(cells, keys, strict=True)):
            klass = ' class="text"' if i < text_cols else ""
            sort = "" if key is None else str(key)
            content = html.escape(cell)
            if cell == "oracle":
                content = '<span class="tag">oracle</span>'
            out.append(f'<td{klass} data-sort="{html.escape(sort)}">{content}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    return out


def to_html(board: Board, plots: list[Path] | None = None, title: str = "Leaderboard") -> str:
    body = [(row_cells(board, r), _sort_keys(board, r), "oracle" if r.oracle else "")
            for r in board.rows]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    parts += _html_table(headers(board), body, text_cols=4)
    parts.append('<div class="notes">')
    parts += [f"<p>{html.escape(n)}</p>" for n in _notes(board)]
    parts += [f'<p class="error">{html.escape(e)}</p>' for e in board.errors]
    parts.append("</div>")
    per_task = task_rows(board)
    if per_task:
        parts.append("<h2>Per-task findings (from the per-sample records)</h2>")
        keyed = [(cells, [c.rstrip("%") for c in cells], "") for cells in per_task]
        parts += _html_table(task_headers(), keyed, text_cols=3)
    if plots:
        parts.append('<h2>Plots</h2><div class="plots">')
        for plot in plots:
            data = base64.b64encode(plot.read_bytes()).decode("ascii")
            parts.append(f'<img alt="{html.escape(plot.stem)}" title="{html.escape(plot.stem)}" '
                         f'src="data:image/png;base64,{data}">')
        parts.append("</div>")
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts) + "\n"


def write_board(board: Board, out_dir: str | Path, plots: bool = True,
                title: str = "Leaderboard") -> dict[str, Any]:
    """Write leaderboard.md/.csv/.html and the plots into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create output folder {str(out)!r}: {err.strerror}") from None
    pngs: list[Path] = []
    if plots:
        from lm_eval_cola.plots import write_plots

        pngs = write_plots(board, out)
    paths = {"markdown": out / "leaderboard.md", "csv": out / "leaderboard.csv",
             "html": out / "leaderboard.html", "plots": pngs}
    paths["markdown"].write_text(to_markdown(board, pngs, title), encoding="utf-8")
    write_csv(board, paths["csv"])
    paths["html"].write_text(to_html(board, pngs, title), encoding="utf-8")
    return paths


def report(board: Board, out_dir: str | Path | None, plots: bool = True,
           title: str = "Leaderboard") -> int:
    """Print the errors, warnings and the Markdown table; write the files. Returns the exit
    status: 0, or 1 when some input could not be read (the table was still built)."""
    for error in board.errors:
        print(f"error: {error}", file=sys.stderr)
    for warning in board.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if board.errors:
        print(f"warning: leaderboard built from the readable inputs only "
              f"({len(board.rows)} rows)", file=sys.stderr)
    if out_dir is not None:
        paths = write_board(board, out_dir, plots=plots, title=title)
        print(to_markdown(board, None, title))
        written = [paths["markdown"], paths["csv"], paths["html"], *paths["plots"]]
        print(f"wrote {len(written)} files to {out_dir}: "
              + ", ".join(p.name for p in written), file=sys.stderr)
    else:
        print(to_markdown(board, None, title))
    return 1 if board.errors else 0


def _leaderboard_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="folders with lm-eval results (searched recursively) or results files")
    parser.add_argument("--out", default=None,
                        help="write leaderboard.md, .csv, .html and the plots here "
                             "(default: print the Markdown table only)")
    parser.add_argument("--no_plots", action="store_true", help="skip the plots")
    parser.add_argument("--title", default="Leaderboard", help="the page's title")


@subcommand("leaderboard", "one table (Markdown, CSV, HTML, plots) from lm-eval results and "
            "cola records", _leaderboard_args)
def run_leaderboard(args: argparse.Namespace) -> int:
    board = build_board(args.run_dirs)
    return report(board, args.out, plots=not args.no_plots, title=args.title)
