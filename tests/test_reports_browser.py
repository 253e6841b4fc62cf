"""The leaderboard page as a person sees it, in headless Chromium (fixture runs, no model):
the tables render with the right cells, clicking a column header sorts by that column (both
directions, missing values last), and the plots load. Skipped where no Chromium is installed
(Debian: ``apt-get install chromium``), unless ``COLA_REQUIRE_BROWSER`` is set."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lm_eval_cola.reports import build_board, write_board
from lm_eval_cola.reports.render import board_table, task_table
from tests.support.reports_browser import Browser, find_browser, page_url
from tests.support.reports_fixtures import make_runs

BROWSER = find_browser()
# CI sets COLA_REQUIRE_BROWSER=1 so that a missing browser fails there instead of skipping.
if BROWSER is None and os.environ.get("COLA_REQUIRE_BROWSER"):
    raise RuntimeError("COLA_REQUIRE_BROWSER is set but no chromium is on PATH "
                       "(apt-get install chromium)")
pytestmark = [pytest.mark.quick, pytest.mark.skipif(
    BROWSER is None, reason="no chromium on PATH (apt-get install chromium): the leaderboard "
                            "page is not checked in a browser")]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    runs = make_runs(root / "runs")
    board = build_board([runs["cmp"], runs["base"]])
    paths = write_board(board, root / "board")
    with Browser(BROWSER) as browser:
        browser.open(page_url(paths["html"]))
        yield browser, board, paths


def visible_cells(browser: Browser, table: str) -> list[list[str]]:
    """The body rows' cell texts as drawn: every row must have a box on the page."""
    rows = browser.evaluate(f"""Array.from(document.querySelectorAll({json.dumps(table)}
        + ' tbody tr')).map(function (row) {{
          var box = row.getBoundingClientRect(), style = getComputedStyle(row);
          return {{shown: box.width > 0 && box.height > 0 && style.visibility === 'visible'
                          && style.display !== 'none',
                   cells: Array.from(row.cells).map(function (c) {{ return c.innerText; }})}};
        }})""")
    assert rows and all(r["shown"] for r in rows), rows
    return [r["cells"] for r in rows]


def headers(browser: Browser, table: str) -> list[str]:
    return browser.evaluate(f"Array.from(document.querySelectorAll({json.dumps(table)}"
                            " + ' thead th')).map(function (h) { return h.textContent; })")


def click_header(browser: Browser, table: str, name: str) -> str:
    """Click the column's header with the mouse; returns its aria-sort afterwards."""
    column = headers(browser, table).index(name) + 1
    selector = f"{table} thead th:nth-child({column})"
    browser.click(selector)
    return browser.evaluate(f"document.querySelector({json.dumps(selector)})"
                            ".getAttribute('aria-sort')")


def test_the_tables_render_with_the_boards_cells(page):
    browser, board, _ = page
    assert browser.evaluate("document.title") == "Leaderboard"
    for table, oracle in (("#board", False), ("#oracle-board", True)):
        head, body = board_table(board, oracle=oracle)
        assert headers(browser, table) == head
        assert visible_cells(browser, table) == [[text for text, _ in cells] for cells in body]
    head, body = task_table(board)
    assert headers(browser, "#per-task") == head
    assert visible_cells(browser, "#per-task") == [[text for text, _ in cells] for cells in body]
    assert browser.console_errors() == []


def test_clicking_a_header_sorts_by_that_column(page):
    browser, board, _ = page
    rows = board.deployable
    variants = [r.variant for r in rows]

    def shown() -> list[str]:
        return [cells[1] for cells in visible_cells(browser, "#board")]

    assert shown() == variants  # as ranked: by average, best first
    # wall time: sorted by the seconds, not by the text ("84.0 s" against "2.5 min")
    by_time = [r.variant for r in sorted(rows, key=lambda r: r.wall_seconds, reverse=True)]
    assert by_time != variants
    assert click_header(browser, "#board", "Wall time") == "descending"
    assert shown() == by_time
    assert click_header(browser, "#board", "Wall time") == "ascending"
    assert shown() == by_time[::-1]
    assert click_header(browser, "#board", "Variant") == "descending"
    assert shown() == sorted(variants, reverse=True)
    # the keyboard works as well as the mouse
    browser.evaluate("document.querySelector('#board thead th:nth-child(2)').focus()")
    for kind in ("keyDown", "keyUp"):
        browser.send("Input.dispatchKeyEvent", {"type": kind, "key": "Enter", "code": "Enter",
                                                "windowsVirtualKeyCode": 13})
    assert shown() == sorted(variants)
    assert click_header(browser, "#board", "Average") == "descending"
    assert shown() == variants
    assert browser.console_errors() == []


def share_shown(text: str) -> float:
    """The share a findings cell shows: ``k/n = 35% [17%, 59%]`` -> k/n."""
    k, _, n = text.partition(" = ")[0].partition("/")
    return int(k) / int(n)


def test_missing_values_stay_last_in_both_directions(page):
    browser, board, _ = page
    column = headers(browser, "#per-task").index("Shorter when right")
    for direction in ("descending", "ascending"):
        assert click_header(browser, "#per-task", "Shorter when right") == direction
        values = [cells[column] for cells in visible_cells(browser, "#per-task")]
        present = [share_shown(v) for v in values if v != "—"]
        assert "—" in values and values[len(present):] == ["—"] * (len(values) - len(present))
        assert present == sorted(present, reverse=direction == "descending")


def test_the_plots_load(page):
    browser, _, paths = page
    images = browser.evaluate("""Array.from(document.images).map(function (img) {
        img.scrollIntoView();
        return {complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
                drawn: img.getBoundingClientRect().width, alt: img.alt}; })""")
    assert [i["alt"] for i in images] == [Path(p).stem for p in paths["plots"]]
    for image in images:
        assert image["complete"] and image["width"] > 100 and image["height"] > 100, image
        assert image["drawn"] > 0, image
