"""The board as Markdown, CSV and one self-contained HTML page, and the files written.

Deployable rows (plain runs, fixed chains, routers, searcher ``none``) and oracle rows (a
gold answer chose each sample's chain) are two tables, each ranked by its own average: an
oracle's accuracy is an upper bound, never a score to rank against; the findings per task
follow (the tables themselves are made in ``tables``). ``leaderboard.csv`` has every row,
with an ``oracle`` and a ``series_kind`` column, ``findings.csv`` the per-task findings,
``layers_<task>.csv`` the layer use the ``layers_<task>.png`` plots draw. The plots are listed
per task (``plots``), the depth plot's series explained above them. The HTML page inlines its
CSS and JS (``assets/``) and the plots as data URIs, so it loads nothing.
"""

from __future__ import annotations

import base64
import csv
import html
import logging
from importlib import resources
from pathlib import Path
from typing import Any

from lm_eval_cola.errors import UserError
from lm_eval_cola.reports.board import Board
from lm_eval_cola.reports.plots import Series, safe_name, write_plots
from lm_eval_cola.reports.tables import (
    DEPLOYABLE_TEXT_COLUMNS,
    LAYER_HEADER,
    TEXT_COLUMNS,
    Cell,
    board_table,
    csv_header,
    csv_rows,
    findings_csv,
    layer_lines,
    notes,
    task_table,
)

logger = logging.getLogger(__name__)

ORACLE_NOTE = ("oracle: each sample's chain was searched with that sample's gold answer as "
               "the reward, so its accuracy is an upper bound, not a fair score")
ORACLE_HEADING = "Oracle search (upper bounds, ranked apart)"
TASK_HEADING = ("Findings per task (counts and Wilson 95% intervals, paired tests against the "
                "decoy, from the per-sample records)")
DEPTH_NOTE = ("depth_<task>: the main metric against mean executed depth (layers run / layers), "
              "one series per kind: full model, static chain, pruning baseline, router (at its "
              "executed depth, feature layers included) and oracle (an upper bound, at its "
              "best chains' depth); bars: lm-eval's stderr (seed rows: sd over the seeds)")


# ---------------------------------------------------------------------------- markdown, csv


def md_table(head: list[str], body: list[list[Cell]]) -> list[str]:
    def escape(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(escape(h) for h in head) + " |",
             "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(escape(text) for text, _ in cells) + " |" for cells in body]
    return lines


def to_markdown(board: Board, plots: list[Path] | None = None, title: str = "Leaderboard",
                tables: list[Path] | None = None) -> str:
    lines = [f"## {title}", ""]
    if board.deployable:
        lines += md_table(*board_table(board, oracle=False)) + [""]
    lines += [f"{n}  " for n in notes(board)]
    if board.oracles:
        lines += ["", f"### {ORACLE_HEADING}", "", f"{ORACLE_NOTE[0].upper()}{ORACLE_NOTE[1:]}.",
                  ""]
        lines += md_table(*board_table(board, oracle=True))
    head, per_task = task_table(board)
    if per_task:
        lines += ["", f"### {TASK_HEADING}", ""] + md_table(head, per_task)
    if tables:
        lines += ["", "Tables: " + ", ".join(f"[{p.name}]({p.name})" for p in tables)]
    if plots:
        lines += ["", "### Plots", ""]
        if any(p.stem.startswith("depth_") for p in plots):
            lines += [f"{DEPTH_NOTE[0].upper()}{DEPTH_NOTE[1:]}.", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, head: list[str], body: list[list[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(head)
        writer.writerows(body)


# ---------------------------------------------------------------------------- html


def asset(name: str) -> str:
    """A file of ``reports/assets`` (package data), as text."""
    return (resources.files("lm_eval_cola.reports") / "assets" / name).read_text("utf-8")


def _html_table(head: list[str], body: list[list[Cell]], table_id: str,
                text_columns: int = TEXT_COLUMNS) -> list[str]:
    def klass(i: int) -> str:
        return ' class="text"' if i < text_columns else ""

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
        parts += _html_table(*board_table(board, oracle=False), table_id="board",
                             text_columns=DEPLOYABLE_TEXT_COLUMNS)
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
        parts.append("<h2>Plots</h2>")
        if any(p.stem.startswith("depth_") for p in plots):
            parts.append(f'<p class="notes">{html.escape(DEPTH_NOTE)}.</p>')
        parts.append('<div class="plots">')
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
    """What the plots need of the board: per task, its metric and one series a row (a seed
    row: the mean over its seeds ± their sd, and every seed's records)."""
    out: dict[str, tuple[str, list[Series]]] = {}
    for task in board.tasks:
        series = []
        for row in board.rows:
            score = row.scores.get(task)
            if score is None:
                continue
            spread = row.score_sd.get(task)
            series.append(Series(model=row.model, variant=row.variant, label=row.label,
                                 kind=row.kind, oracle=row.oracle, value=score.value,
                                 stderr=score.stderr if spread is None else spread,
                                 depth=row.task_depth(task), records=row.records_of(task),
                                 series_kind=row.series_kind,
                                 executed_depth=row.executed_depth(task)))
        out[task] = (board.metric_of(task), series)
    return out


def write_board(board: Board, out_dir: str | Path, plots: bool = True,
                title: str = "Leaderboard") -> dict[str, Any]:
    """Write leaderboard.md/.csv/.html, findings.csv, the layer tables and the plots into
    ``out_dir``; returns the paths (``markdown``, ``csv``, ``html``, ``findings``: a path
    each; ``tables``: the ``layers_<task>.csv`` files; ``plots``: the PNGs)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create output folder {str(out)!r}: {err.strerror}") from None
    pngs: list[Path] = []
    if plots:
        pngs = write_plots(plot_series(board), out)
    paths: dict[str, Any] = {"markdown": out / "leaderboard.md", "csv": out / "leaderboard.csv",
                             "html": out / "leaderboard.html", "findings": out / "findings.csv",
                             "tables": [], "plots": pngs}
    write_csv(paths["csv"], csv_header(board), csv_rows(board))
    write_csv(paths["findings"], *findings_csv(board))
    for task in board.tasks:
        lines = layer_lines(board, task)
        if lines:
            path = out / f"layers_{safe_name(task)}.csv"
            write_csv(path, ["task", *LAYER_HEADER], [[task, *line] for line in lines])
            paths["tables"].append(path)
    tables = [paths["csv"], paths["findings"], *paths["tables"]]
    paths["markdown"].write_text(to_markdown(board, pngs, title, tables), encoding="utf-8")
    paths["html"].write_text(to_html(board, pngs, title), encoding="utf-8")
    logger.debug("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths
