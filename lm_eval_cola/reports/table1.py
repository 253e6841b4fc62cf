"""The paper's Table 1 from per-sample records: accuracy of the original model, skip-only,
recurrence-only and CoLa (skip + recurrence) search, one column per dataset.

Every cell is computed from exact counts in the records (``Summary``), never from the
results files' rounded shares: the original row is the full chain's accuracy (searcher
``none``), the search rows are oracle accuracy (the gold answer chose each sample's chain,
an upper bound, marked as such). The findings table beside it gives, per row and dataset,
the two findings and their chance control (``control=decoy``), each as ``k/n = share
[Wilson 95% interval]``, each finding beside its control by the paired test on the samples
with a decoy (``findings.Versus``: discordant pairs, exact McNemar, the paired difference with
Newcombe's interval, and the conclusion it draws), the samples without a decoy, and the
depth of the best chains. Pure: no model, no lm-eval.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_eval_cola.reports.findings import Findings, Rate, suffixes_of
from lm_eval_cola.reports.render import asset, md_table, write_csv
from lm_eval_cola.reports.tables import FINDING_COLUMNS, PAIRED_NOTE
from lm_eval_cola.results.records import Record
from lm_eval_cola.results.summary import Summary

# (key, label) of Table 1's rows, in the paper's order; key is the search's action set.
ROWS = (("original", "Original (full chain)"), ("skip", "Skip-only"),
        ("loop", "Recurrence-only"), ("skip+loop", "CoLa (skip + recurrence)"))
# (header, Findings field, CSV name) of the findings table: the board's finding columns
# (tables.FINDING_COLUMNS) after the sample counts, less edits and layers per sample.
FINDINGS = (("Samples", "samples", "samples"), ("Full chain", "full_chain", "full_chain"),
            *(column for column in FINDING_COLUMNS
              if column[1] not in ("edits", "evaluated_layers")))
NOTE = ("Original: the full chain's accuracy. Other rows are ORACLE numbers: each sample's "
        "chain was searched with its gold answer as the reward (an upper bound, not a "
        "deployable score). k/n = share [Wilson 95% interval]. Shorter when right: the full "
        "chain is right and a shorter correct chain was found; fixed when wrong: the full "
        "chain is wrong and some chain is right. Decoy: the same search toward a wrong "
        "answer (control=decoy), its rates over the samples with a decoy: how often chance "
        "alone 'finds' such a chain.")


@dataclass
class Table1Row:
    key: str
    label: str
    oracle: bool
    by_task: dict[str, Findings] = field(default_factory=dict)

    def main_cell(self, task: str) -> Rate | None:
        found = self.by_task.get(task)
        if found is None:
            return None
        return found.oracle if self.oracle else found.full_chain


@dataclass
class Table1:
    model: str
    tasks: list[str]
    rows: list[Table1Row]
    settings: str = ""  # budget, protocol, limit: as the command ran them


def build_table1(records: dict[str, Sequence[Record]], tasks: Sequence[str] | None = None,
                 settings: str = "") -> Table1:
    """Table 1 from each row's records (``records[key]``, key in ``ROWS``; a row without
    records is left out); columns are ``tasks`` (default: every task in the records, in
    first-seen order)."""
    names = list(tasks or dict.fromkeys(r.task for rs in records.values() for r in rs))
    models = dict.fromkeys(r.model for rs in records.values() for r in rs if r.model)
    rows = []
    for key, label in ROWS:
        mine = list(records.get(key) or [])
        if not mine:
            continue
        row = Table1Row(key, label, oracle=any(r.oracle for r in mine))
        for task in names:
            of_task = [r for r in mine if r.task == task]
            if of_task:
                row.by_task[task] = Findings.from_summary(Summary.from_records(of_task))
        rows.append(row)
    return Table1(" / ".join(models) or "unknown", names, rows, settings)


def _text(stat: Any) -> str:
    if stat is None:
        return "—"
    return str(stat) if isinstance(stat, int) else stat.text


def main_table(table: Table1) -> tuple[list[str], list[list[str]]]:
    head = ["Model / row", *table.tasks]
    body = [[f"{row.label}{' (oracle)' if row.oracle else ''}",
             *(_text(row.main_cell(t)) for t in table.tasks)] for row in table.rows]
    return head, body


def findings_table(table: Table1) -> tuple[list[str], list[list[str]]]:
    head = ["Row", "Task", *(h for h, _, _ in FINDINGS)]
    body = []
    for row in table.rows:
        if not row.oracle:
            continue
        for task, found in row.by_task.items():
            body.append([row.label, task, *(_text(getattr(found, attr))
                                             for _, attr, _ in FINDINGS)])
    return head, body


RATE_PARTS = ("", "_k", "_n", "_low", "_high")


def _parts(attr: str) -> tuple[str, ...]:
    """A findings field's CSV suffixes; Table 1 has no seed rows, so no ``_sd``."""
    return tuple(s for s in suffixes_of(attr) if s != "_sd")


