"""Checks that a board says exactly what its input files say, shared by the reports tests
on fixture files (test_reports*.py) and on real lm-eval runs (test_leaderboard.py)."""

from __future__ import annotations

import base64
import csv
import dataclasses
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from lm_eval_cola.chains.syntax import parse_chain
from lm_eval_cola.results.records import Record
from lm_eval_cola.results.stats import wilson
from lm_eval_cola.results.summary import Summary

TASKS = ["arc_challenge", "gsm8k"]
MAIN_METRIC = {"arc_challenge": "acc,none", "gsm8k": "exact_match,strict-match"}
PNG = b"\x89PNG\r\n\x1a\n"


def source_of(row: Any) -> dict:
    (path,) = row.sources
    return json.loads(Path(path).read_text())


def counts(summary: Summary) -> Summary:
    """A summary without its time: results files keep the total to 3 decimals only."""
    return dataclasses.replace(summary, total_ticks=0)


def check_rows(board: Any, limit: int) -> None:
    """Every row's scores, findings and depth equal its results file's and records'."""
    for row in board.rows:
        data = source_of(row)
        for task in TASKS:
            score, results = row.scores[task], data["results"][task]
            metric, _, filt = MAIN_METRIC[task].partition(",")
            assert score.metric == MAIN_METRIC[task]
            assert score.value == results[MAIN_METRIC[task]]
            assert score.stderr == results[f"{metric}_stderr,{filt}"]
            assert score.samples == limit
        assert row.average == sum(data["results"][t][MAIN_METRIC[t]] for t in TASKS) / len(TASKS)
        assert abs(row.wall_seconds - float(data["total_evaluation_time_seconds"])) < 1e-3
        config = data["config"]
        assert row.oracle == config.get("cola_oracle", False)
        if row.kind == "search":
            written = config["cola_summary"]
            assert row.summary == Summary.from_dict(written)  # exact, as the run wrote it
            # searcher none searched nothing: the table shows no finding for it
            for key in ("shorter_when_right", "fixed_when_wrong"):
                assert getattr(row, key) == (written[key] if row.variant != "none" else None)
            assert row.depth_ratio == written["mean_depth_ratio"]
            assert row.evaluations == written["mean_evaluations"]
            # the records give the same findings, and the per-task ones
            assert len(row.records) == limit * len(TASKS)
            assert all(isinstance(r, Record) for r in row.records)
            again = Summary.from_records(row.records)
            assert counts(again) == counts(row.summary)
            for key in ("shorter_when_right", "fixed_when_wrong", "mean_depth_ratio",
                        "mean_evaluations", "samples"):
                assert again.as_dict()[key] == written[key]
            for task in TASKS:
                mine = Summary.from_records([r for r in row.records if r.task == task])
                assert row.task_summaries[task] == mine
                assert row.task_depth(task) == mine.as_dict()["mean_depth_ratio"]
        else:
            assert row.depth_ratio == config.get("cola_depth_ratio", 1.0)
            assert row.evaluations == 1.0 and row.summary is None
    # deployable rows first, oracle rows after: each group ranked by its own average
    assert board.rows == board.deployable + board.oracles
    for group in (board.deployable, board.oracles):
        averages = [r.average for r in group]
        assert averages == sorted(averages, reverse=True)



def check_oracle_rows_in_their_own_table(board: Any) -> None:
    """In the markdown, every oracle row comes after the oracle heading, every other before."""
    from lm_eval_cola.reports.render import ORACLE_HEADING, to_markdown

    lines = to_markdown(board).splitlines()
    oracle_from = lines.index(f"### {ORACLE_HEADING}")
    for row in board.rows:
        (number,) = [n for n, line in enumerate(lines)
                     if line.startswith(f"| {row.model} | {row.variant} |")]
        assert (number > oracle_from) == row.oracle, row.variant

