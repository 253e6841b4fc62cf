"""The board's files (CSV, Markdown, HTML, plots) and the ``leaderboard`` command, from
fixture results and records files (no model runs)."""

from __future__ import annotations

import base64
import csv
import html
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from lm_eval_cola.reports import build_board, fmt_score, main, write_board
from lm_eval_cola.reports.render import (
    ORACLE_HEADING,
    ORACLE_NOTE,
    asset,
    board_table,
    to_html,
    to_markdown,
)
from tests.reports_fixtures import LIMIT, MAIN_METRIC, TASKS, load, make_runs, write_run

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    return make_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def written(runs, tmp_path_factory):
    board = build_board([runs["cmp"], runs["base"]])
    return board, write_board(board, tmp_path_factory.mktemp("board"))


def source_of(row) -> dict:
    (path,) = row.sources
    return load(path)


class PageParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.external, self.images = [], []
        self.scripts = self.tables = self.body_rows = 0
        self._in_body = False

    def handle_starttag(self, tag, attrs):
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

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False


def test_outputs_csv_markdown_html_and_plots(written):
    board, paths = written
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
            assert int(line[f"{task} samples"]) == LIMIT
        assert float(line["wall_seconds"]) == pytest.approx(
            float(data["total_evaluation_time_seconds"]), abs=1e-3)
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

    page = paths["html"].read_text()
    parser = PageParser()
    parser.feed(page)
    assert parser.external == [], "the page must not load anything"
    assert len(parser.images) == len(paths["plots"])
    for image in parser.images:
        assert base64.b64decode(image.removeprefix("data:image/png;base64,")).startswith(PNG)
    assert parser.scripts == 1 and parser.tables == 3  # deployable, oracle, per task
    assert parser.body_rows >= len(board.rows)


def test_oracle_rows_have_their_own_table_with_the_note(written):
    board, paths = written
    lines = paths["markdown"].read_text().splitlines()
    heading = lines.index(f"### {ORACLE_HEADING}")
    assert ORACLE_NOTE in lines[heading + 2].lower()
    tables = [n for n, ln in enumerate(lines) if ln.startswith("| Model | Variant |")]
    assert len(tables) == 2 and tables[0] < heading < tables[1]
    # findings columns: only where a gold answer chose the chains
    assert "Shorter when right" not in lines[tables[0]] and "Shorter when right" in lines[
        tables[1]]
    _, deployable = board_table(board, oracle=False)
    assert [cells[1][0] for cells in deployable] == [r.variant for r in board.deployable]
    page = paths["html"].read_text()
    note = page.index(html.escape(ORACLE_NOTE))
    assert page.index('id="board"') < note < page.index('id="oracle-board"')


def test_no_oracle_section_without_oracle_rows(runs):
    board = build_board([runs["base"]])
    assert board.oracles == []
    assert ORACLE_HEADING not in to_markdown(board) and ORACLE_NOTE not in to_html(board)


def test_page_inlines_its_css_and_js_from_package_data(written):
    _, paths = written
    page = paths["html"].read_text()
    for name in ("board.css", "board.js"):
        text = asset(name)
        assert len(text) > 200 and text in page


def test_text_from_the_inputs_is_escaped(tmp_path):
    path = write_run(tmp_path, "hf", extra_config={"model_args": "pretrained=<b>x|y</b>"})
    data = load(path)
    data.pop("model_name")
    path.write_text(json.dumps(data))
    board = build_board([tmp_path])
    assert board.rows[0].model == "<b>x|y</b>"
    assert "<b>x" not in to_html(board) and "&lt;b&gt;x|y&lt;/b&gt;" in to_html(board)
    assert "| <b>x\\|y</b> |" in to_markdown(board)


def test_missing_and_malformed_dirs_error_and_the_others_still_make_a_table(runs, tmp_path,
                                                                            capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results_2024.json").write_text('{"results": ')
    alien = tmp_path / "alien"
    alien.mkdir()
    (alien / "results_1.json").write_text('{"something": "else"}')
    missing = tmp_path / "missing"
    out = tmp_path / "board"
    status = main([str(missing), str(empty), str(runs["cmp"]), str(broken), str(alien),
                   "--out", str(out), "--no_plots"])
    captured = capsys.readouterr()
    errors = [ln for ln in captured.err.splitlines() if ln.startswith("error: ")]
    assert errors == [
        f"error: run directory {str(missing)!r} does not exist",
        f"error: no lm-eval results files (results*.json) under {str(empty)!r}",
        errors[2],
        f"error: {str(alien / 'results_1.json')!r} is not an lm-eval results file "
        "(no 'results' and 'config' objects)",
    ]
    assert errors[2].startswith(f"error: {str(broken / 'results_2024.json')!r} is not valid JSON")
    assert status == 1
    assert "| none |" in captured.out and "| mcts |" in captured.out
    assert (out / "leaderboard.md").is_file() and (out / "leaderboard.html").is_file()
    assert not list(out.glob("*.png"))
    assert "error: " in (out / "leaderboard.html").read_text()  # the page says so too

    status = main([str(missing), str(broken)])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.startswith("error: no usable lm-eval results in")
    assert len(captured.err.strip().splitlines()) == 1


def test_printing_only_writes_nothing(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([str(runs["cmp"]), "--title", "Searchers"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("## Searchers\n") and captured.err == ""
    assert list(tmp_path.iterdir()) == []
