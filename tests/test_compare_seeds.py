"""``compare --seeds N``: a searcher variant run with N seeds, and its one row on the board
(mean ± sd over the seeds, with N).

The board is checked on fixture results files (no model): every expected number is read
from those files here. One test runs ``compare --seeds 2`` end to end on the tiny model.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
from pathlib import Path

import pytest

from lm_eval_cola.errors import UserError
from lm_eval_cola.reports import build_board, write_board
from lm_eval_cola.reports.render import to_markdown
from lm_eval_cola.reports.tables import board_table, task_table
from tests.support.board_checks import finding_counts, rate_text
from tests.support.cli_helpers import arc_task_manager, run_subcommand
from tests.support.reports_fixtures import SEED, TASKS, load, write_run

pytestmark = pytest.mark.quick

SEEDS = [SEED, SEED + 1, SEED + 2]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """mcts with three seeds (a folder each), random with one, and none."""
    root = tmp_path_factory.mktemp("seeds")
    files = {seed: write_run(root / "mcts" / f"seed{seed}", "mcts", number=n, seed=seed)
             for n, seed in enumerate(SEEDS)}
    write_run(root / "random", "random", number=5)
    write_run(root / "none", "none", number=6)
    board = build_board([root])
    return board, files, root


def shares(files: dict[int, Path], part: str, whole: str) -> list[float]:
    counts = [load(f)["config"]["cola_summary"] for f in files.values()]
    return [c[part] / c[whole] for c in counts]


def test_seeds_of_a_variant_are_one_row_with_mean_and_sd(seeded):
    board, files, _ = seeded
    assert not board.warnings
    assert [r.variant for r in board.rows] == ["none"] + [r.variant for r in board.oracles]
    (row,) = [r for r in board.rows if r.variant == "mcts"]
    assert row.oracle and row in board.oracles and row.seeds == SEEDS
    assert row.settings == "budget=4, N=3 seeds 1234-1236"
    assert sorted(row.sources) == sorted(files.values())
    results = [load(f)["results"] for f in files.values()]
    for task, metric in (("arc_challenge", "acc,none"), ("gsm8k", "exact_match,strict-match")):
        values = [r[task][metric] for r in results]
        assert row.scores[task].value == pytest.approx(statistics.mean(values))
        assert row.score_sd[task] == pytest.approx(statistics.stdev(values))
    averages = [statistics.mean(r[t][m] for t, m in (("arc_challenge", "acc,none"),
                                                     ("gsm8k", "exact_match,strict-match")))
                for r in results]
    assert row.average == pytest.approx(statistics.mean(averages))
    assert len(row.records) == sum(len(m.records) for m in row.members) == 3 * 2 * 3

    head, body = board_table(board, oracle=True)
    (cells,) = [c for c in body if c[1][0] == "mcts"]
    values = [r["gsm8k"]["exact_match,strict-match"] for r in results]
    assert cells[3 + TASKS.index("gsm8k")][0] == (
        f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} sd")
    fixed = shares(files, "wrong_fixed_by_some_chain", "full_chain_wrong")
    (wrong,) = {load(f)["config"]["cola_summary"]["full_chain_wrong"] for f in files.values()}
    assert cells[head.index("Fixed when wrong")][0] == (
        f"{statistics.mean(fixed):.1%} ± {statistics.stdev(fixed):.1%} (n={wrong})")
    assert "N=3 seeds 1234-1236" in cells[2][0]
    # a variant with one seed looks as it always did
    (single,) = [c for c in body if c[1][0] == "random"]
    summary = load(next(r for r in board.rows if r.variant == "random").sources[0])[
        "config"]["cola_summary"]
    assert single[2][0] == "budget=4, seed=1234"
    assert single[head.index("Fixed when wrong")][0] == rate_text(
        summary["wrong_fixed_by_some_chain"], summary["full_chain_wrong"])
    assert "mean ± sd over the seeds" in to_markdown(board)


def test_runs_seeded_by_lm_evals_seed_flag_are_seeds_not_one_superseded_row(tmp_path):
    """``lm_eval --seed 1`` and ``--seed 2`` put no seed= in model_args; the results' search
    seed (``cola_seed``) keeps them apart, as two seeds of one row."""
    for n, seed in enumerate(SEEDS[:2]):
        path = write_run(tmp_path / f"s{seed}", "mcts", number=n, seed=seed)
        data = load(path)
        args = data["config"]["model_args"].split(",")
        data["config"]["model_args"] = ",".join(a for a in args if not a.startswith("seed="))
        path.write_text(json.dumps(data))
    (row,) = [r for r in build_board([tmp_path]).rows if r.variant == "mcts"]
    assert row.seeds == SEEDS[:2]


def test_per_task_findings_over_seeds(seeded):
    board, _, _ = seeded
    (row,) = [r for r in board.rows if r.variant == "mcts"]
    head, body = task_table(board)
    for task in TASKS:
        (cells,) = [c for c in body if c[0][0] == task and c[2][0] == row.label]
        assert cells[head.index("Samples")][0] == "3 ×3"
        for header, name in (("Oracle acc", "oracle_accuracy"),
                             ("Shorter when right", "shorter_when_right")):
            counts = [finding_counts(m.records_of(task))[name] for m in row.members]
            per_seed = [k / n for k, n in counts if n]
            (whole,) = {n for _, n in counts}  # the full chain's answers: the same each seed
            assert cells[head.index(header)][0] == (
                f"{statistics.mean(per_seed):.1%} ± "
                f"{statistics.stdev(per_seed) if len(per_seed) > 1 else 0:.1%} (n={whole})")


def test_seed_rows_in_the_files(seeded, tmp_path):
    board, files, _ = seeded
    paths = write_board(board, tmp_path / "board")
    with open(paths["csv"], newline="") as handle:
        (line,) = [ln for ln in csv.DictReader(handle) if ln["variant"] == "mcts"]
    assert line["seeds"] == "1234;1235;1236" and line["seed"] == ""
    values = [load(f)["results"]["arc_challenge"]["acc,none"] for f in files.values()]
    assert float(line["arc_challenge value"]) == pytest.approx(statistics.mean(values))
    assert float(line["arc_challenge sd"]) == pytest.approx(statistics.stdev(values))
    fixed = shares(files, "wrong_fixed_by_some_chain", "full_chain_wrong")
    assert float(line["fixed_when_wrong_sd"]) == pytest.approx(statistics.stdev(fixed), abs=1e-6)
    assert line["fixed_when_wrong_k"] == ""  # counts belong to one seed's row
    with open(tmp_path / "board" / "layers_arc_challenge.csv", newline="") as handle:
        layers = [ln for ln in csv.DictReader(handle) if ln["variant"] == "mcts"]
    assert sorted({int(ln["seed"]) for ln in layers}) == SEEDS
    assert {p.name for p in paths["plots"]} >= {"layers_arc_challenge.png",
                                                "pareto_gsm8k.png"}


def test_seeds_make_one_variant_a_run_each(tmp_path):
    from lm_eval_cola.cli.compare import make_variants

    variants = make_variants(["none", "mcts", "chain:0-3"], tmp_path, "", 7, 3, seeds=2)
    assert [(v.name, v.seed, v.folder) for v in variants] == [
        ("none", 7, tmp_path / "none"), ("mcts", 7, tmp_path / "mcts" / "seed7"),
        ("mcts", 8, tmp_path / "mcts" / "seed8"), ("chain:0-3", None, tmp_path / "chain-0-3")]
    assert [v.model_args for v in variants[:3]] == ["searcher=none,seed=7",
                                                    "seed=7,budget=3", "seed=8,budget=3"]
    assert {v.search_folder for v in variants[1:3]} == {tmp_path / "mcts"}
    (one,) = make_variants(["mcts"], tmp_path, "", 7, 3)
    assert (one.folder, one.model_args) == (tmp_path / "mcts", "seed=7,budget=3")


# ---------------------------------------------------------------------------- end to end


@pytest.mark.tiny
@pytest.mark.skipif(not os.environ.get("COLA_DATA_DIR"),
                    reason="needs COLA_DATA_DIR (local benchmark data)")
def test_compare_seeds_end_to_end(tiny_llama_dir, tmp_path, capsys, monkeypatch):
    from lm_eval_cola.cli import compare as compare_module

    manager = arc_task_manager()
    argv = ["--searchers", "none,random", "--tasks", "arc_challenge", "--limit", "2",
            "--budget", "3", "--seeds", "2", "--output", str(tmp_path / "cmp"),
            "--model_args", f"pretrained={tiny_llama_dir},device=cpu",
            "--board", str(tmp_path / "board")]
    assert run_subcommand(compare_module, argv, manager) == 0
    out = capsys.readouterr().out
    files = {k: next((tmp_path / "cmp" / "random" / f"seed{k}").rglob("results_*.json"))
             for k in (1234, 1235)}
    assert [load(f)["config"]["cola_seed"] for f in files.values()] == [1234, 1235]
    assert len(list((tmp_path / "cmp" / "none").rglob("results_*.json"))) == 1
    board = build_board([tmp_path / "cmp"])
    (row,) = board.oracles
    assert row.seeds == [1234, 1235] and "N=2 seeds 1234-1235" in out
    values = [load(f)["results"]["arc_challenge"]["acc,none"] for f in files.values()]
    assert row.scores["arc_challenge"].value == pytest.approx(statistics.mean(values))
    assert (tmp_path / "board" / "layers_arc_challenge.csv").is_file()
    # again: every seed is complete, so nothing runs; a third seed runs alone
    calls: list = []
    monkeypatch.setattr(compare_module, "run_variant", lambda v, *a, **k: calls.append(v))
    done = compare_module.compare(["none", "random"], ["arc_challenge"], tmp_path / "cmp",
                                  limit=2, budget=3, seeds=3, task_manager=manager,
                                  model_args=f"pretrained={tiny_llama_dir},device=cpu")
    assert [s for _, s in done] == ["skipped", "skipped", "skipped", "ran"]
    assert [(v.name, v.seed) for v in calls] == [("random", 1236)]


def test_a_variant_can_carry_its_own_settings(tmp_path):
    """``mcts:actions=skip;block_sizes=1`` (Table 1's columns): the searcher's model with
    those settings, over --model_args, in a folder of its own; bad forms are refused."""
    from lm_eval_cola.cli.compare import make_variants

    variants = make_variants(["random", "mcts:actions=skip;block_sizes=1", "mcts:actions=loop"],
                             tmp_path, "actions=swap,dtype=float32", 3, 20)
    assert [(v.model, v.model_args) for v in variants] == [
        ("cola_random", "actions=swap,dtype=float32,seed=3,budget=20"),
        ("cola_mcts", "dtype=float32,actions=skip,block_sizes=1,seed=3,budget=20"),
        ("cola_mcts", "dtype=float32,actions=loop,seed=3,budget=20")]
    assert len({v.folder for v in variants}) == 3
    for bad, says in [("mcts:", "key=value"), ("mcts:skip", "key=value"),
                      ("mcts:budget=5", "'budget' is set by compare"),
                      ("nope:actions=skip", "unknown variant")]:
        with pytest.raises(UserError, match=says):
            make_variants([bad], tmp_path, "", 0, None)