class PageParser(HTMLParser):
    """What a self-contained page holds: images, scripts, tables, body rows, and anything
    it would load from elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.scripts = self.tables = self.body_rows = 0
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
            if not attrs.get("src", "").startswith("data:image/png;base64,"):
                self.external.append(attrs.get("src"))
        elif tag in ("script", "link", "iframe"):
            self.scripts += tag == "script"
            if attrs.get("src") or attrs.get("href"):
                self.external.append(attrs.get("src") or attrs.get("href"))
        elif tag == "table":
            self.tables += 1
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.body_rows += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False


def rate_text(k: int, n: int) -> str:
    """A finding as the tables show it, made here from its counts."""
    if not n:
        return "—"
    low, high = wilson(k, n)
    return f"{k}/{n} = {k / n:.0%} [{low:.0%}, {high:.0%}]"


def finding_counts(records: list[Record]) -> dict[str, tuple[int, int]]:
    """(k, n) of each finding, counted here from the records."""
    right = [r for r in records if r.full_correct]
    wrong = [r for r in records if not r.full_correct]
    num_layers = records[0].num_layers
    return {
        "oracle_accuracy": (sum(r.best_correct for r in records), len(records)),
        "full_chain_accuracy": (len(right), len(records)),
        "shorter_when_right": (sum(r.best_correct and r.best_length < num_layers
                                   for r in right), len(right)),
        "fixed_when_wrong": (sum(r.best_correct for r in wrong), len(wrong)),
    }


def layer_use(records: list[Record]) -> list[tuple[int, int, int]]:
    """Per layer (used once, skipped, looped) over the best chains that are correct."""
    num_layers = records[0].num_layers
    out = []
    for layer in range(num_layers):
        copies = [parse_chain(r.best_chain, num_layers, 4 * num_layers).count(layer)
                  for r in records if r.best_correct]
        out.append((copies.count(1), copies.count(0), sum(c >= 2 for c in copies)))
    return out


def check_findings_files(board: Any, paths: dict) -> None:
    """findings.csv and layers_<task>.csv say what the records say, counted here; the
    markdown shows each oracle row's pooled findings with their counts and intervals."""
    with open(paths["findings"], newline="") as handle:
        lines = list(csv.DictReader(handle))
    searched = [r for r in board.rows if r.kind == "search"]
    assert len(lines) == sum(1 for r in searched for t in TASKS if r.records_of(t))
    markdown = paths["markdown"].read_text()
    for row in searched:
        for task in TASKS:
            (line,) = [ln for ln in lines if (ln["task"], ln["variant"]) == (task, row.variant)]
            for name, (k, n) in finding_counts(row.records_of(task)).items():
                if not row.oracle and name in ("shorter_when_right", "fixed_when_wrong"):
                    assert line[name] == line[f"{name}_k"] == ""
                    continue
                assert (int(line[f"{name}_k"]), int(line[f"{name}_n"])) == (k, n)
                if n:
                    low, high = wilson(k, n)
                    assert float(line[f"{name}_low"]) == round(low, 4)
                    assert float(line[f"{name}_high"]) == round(high, 4)
        if row.oracle:
            written = source_of(row)["config"]["cola_summary"]
            k, n = written["wrong_fixed_by_some_chain"], written["full_chain_wrong"]
            assert f"| {rate_text(k, n)} |" in markdown
    expected = {f"layers_{t}.csv" for t in TASKS if any(r.oracle and r.records_of(t)
                                                         for r in board.rows)}
    assert {p.name for p in paths["tables"]} == expected
    for path in paths["tables"]:
        with open(path, newline="") as handle:
            table = list(csv.DictReader(handle))
        for row in board.oracles:
            records = row.records_of(table[0]["task"])
            mine = [ln for ln in table if ln["variant"] == row.variant]
            assert [(int(ln["used_once"]), int(ln["skipped"]), int(ln["looped"]))
                    for ln in mine] == layer_use(records)
            assert {int(ln["samples"]) for ln in mine} == {len(records)}


def check_written(board: Any, paths: dict, limit: int, tables: int) -> None:
    """The csv, markdown, plots and html page written for ``board``."""
    from lm_eval_cola.reports import fmt_score

    with open(paths["csv"], newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(board.rows)  # every row, oracle or not, with an oracle column
    for line, row in zip(table, board.rows, strict=True):
        data = source_of(row)
        assert (line["model"], line["variant"]) == (row.model, row.variant)
        assert line["oracle"] == str(data["config"].get("cola_oracle", False))
        for task in TASKS:
            assert float(line[f"{task} value"]) == data["results"][task][MAIN_METRIC[task]]
            assert line[f"{task} metric"] == MAIN_METRIC[task]
            assert int(line[f"{task} samples"]) == limit
        assert abs(float(line["wall_seconds"])
                   - float(data["total_evaluation_time_seconds"])) < 1e-3
        if row.kind == "search":
            summary = data["config"]["cola_summary"]
            for key in ("shorter_when_right", "fixed_when_wrong"):
                expected = summary[key] if row.variant != "none" else None
                assert (line[key] == "") if expected is None else float(line[key]) == expected
    markdown = paths["markdown"].read_text()
    for row in board.rows:
        assert fmt_score(row.scores["arc_challenge"]) in markdown
    check_findings_files(board, paths)

    names = {p.name for p in paths["plots"]}
    for task in TASKS:
        assert {f"pareto_{task}.png", f"layers_{task}.png", f"lengths_{task}.png"} <= names
    import matplotlib.image

    for plot in paths["plots"]:
        assert plot.read_bytes().startswith(PNG)
        pixels = matplotlib.image.imread(plot)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and pixels.std() > 0.01

    parser = PageParser()
    parser.feed(paths["html"].read_text())
    assert parser.external == [], "the page must not load anything"
    assert len(parser.images) == len(paths["plots"])
    for image in parser.images:
        assert base64.b64decode(image.removeprefix("data:image/png;base64,")).startswith(PNG)
    assert parser.scripts == 1 and parser.tables == tables  # deployable, oracle, per task
    assert parser.body_rows >= len(board.rows)
