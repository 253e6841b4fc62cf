"""The board's files (CSV, Markdown, HTML, plots) and the ``leaderboard`` command, from
fixture results and records files (no model runs)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from lm_eval_cola.reports import build_board, main, write_board
from lm_eval_cola.reports.render import (
    ORACLE_HEADING,
    ORACLE_NOTE,
    asset,
    board_table,
    to_html,
    to_markdown,
)
from tests.support.board_checks import check_written
from tests.support.reports_fixtures import LIMIT, load, make_runs, write_run

pytestmark = pytest.mark.quick

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    return make_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def written(runs, tmp_path_factory):
    board = build_board([runs["cmp"], runs["base"]])
    return board, write_board(board, tmp_path_factory.mktemp("board"))


def test_outputs_csv_markdown_html_and_plots(written):
    board, paths = written
    check_written(board, paths, LIMIT, tables=3)


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


def leaderboard_entry(name: str):
    """The leaderboard as ``python -m lm_eval_cola.reports`` or as ``lm-eval-cola
    leaderboard`` (the command table in cli.py) runs it."""
    if name == "reports":
        return main
    from lm_eval_cola.cli import main as cli_main

    return lambda argv: cli_main(["leaderboard", *argv])


@pytest.mark.parametrize("entry", ["reports", "lm-eval-cola"])
def test_missing_and_malformed_dirs_error_and_the_others_still_make_a_table(runs, tmp_path,
                                                                            capsys, entry):
    main = leaderboard_entry(entry)
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
