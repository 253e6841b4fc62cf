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

from lm_eval_cola.records import Record
from lm_eval_cola.summary import Summary

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
