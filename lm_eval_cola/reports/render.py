"""The board as Markdown, CSV and one self-contained HTML page, and the files written.

Deployable rows (plain runs, fixed chains, searcher ``none``) and oracle rows (a gold answer
chose each sample's chain) are two tables, each ranked by its own average: an oracle's
accuracy is an upper bound, never a score to rank against. The CSV has every row, with an
``oracle`` column. The HTML page inlines its CSS and JS (``assets/``) and the plots as data
URIs, so it loads nothing.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

from lm_eval_cola.errors import UserError
from lm_eval_cola.reports.board import Board, Row
from lm_eval_cola.reports.plots import Series, write_plots
from lm_eval_cola.reports.runs import TaskScore
from lm_eval_cola.summary import Summary

logger = logging.getLogger(__name__)

ORACLE_NOTE = ("oracle: each sample's chain was searched with that sample's gold answer as "
               "the reward, so its accuracy is an upper bound, not a fair score")
ORACLE_HEADING = "Oracle search (upper bounds, ranked apart)"
TASK_HEADING = "Per-task findings (from the per-sample records)"
# A cell: the text shown, and the key its column sorts by in the HTML page (None: missing).
Cell = tuple[str, Any]
TEXT_COLUMNS = 3  # Model/Task, Model, Variant...: left-aligned, sorted as text


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
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def fmt_count(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def fmt_average(row: Row) -> str:
    text = fmt_value(row.average)
    return f"{text} †" if row.missing_tasks and row.average is not None else text


# ---------------------------------------------------------------------------- tables


def board_table(board: Board, oracle: bool) -> tuple[list[str], list[list[Cell]]]:
    """The deployable rows' table, or the oracle rows' (with the findings columns: only a
    search that a gold answer guided finds shorter or fixing chains)."""
    head = (["Model", "Variant", "Settings"]
            + [f"{t} ({board.metric_of(t)})" for t in board.tasks]
            + ["Average", "Depth", "Evals/sample"]
            + (["Shorter when right", "Fixed when wrong"] if oracle else []) + ["Wall time"])
    body = []
    for row in board.oracles if oracle else board.deployable:
        settings = board.settings_of(row)
        cells: list[Cell] = [(row.model, row.model), (row.variant, row.variant),
                             (settings or "—", settings)]
        for task in board.tasks:
            score = row.scores.get(task)
            cells.append((fmt_score(score), score.value if score else None))
        cells += [(fmt_average(row), row.average),
                  (fmt_value(row.depth_ratio, 3), row.depth_ratio),
                  (fmt_count(row.evaluations), row.evaluations)]
        if oracle:
            cells += [(fmt_percent(row.shorter_when_right), row.shorter_when_right),
                      (fmt_percent(row.fixed_when_wrong), row.fixed_when_wrong)]
        cells.append((fmt_seconds(row.wall_seconds), row.wall_seconds))
        body.append(cells)
    return head, body


def task_table(board: Board) -> tuple[list[str], list[list[Cell]]]:
    """Per-task findings of the searcher rows, from their records."""
    head = ["Task", "Model", "Variant", "Samples", "Full-chain acc", "Oracle acc",
            "Shorter when right", "Fixed when wrong", "Depth", "Evals/sample"]
    body = []
    for task in board.tasks:
        for row in board.rows:
            summary: Summary | None = row.task_summaries.get(task)
            if summary is None:
                continue
            s = summary.as_dict()
            findings = [s[k] if row.oracle else None
                        for k in ("shorter_when_right", "fixed_when_wrong")]
            body.append([(task, task), (row.model, row.model), (row.label, row.label),
                         (str(summary.samples), summary.samples),
                         (fmt_percent(s["full_chain_accuracy"]), s["full_chain_accuracy"]),
                         (fmt_percent(s["oracle_accuracy"]), s["oracle_accuracy"]),
                         *((fmt_percent(f), f) for f in findings),
                         (fmt_value(s["mean_depth_ratio"], 3), s["mean_depth_ratio"]),
                         (fmt_count(s["mean_evaluations"]), s["mean_evaluations"])])
    return head, body


def notes(board: Board) -> list[str]:
    limits = sorted({json.dumps(r.limit) for r in board.rows})
    lines = [
        "Sorted by average" + ("; oracle rows are ranked apart, in their own table."
                               if board.oracles else "."),
        "Main metric: acc where a task has it, else exact_match (first filter), else the "
        "task's first metric; ± is lm-eval's stderr. Depth: mean chain length / layers. "
        "Shorter when right: full chain right and a strictly shorter correct chain found. "
        "Fixed when wrong: full chain wrong and some chain right.",
        f"Samples per task (lm-eval --limit): {', '.join(limits)}.",
    ]
    if any(r.missing_tasks for r in board.rows):
        lines.append("† averaged over fewer tasks: the row lacks some task.")
    return lines


# ---------------------------------------------------------------------------- markdown, csv


def _md_table(head: list[str], body: list[list[Cell]]) -> list[str]:
    def escape(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(escape(h) for h in head) + " |",
             "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(escape(text) for text, _ in cells) + " |" for cells in body]
    return lines


def to_markdown(board: Board, plots: list[Path] | None = None, title: str = "Leaderboard") -> str:
    lines = [f"## {title}", ""]
    if board.deployable:
        lines += _md_table(*board_table(board, oracle=False)) + [""]
    lines += [f"{n}  " for n in notes(board)]
    if board.oracles:
        lines += ["", f"### {ORACLE_HEADING}", "", f"{ORACLE_NOTE[0].upper()}{ORACLE_NOTE[1:]}.",
                  ""]
        lines += _md_table(*board_table(board, oracle=True))
    head, per_task = task_table(board)
    if per_task:
        lines += ["", f"### {TASK_HEADING}", ""] + _md_table(head, per_task)
    if plots:
        lines += ["", "### Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
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


# ---------------------------------------------------------------------------- html


def asset(name: str) -> str:
    """A file of ``reports/assets`` (package data), as text."""
    return (resources.files("lm_eval_cola.reports") / "assets" / name).read_text("utf-8")


def _html_table(head: list[str], body: list[list[Cell]], table_id: str) -> list[str]:
    def klass(i: int) -> str:
        return ' class="text"' if i < TEXT_COLUMNS else ""

    out = [f'<table class="sortable" id="{table_id}"><thead><tr>']
    out += [f'<th{klass(i)} scope="col">{html.escape(h)}</th>' for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for cells in body:
        out.append("<tr>")
        for i, (text, key) in enumerate(cells):
            sort = "" if key is None else html.escape(str(key))
            out.append(f'<td{klass(i)} data-sort="{sort}">{html.escape(text)}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    return out


def to_html(board: Board, plots: list[Path] | None = None, title: str = "Leaderboard") -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{asset('board.css')}</style></head>",
             f"<body><h1>{html.escape(title)}</h1>"]
    if board.deployable:
        parts += _html_table(*board_table(board, oracle=False), table_id="board")
    parts.append('<div class="notes">')
    parts += [f"<p>{html.escape(n)}</p>" for n in notes(board)]
    parts += [f'<p class="error">error: {html.escape(e)}</p>' for e in board.errors]
    parts += [f'<p class="warning">warning: {html.escape(w)}</p>' for w in board.warnings]
    parts.append("</div>")
    if board.oracles:
        parts += ['<section class="oracle">',
                  f'<h2><span class="tag">oracle</span> {html.escape(ORACLE_HEADING)}</h2>',
                  f'<p class="notes">{html.escape(ORACLE_NOTE)}.</p>']
        parts += _html_table(*board_table(board, oracle=True), table_id="oracle-board")
        parts.append("</section>")
    head, per_task = task_table(board)
    if per_task:
        parts.append(f"<h2>{html.escape(TASK_HEADING)}</h2>")
        parts += _html_table(head, per_task, table_id="per-task")
    if plots:
        parts.append('<h2>Plots</h2><div class="plots">')
        for plot in plots:
            data = base64.b64encode(plot.read_bytes()).decode("ascii")
            name = html.escape(plot.stem)
            parts.append(f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{name}</figcaption></figure>")
        parts.append("</div>")
    parts.append(f"<script>{asset('board.js')}</script></body></html>")
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------- files


def plot_series(board: Board) -> dict[str, tuple[str, list[Series]]]:
    """What the plots need of the board: per task, its metric and one series a row."""
    out: dict[str, tuple[str, list[Series]]] = {}
    for task in board.tasks:
        series = []
        for row in board.rows:
            score = row.scores.get(task)
            if score is None:
                continue
            series.append(Series(model=row.model, variant=row.variant, label=row.label,
                                 kind=row.kind, oracle=row.oracle, value=score.value,
                                 stderr=score.stderr, depth=row.task_depth(task),
                                 records=row.records_of(task)))
        out[task] = (board.metric_of(task), series)
    return out


def write_board(board: Board, out_dir: str | Path, plots: bool = True,
                title: str = "Leaderboard") -> dict[str, Any]:
    """Write leaderboard.md/.csv/.html and the plots into ``out_dir``; returns the paths
    (``markdown``, ``csv``, ``html``: a path each; ``plots``: a list)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create output folder {str(out)!r}: {err.strerror}") from None
    pngs: list[Path] = []
    if plots:
        pngs = write_plots(plot_series(board), out)
    paths: dict[str, Any] = {"markdown": out / "leaderboard.md", "csv": out / "leaderboard.csv",
                             "html": out / "leaderboard.html", "plots": pngs}
    paths["markdown"].write_text(to_markdown(board, pngs, title), encoding="utf-8")
    write_csv(board, paths["csv"])
    paths["html"].write_text(to_html(board, pngs, title), encoding="utf-8")
    logger.debug("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths
