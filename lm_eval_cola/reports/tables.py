"""The board's tables as cells (text shown, sort key) and as CSV lines (numbers).

- ``board_table``: the deployable rows' table (with each row's series kind, and the executed
  depth where a router row has one), or the oracle rows' (with the findings pooled over the
  row's tasks: an extra beside the per-task table); never one table for both;
- ``task_table``: the findings per task and row, with their counts: the main table of
  findings;
- ``layer_lines``: layer use in each oracle row's best chains, per seed (``layers_<task>.csv``).

A finding is shown with its denominator and Wilson 95% interval (``findings.Rate``), the
decoy control's rate beside it where some row of the table has one, then the paired test of
the two on the samples with a decoy (``findings.Versus``: the conclusion comes from it, never
from overlapping intervals) and the samples without a decoy; a seed row's values are mean ±
sd over its seeds.
"""

from __future__ import annotations

import json
from typing import Any

from lm_eval_cola.reports.board import Board, Row
from lm_eval_cola.reports.findings import (
    Findings,
    Number,
    Spread,
    findings_of,
    suffixes_of,
)
from lm_eval_cola.reports.plots import layer_counts
from lm_eval_cola.reports.runs import TaskScore

# A cell: the text shown, and the key its column sorts by in the HTML page (None: missing).
Cell = tuple[str, Any]
TEXT_COLUMNS = 3  # Model/Task, Model, Variant...: left-aligned, sorted as text
DEPLOYABLE_TEXT_COLUMNS = 4  # the deployable table's: Model, Variant, Kind, Settings
# (header, Findings field, CSV name); decoy columns only where a row has a decoy. A finding
# over all samples, its decoy rate, then the two paired on the samples with a decoy.
FINDING_COLUMNS = [
    ("Oracle acc", "oracle", "oracle_accuracy"),
    ("Shorter when right", "shorter", "shorter_when_right"),
    ("Decoy shortened (right)", "decoy_shortened", "decoy_shortened_when_right"),
    ("Shorter vs decoy (paired)", "shorter_vs_decoy", "shorter_vs_decoy"),
    ("Fixed when wrong", "fixed", "fixed_when_wrong"),
    ("Decoy reached (wrong)", "decoy_reached", "decoy_reached_when_wrong"),
    ("Fixed vs decoy (paired)", "fixed_vs_decoy", "fixed_vs_decoy"),
    ("No decoy", "no_decoy", "no_decoy_samples"),
    ("Depth", "depth", "depth_ratio"),
    ("Depth shortened", "depth_shortened", "depth_ratio_shortened"),
    ("Decoy depth shortened", "decoy_depth_shortened", "decoy_depth_ratio_shortened"),
    ("Depth fixed", "depth_fixed", "depth_ratio_fixed"),
    ("Edits", "edits", "mean_edits"),
    ("Evals/sample", "evaluations", "evaluations_per_sample"),
    ("Layers/sample", "evaluated_layers", "evaluated_layers_per_sample"),
]
DECOY_FIELDS = ("decoy_shortened", "decoy_reached", "shorter_vs_decoy", "fixed_vs_decoy",
                "no_decoy", "decoy_depth_shortened")
CSV_FINDINGS = [("full_chain_accuracy", "full_chain")] + [
    (name, attr) for _, attr, name in FINDING_COLUMNS]
# The paired test's rule, stated wherever its columns are.
PAIRED_NOTE = (
    "X vs decoy (paired): the finding and its decoy rate on the same samples (those with a "
    "decoy), as per-sample pairs: gold k/n vs decoy k/n; only: the discordant pairs (gold "
    "only vs decoy only), which decide; Δ: the paired difference gold − decoy with "
    "Newcombe's 95% interval (1998, method 10); p: exact McNemar. A finding is above "
    "chance only where p < 0.05 and the interval excludes 0, never by overlapping "
    "intervals. No decoy: samples the control ran on without a decoy to draw, outside the "
    "decoy's denominators.")