def csv_lines(table: Table1) -> tuple[list[str], list[list[Any]]]:
    """One line per row and task: the main cell's counts and interval, then the findings
    (a rate as share, k, n and interval; a paired test as difference, interval, p and
    counts; a mean as one number; empty where absent)."""
    head = ["row", "label", "oracle", "task", "samples",
            *(f"accuracy{p}" for p in RATE_PARTS)]
    for _, attr, name in FINDINGS[1:]:
        head += [f"{name}{p}" for p in _parts(attr)]
    body: list[list[Any]] = []
    for row in table.rows:
        for task, found in row.by_task.items():
            main = row.main_cell(task)
            numbers = main.csv() if main is not None else {}
            line: list[Any] = [row.key, row.label, row.oracle, task, found.samples,
                               *(numbers.get(p) for p in RATE_PARTS)]
            for _, attr, _name in FINDINGS[1:]:
                stat = getattr(found, attr)
                numbers = stat.csv() if stat is not None else {}
                line += [numbers.get(p) for p in _parts(attr)]
            body.append(line)
    return head, body


def to_markdown(table: Table1) -> str:
    cells = [[(text, None) for text in line] for line in main_table(table)[1]]
    lines = [f"# Table 1: {table.model}", ""]
    if table.settings:
        lines += [f"Settings: {table.settings}", ""]
    lines += md_table(main_table(table)[0], cells) + ["", NOTE, ""]
    head, body = findings_table(table)
    if body:
        lines += ["## Findings and their chance control", ""]
        lines += md_table(head, [[(text, None) for text in line] for line in body]) + [""]
        note = _paired_note(table)
        lines += [note, ""] if note else []
    return "\n".join(lines)


def _paired_note(table: Table1) -> str | None:
    """How the findings are set against the decoy: where some row ran the control."""
    decoy = any(f.has_decoy for row in table.rows for f in row.by_task.values())
    return PAIRED_NOTE if decoy else None


def _html_rows(head: list[str], body: list[list[str]]) -> list[str]:
    out = ["<table><thead><tr>"]
    out += [f'<th scope="col">{html.escape(h)}</th>' for h in head]
    out.append("</tr></thead><tbody>")
    for line in body:
        out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in line) + "</tr>")
    out.append("</tbody></table>")
    return out


def to_html(table: Table1) -> str:
    title = f"Table 1: {table.model}"
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title>",
             f"<style>{asset('board.css')}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if table.settings:
        parts.append(f"<p>Settings: {html.escape(table.settings)}</p>")
    parts += _html_rows(*main_table(table))
    parts.append(f"<p>{html.escape(NOTE)}</p>")
    head, body = findings_table(table)
    if body:
        parts.append("<h2>Findings and their chance control</h2>")
        parts += _html_rows(head, body)
        note = _paired_note(table)
        parts += [f"<p>{html.escape(note)}</p>"] if note else []
    parts.append("</body></html>")
    return "\n".join(parts)


def write_table1(table: Table1, out_dir: str | Path) -> list[Path]:
    """``table1.md``, ``table1.csv`` and ``table1.html`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "table1.md", out / "table1.csv", out / "table1.html"]
    paths[0].write_text(to_markdown(table), encoding="utf-8")
    write_csv(paths[1], *csv_lines(table))
    paths[2].write_text(to_html(table), encoding="utf-8")
    return paths
