"""The board's series kinds (full model, static chain, pruning baseline, router, oracle), the
deployable / oracle split of its ranked tables, and the accuracy-vs-executed-depth plot, from
fixture results files (no model runs). Every number expected is read back from the files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from lm_eval_cola.reports import build_board, read_run_file, write_board
from lm_eval_cola.reports.plots import SERIES_STYLE, depth_points
from lm_eval_cola.reports.render import plot_series
from lm_eval_cola.reports.runs import (
    FULL_MODEL,
    ORACLE,
    PRUNING,
    ROUTER,
    SERIES_KINDS,
    STATIC_CHAIN,
    series_kind,
)
from tests.support.board_checks import check_oracle_rows_in_their_own_table
from tests.support.reports_fixtures import (
    MAIN_METRIC,
    NUM_LAYERS,
    PRETRAINED,
    TASKS,
    load,
    one_task_part,
    write_run,
)

pytestmark = pytest.mark.quick

ROUTER_FILE = "/routers/arc-router.json"
EXECUTED = 0.9167  # the router's executed depth: above its chains' 0.8333


def source(method: str) -> dict[str, Any]:
    return {"file": f"/chains/{method.replace(':', '_')}.json", "method": method,
            "task": "arc_challenge", "split": "validation", "samples": 64}


def chain_run(folder: Path, number: int, chain: str, depth: float, method: str | None = None,
              **config: Any) -> Path:
    """A cola_hf run of a fixed chain: chain text, or a chain file made by ``method``."""
    spec = f"/chains/{method.replace(':', '_')}.json" if method else chain
    extra = {"model_args": f"pretrained={PRETRAINED},device=cpu,chain={spec}",
             "cola_chain": chain, "cola_depth_ratio": depth, **config}
    if method:
        extra["cola_chain_source"] = source(method)
    return write_run(folder / f"run{number}", "chain:0+2-3", number=number, extra_config=extra)


def router_run(folder: Path, number: int) -> Path:
    return write_run(folder / f"run{number}", "chain:0+2-3", number=number, extra_config={
        "model": "cola_router", "model_args": f"pretrained={PRETRAINED},router={ROUTER_FILE}",
        "cola_chain": "router", "cola_router": ROUTER_FILE, "cola_depth_ratio": 0.8333,
        "cola_router_picks": {"0+2-3": 2, "0-3": 1}, "cola_executed_depth_ratio": EXECUTED})


def make_all(root: Path) -> dict[str, Path]:
    """One results file per kind (two static chains), by name."""
    return {
        "hf": write_run(root / "hf", "hf", number=0),
        "none": write_run(root / "none", "none", number=1),
        "identity": chain_run(root, 2, "0-3", 1.0),
        "calibrate": chain_run(root, 3, "0-1+3", 0.75, "calibrate:greedy"),
        "text": chain_run(root, 4, "0+2-3", 0.75),
        "sleb": chain_run(root, 5, "0-2", 0.75, "sleb"),
        "router": router_run(root, 6),
        "mcts": write_run(root / "mcts", "mcts", number=7),
    }


EXPECTED = {"hf": FULL_MODEL, "none": FULL_MODEL, "identity": FULL_MODEL,
            "calibrate": STATIC_CHAIN, "text": STATIC_CHAIN, "sleb": PRUNING, "router": ROUTER,
            "mcts": ORACLE}


@pytest.fixture
def runs(tmp_path) -> dict[str, Path]:
    return make_all(tmp_path / "runs")


def row_of(board: Any, path: Path) -> Any:
    (row,) = [r for r in board.rows if path in r.sources]
    return row


# ---------------------------------------------------------------------------- kinds


def test_each_run_is_classified_by_what_its_config_says(runs):
    for name, path in runs.items():
        run = read_run_file(path)
        assert run.series_kind == EXPECTED[name], name
    plain = read_run_file(runs["hf"])
    assert (plain.kind, plain.depth_ratio) == ("plain", 1.0)  # lm-eval's hf: the full model
    router = read_run_file(runs["router"])
    config = load(runs["router"])["config"]
    assert router.variant == "router arc-router.json"
    assert router.depth_ratio == config["cola_depth_ratio"]
    assert router.executed_depth_ratio == config["cola_executed_depth_ratio"]
    assert read_run_file(runs["sleb"]).source_method == "sleb"
    assert read_run_file(runs["text"]).source_method is None


@pytest.mark.parametrize(("config", "kind"), [
    ({"model": "hf"}, FULL_MODEL),
    ({"model": "cola_hf", "cola_chain": "0-3", "cola_num_layers": 4}, FULL_MODEL),
    ({"model": "cola_hf", "cola_chain": "0-31", "cola_num_layers": 32}, FULL_MODEL),
    ({"model": "cola_hf", "cola_chain": "3-0", "cola_num_layers": 4,
      "cola_depth_ratio": 1.0}, STATIC_CHAIN),  # every layer once, but not in order
    ({"model": "cola_hf", "cola_chain": "0-3", "cola_depth_ratio": 1.0}, FULL_MODEL),
    ({"model": "cola_hf", "cola_chain": "0-3", "cola_num_layers": 4,
      "cola_chain_source": source("calibrate:greedy")}, STATIC_CHAIN),  # from a chain file
    ({"model": "cola_hf", "cola_chain": "0+2-3", "cola_num_layers": 4,
      "cola_chain_source": source("consensus")}, STATIC_CHAIN),
    ({"model": "cola_hf", "cola_chain": "0+2-3", "cola_num_layers": 4,
      "cola_chain_source": source("something_new")}, STATIC_CHAIN),
    ({"model": "cola_hf", "cola_chain": "0+2-3", "cola_num_layers": 4,
      "cola_chain_source": source("block_influence")}, PRUNING),
    ({"model": "cola_hf", "cola_chain": "0+2-3", "cola_num_layers": 4,
      "cola_chain_source": source("sleb_oneshot")}, PRUNING),
    ({"model": "cola_router", "cola_chain": "router", "cola_num_layers": 4}, ROUTER),
    ({"model": "cola_hf", "cola_chain": "0-3", "cola_num_layers": 4, "cola_searcher": "none",
      "cola_oracle": False}, FULL_MODEL),
    ({"model": "cola_mcts", "cola_chain": "0-3", "cola_searcher": "mcts",
      "cola_oracle": True}, ORACLE),
    ({"model": "cola_greedy", "cola_chain": "0-3", "cola_searcher": "greedy"}, ORACLE),  # old
])
def test_series_kind_rules(config, kind):
    assert series_kind(config) == kind


# ---------------------------------------------------------------------------- tables


def test_oracle_and_deployable_rows_never_share_a_ranked_table(runs):
    # the oracle scores best everywhere: it must still stay out of the deployable ranking
    data = load(runs["mcts"])
    for task in TASKS:
        data["results"][task][MAIN_METRIC[task]] = 1.0
    runs["mcts"].write_text(json.dumps(data))
    board = build_board([runs["mcts"].parents[1]])
    assert {r.series_kind for r in board.rows} == set(SERIES_KINDS)
    assert board.rows == board.deployable + board.oracles
    assert [r.series_kind for r in board.oracles] == [ORACLE]
    assert all(r.series_kind != ORACLE for r in board.deployable)
    assert max(r.average for r in board.rows) == board.oracles[0].average == 1.0

    from lm_eval_cola.reports.tables import board_table

    head, body = board_table(board, oracle=False)
    assert head[:4] == ["Model", "Variant", "Kind", "Settings"]
    assert [cells[1][0] for cells in body] == [r.variant for r in board.deployable]
    assert "mcts" not in [cells[1][0] for cells in body]
    kinds = {cells[1][0]: cells[2][0] for cells in body}
    assert kinds["chain 0-2"] == "pruning baseline (sleb)"
    assert kinds["chain 0-1+3"] == "static chain (calibrate:greedy)"
    assert kinds["chain 0+2-3"] == "static chain" and kinds["hf"] == "full model"
    assert kinds["router arc-router.json"] == "router"
    executed = {cells[1][0]: cells[head.index("Executed depth")][1] for cells in body}
    assert executed["router arc-router.json"] == EXECUTED
    assert executed["chain 0-2"] == 0.75
    oracle_head, oracle_body = board_table(board, oracle=True)
    assert "Kind" not in oracle_head and [c[1][0] for c in oracle_body] == ["mcts"]

    check_oracle_rows_in_their_own_table(board)


def test_no_executed_depth_column_without_a_router(tmp_path):
    write_run(tmp_path / "hf", "hf", number=0)
    chain_run(tmp_path, 1, "0-2", 0.75, "block_influence")
    from lm_eval_cola.reports.tables import board_table

    head, body = board_table(build_board([tmp_path]), oracle=False)
    assert "Executed depth" not in head and "Kind" in head
    assert sorted(cells[2][0] for cells in body) == ["full model",
                                                     "pruning baseline (block_influence)"]


# ---------------------------------------------------------------------------- the plot


def test_depth_plot_has_one_series_per_kind_and_the_router_at_its_executed_depth(runs,
                                                                                   tmp_path):
    board = build_board([runs["mcts"].parents[1]])
    series = plot_series(board)
    for task in TASKS:
        _, rows = series[task]
        points = depth_points(rows)
        assert list(points) == list(SERIES_KINDS)  # every kind present, in order
        assert sorted(p.name for p in points[STATIC_CHAIN]) == ["chain 0+2-3", "chain 0-1+3"]
        assert len(points[FULL_MODEL]) == 3 and len(points[PRUNING]) == 1
        for name, path in runs.items():
            results = load(path)
            row = row_of(board, path)
            (point,) = [p for p in points[row.series_kind] if p.name == row.variant]
            metric, _, filt = MAIN_METRIC[task].partition(",")
            if name != "mcts":  # an oracle shows its oracle's metric, checked below
                assert point.value == results["results"][task][MAIN_METRIC[task]]
                assert point.stderr == results["results"][task][f"{metric}_stderr,{filt}"]
            if name == "router":
                assert point.depth == results["config"]["cola_executed_depth_ratio"]
                assert point.depth != results["config"]["cola_depth_ratio"]
            elif name == "mcts":  # the mean depth of its best chains on this task
                records = [r for r in row.records if r.task == task]
                assert point.depth == pytest.approx(
                    sum(r.best_length for r in records) / len(records) / NUM_LAYERS, abs=1e-4)
            else:
                assert point.depth == results["config"].get("cola_depth_ratio", 1.0)
    assert "oracle" in SERIES_STYLE[ORACLE][0]
    assert len({style[1:] for style in SERIES_STYLE.values()}) == len(SERIES_STYLE)

    paths = write_board(board, tmp_path / "board")
    names = [p.name for p in paths["plots"]]
    for task in TASKS:
        assert names.index(f"depth_{task}.png") == names.index(f"pareto_{task}.png") + 1
        assert (tmp_path / "board" / f"depth_{task}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"![depth_{task}](depth_{task}.png)" in paths["markdown"].read_text()
        assert f'alt="depth_{task}"' in paths["html"].read_text()
    with open(paths["csv"], newline="") as handle:
        table = {line["variant"]: line for line in csv.DictReader(handle)}
    assert table["router arc-router.json"]["series_kind"] == ROUTER
    assert float(table["router arc-router.json"]["executed_depth_ratio"]) == EXECUTED
    assert table["chain 0-2"]["chain_source_method"] == "sleb"
    assert table["mcts"]["series_kind"] == ORACLE


def test_points_without_a_stderr_and_kinds_absent(tmp_path):
    path = router_run(tmp_path, 0)
    data = load(path)
    for task in TASKS:
        metric, _, filt = MAIN_METRIC[task].partition(",")
        data["results"][task].pop(f"{metric}_stderr,{filt}")
    path.write_text(json.dumps(data))
    write_run(tmp_path / "hf", "hf", number=1)
    board = build_board([tmp_path])
    _, rows = plot_series(board)["arc_challenge"]
    points = depth_points(rows)
    assert list(points) == [FULL_MODEL, ROUTER]
    assert points[ROUTER][0].stderr is None and points[FULL_MODEL][0].stderr is not None
    paths = write_board(board, tmp_path / "board")
    assert "depth_arc_challenge.png" in [p.name for p in paths["plots"]]


def test_a_router_split_over_files_keeps_each_tasks_executed_depth(tmp_path):
    first = router_run(tmp_path, 0)
    data = load(first)
    for number, task in enumerate(TASKS):
        part = one_task_part(data, task, number)
        part["config"]["cola_executed_depth_ratio"] = 0.9 + number / 100
        (first.parent / f"results_{number + 1:04d}.json").write_text(json.dumps(part))
    first.unlink()
    (row,) = build_board([tmp_path]).rows
    assert [row.executed_depth(t) for t in TASKS] == [0.9, 0.91]


def test_a_plain_run_of_an_export_is_its_chains_row(tmp_path):
    export = tmp_path / "export-bi"
    export.mkdir()
    (export / "cola_chain.json").write_text(json.dumps({
        "chain": "0+2-3", "num_layers": 4, "depth_ratio": 0.75, "method": "block_influence"}))
    path = write_run(tmp_path / "hf", "hf", extra_config={
        "model_args": f"pretrained={export},device=cpu"})
    run = read_run_file(path)
    assert (run.series_kind, run.depth_ratio, run.source_method) == (PRUNING, 0.75,
                                                                     "block_influence")
    assert run.variant == "hf export 0+2-3"
    (export / "cola_chain.json").unlink()  # an ordinary checkpoint: the full model
    assert read_run_file(path).series_kind == FULL_MODEL