def fmt_value(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def fmt_score(score: TaskScore | None, sd: float | None = None) -> str:
    """A task's metric ± lm-eval's stderr; a seed row's mean ± sd over its seeds."""
    if score is None:
        return "—"
    text = fmt_value(score.value)
    if sd is not None:
        return f"{text} ± {sd:.4f} sd"
    return text if score.stderr is None else f"{text} ± {score.stderr:.4f}"


def fmt_percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def fmt_count(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def fmt_average(row: Row) -> str:
    text = fmt_value(row.average)
    return f"{text} †" if row.missing_tasks and row.average is not None else text


def stat_cell(stat: Any) -> Cell:
    return ("—", None) if stat is None else (stat.text, stat.key)


def finding_columns(found: list[Findings | None]) -> list[tuple[str, str, str]]:
    decoy = any(f is not None and f.has_decoy for f in found)
    return [c for c in FINDING_COLUMNS if decoy or c[1] not in DECOY_FIELDS]


def _row_findings(row: Row) -> Findings:
    """The row's pooled findings; rows without any still show their depth and evaluations."""
    found = findings_of(row)
    if found is not None:
        return found
    return Findings(samples=None, full_chain=None, oracle=None, shorter=None, fixed=None,
                    decoy_shortened=None, decoy_reached=None, depth=Number(row.depth_ratio),
                    depth_shortened=None, depth_fixed=None, edits=None,
                    evaluations=Number(row.evaluations, 2), evaluated_layers=None)


def _executed(row: Row) -> float | None:
    """A deployable row's executed depth: a router's, else its chain's depth."""
    return row.depth_ratio if row.executed_depth_ratio is None else row.executed_depth_ratio


# ---------------------------------------------------------------------------- tables


def board_table(board: Board, oracle: bool) -> tuple[list[str], list[list[Cell]]]:
    """The deployable rows' table, or the oracle rows' (with the findings columns: only a
    search that a gold answer guided finds shorter or fixing chains)."""
    rows = board.oracles if oracle else board.deployable
    found = [_row_findings(r) for r in rows] if oracle else []
    columns = finding_columns(list(found))
    executed = not oracle and any(r.executed_depth_ratio is not None for r in rows)
    head = (["Model", "Variant"] + ([] if oracle else ["Kind"]) + ["Settings"]
            + [f"{t} ({board.metric_of(t)})" for t in board.tasks] + ["Average"]
            + ([c[0] for c in columns] if oracle
               else ["Depth"] + ["Executed depth"] * executed + ["Evals/sample"])
            + ["Wall time"])
    body = []
    for number, row in enumerate(rows):
        settings = board.settings_of(row)
        cells: list[Cell] = [(row.model, row.model), (row.variant, row.variant)]
        if not oracle:
            cells.append((row.kind_label, row.kind_label))
        cells.append((settings or "—", settings))
        for task in board.tasks:
            score = row.scores.get(task)
            cells.append((fmt_score(score, row.score_sd.get(task)),
                          score.value if score else None))
        cells.append((fmt_average(row), row.average))
        if oracle:
            cells += [stat_cell(getattr(found[number], attr)) for _, attr, _ in columns]
        else:
            cells.append((fmt_value(row.depth_ratio, 3), row.depth_ratio))
            if executed:  # what a deployment runs: a router's chains and its feature layers
                depth = _executed(row)
                cells.append((fmt_value(depth, 3), depth))
            cells.append((fmt_count(row.evaluations), row.evaluations))
        cells.append((fmt_seconds(row.wall_seconds), row.wall_seconds))
        body.append(cells)
    return head, body


def task_findings(board: Board) -> list[tuple[str, Row, Findings]]:
    """(task, row, its findings on that task) for every row with records of the task."""
    out = []
    for task in board.tasks:
        for row in board.rows:
            found = findings_of(row, task)
            if found is not None:
                out.append((task, row, found))
    return out


def _samples_cell(found: Findings) -> Cell:
    if found.samples is None:
        return "—", None
    text = str(found.samples) + (f" ×{found.seeds}" if found.seeds > 1 else "")
    return text, found.samples


def task_table(board: Board) -> tuple[list[str], list[list[Cell]]]:
    """Per-task findings of the searcher rows, from their records: each with its counts."""
    entries = task_findings(board)
    columns = finding_columns([f for _, _, f in entries])
    head = (["Task", "Model", "Variant", "Samples", "Full-chain acc"]
            + [c[0] for c in columns])
    body = []
    for task, row, found in entries:
        body.append([(task, task), (row.model, row.model), (row.label, row.label),
                     _samples_cell(found), stat_cell(found.full_chain),
                     *(stat_cell(getattr(found, attr)) for _, attr, _ in columns)])
    return head, body


def notes(board: Board) -> list[str]:
    limits = sorted({json.dumps(r.limit) for r in board.rows})
    lines = [
        "Sorted by average" + ("; oracle rows are ranked apart, in their own table."
                               if board.oracles else "."),
        "Main metric: acc where a task has it, else exact_match (first filter), else the "
        "task's first metric; a searcher run's, the metric and filter its oracle judged by. "
        "± is lm-eval's stderr. Depth: mean chain length / layers.",
        f"Samples per task (lm-eval --limit): {', '.join(limits)}.",
    ]
    if board.deployable:
        lines.append("Kind: full model (every layer once), static chain (a fixed chain: "
                     "calibrate, consensus or given), pruning baseline (block influence, SLEB), "
                     "router (a chain picked per sample from the prompt).")
    if any(r.executed_depth_ratio is not None for r in board.deployable):
        lines.append("Executed depth: a router's mean chain length plus the feature layers it "
                     "ran that its chain does not start with, over the layers: the depth a "
                     "deployment pays (other rows: their depth).")
    if board.oracles:
        lines.append(
            "Findings: k/n = share [Wilson 95% interval]. Shorter when right: full chain right "
            "and a strictly shorter correct chain found. Fixed when wrong: full chain wrong and "
            "some chain right. Decoy (chance control, where the run has one): the same search "
            "toward a wrong answer; reached (wrong) and shortened (right, a chain shorter than "
            "the full chain answers the decoy) are its rates over the samples with a decoy. "
            "Depth shortened / fixed: depth of those samples' best chains; decoy depth "
            "shortened: of the decoy's shortest chains, on the right samples it shortened. Edits: "
            "mean edit distance of the best chain from the full chain. Layers/sample: layers "
            "evaluated per sample (the search's cost). The per-task table is the main one; the "
            "oracle table pools a row's tasks.")
    if any(f.has_decoy for _, _, f in task_findings(board)):
        lines.append(PAIRED_NOTE)
    if any(r.members for r in board.rows):
        lines.append("N seeds: mean ± sd over the seeds (sample standard deviation), of the "
                     "metrics and of the findings; of a paired test, of its difference Δ "
                     "(the seeds search the same samples: their pairs are not pooled into "
                     "one test; each seed's run has its own).")
    if any(r.missing_tasks for r in board.rows):
        lines.append("† averaged over fewer tasks: the row lacks some task.")
    return lines


# ---------------------------------------------------------------------------- csv


def _stat_csv(stat: Any, attr: str) -> list[Any]:
    values = {} if stat is None else stat.csv()
    return [values.get(s) for s in suffixes_of(attr)]


def _stats_header(prefix: str = "") -> list[str]:
    return [f"{prefix}{name}{s}" for name, attr in CSV_FINDINGS for s in suffixes_of(attr)]


def _stats_cells(found: Findings | None, row: Row | None = None) -> list[Any]:
    cells: list[Any] = []
    for _, attr in CSV_FINDINGS:
        stat = None if found is None else getattr(found, attr)
        if row is not None and attr in ("depth", "evaluations") and not isinstance(stat, Spread):
            stat = Number(row.depth_ratio if attr == "depth" else row.evaluations)
        cells += _stat_csv(stat, attr)
    return cells


def csv_header(board: Board) -> list[str]:
    head = ["model", "variant", "kind", "series_kind", "chain_source_method", "oracle",
            "lm_eval_model", "settings", "budget", "seed", "seeds", "limit"]
    for task in board.tasks:
        head += [f"{task} metric", f"{task} value", f"{task} stderr", f"{task} sd",
                 f"{task} samples"]
    return head + ["average", "average_tasks", "samples", *_stats_header(),
                   "executed_depth_ratio", "wall_seconds", "sources"]


def _seeds(row: Row) -> str:
    return ";".join(map(str, row.seeds)) if row.members else (
        "" if row.seed is None else str(row.seed))


def csv_rows(board: Board) -> list[list[Any]]:
    out = []
    for row in board.rows:
        found = findings_of(row)
        cells: list[Any] = [row.model, row.variant, row.kind, row.series_kind,
                            row.source_method, row.oracle, row.lm_eval_model, row.settings,
                            row.budget, row.seed, _seeds(row), row.limit]
        for task in board.tasks:
            s = row.scores.get(task)
            cells += ([s.metric, s.value, s.stderr, row.score_sd.get(task), s.samples] if s
                      else ["", "", "", "", ""])
        cells += [row.average, len(board.tasks) - len(row.missing_tasks),
                  None if found is None else found.samples, *_stats_cells(found, row),
                  row.executed_depth_ratio, row.wall_seconds, ";".join(str(p) for p in row.sources)]
        out.append(["" if c is None else c for c in cells])
    return out


def findings_csv(board: Board) -> tuple[list[str], list[list[Any]]]:
    """The per-task table as numbers: one line a task and row."""
    head = ["task", "model", "variant", "kind", "oracle", "settings", "seeds", "samples",
            *_stats_header()]
    body = []
    for task, row, found in task_findings(board):
        cells = [task, row.model, row.variant, row.kind, row.oracle, row.settings, _seeds(row),
                 found.samples, *_stats_cells(found)]
        body.append(["" if c is None else c for c in cells])
    return head, body


LAYER_HEADER = ["model", "variant", "settings", "seed", "samples", "with_correct_chain",
                "layer", "used_once", "skipped", "looped"]


def layer_lines(board: Board, task: str) -> list[list[Any]]:
    """Per oracle row (per seed of a seed row) and layer: of the samples whose best chain is
    correct (what ``layers_<task>.png`` draws), how many use the layer once, skip it, or
    loop it (2+ copies)."""
    out = []
    for row in board.oracles:
        for part in row.members or [row]:
            records = part.records_of(task)
            if not records:
                continue
            found, counts = layer_counts(records)
            for layer, (skipped, once, looped) in enumerate(counts):
                out.append([row.model, row.variant, row.settings,
                            "" if part.seed is None else part.seed, len(records), found, layer,
                            once, skipped, looped])
    return out
