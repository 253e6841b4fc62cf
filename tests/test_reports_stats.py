"""The statistics the board prints (fixture runs, no model): each finding with its counts and
Wilson 95% interval, the decoy control beside it and the paired test of the two (with the
samples that had no decoy), the depth of shortened and fixed samples, edits and cost, the
layer-use table, and the task metric of the run's oracle.

Every expected number is counted here from the fixture records or read from the fixture
results files, never taken from the code under test.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lm_eval_cola.chains.syntax import full_chain, parse_chain
from lm_eval_cola.reports import Rate, build_board, write_board
from lm_eval_cola.reports.findings import Findings
from lm_eval_cola.reports.render import to_markdown
from lm_eval_cola.reports.tables import board_table, notes, task_table
from lm_eval_cola.results.stats import (
    ABOVE,
    UNDECIDED,
    edit_distance,
    mcnemar_exact,
    paired_difference_interval,
    wilson,
)
from lm_eval_cola.results.summary import Summary
from tests.support.board_checks import finding_counts, rate_text
from tests.support.reports_fixtures import (
    NUM_LAYERS,
    OTHER_METRIC,
    load,
    make_records,
    make_runs,
    write_run,
)

pytestmark = pytest.mark.quick


@pytest.fixture(scope="module")
def decoy_board(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoy")
    write_run(root / "none", "none", number=0)
    # 9 samples a task, every third without a decoy: 6 pairs a task
    write_run(root / "mcts", "mcts", number=1, decoy=True, no_decoy=True, limit=9)
    write_run(root / "greedy", "greedy", number=2)
    board = build_board([root])
    return board, write_board(board, root / "board", plots=False)


def column(head: list[str], body: list[list], name: str) -> list[str]:
    return [cells[head.index(name)][0] for cells in body]


def test_a_rate_shows_its_counts_and_wilson_interval():
    assert Rate(6, 17).text == "6/17 = 35% [17%, 59%]"
    assert Rate(0, 5).text == "0/5 = 0% [0%, 43%]" and Rate(0, 0).text == "—"
    low, high = wilson(6, 17)
    assert Rate(6, 17).csv() == {"": round(6 / 17, 4), "_k": 6, "_n": 17,
                                 "_low": round(low, 4), "_high": round(high, 4)}


def test_per_task_findings_are_counted_from_the_records(decoy_board):
    board, _ = decoy_board
    head, body = task_table(board)
    assert head[:5] == ["Task", "Model", "Variant", "Samples", "Full-chain acc"]
    names = {"Oracle acc": "oracle_accuracy", "Full-chain acc": "full_chain_accuracy",
             "Shorter when right": "shorter_when_right", "Fixed when wrong": "fixed_when_wrong"}
    for cells in body:
        task, variant = cells[0][0], cells[2][0].partition(" (")[0]
        (row,) = [r for r in board.rows if r.variant == variant]
        records = row.records_of(task)
        assert cells[3][0] == str(len(records))
        for header, name in names.items():
            text = cells[head.index(header)][0]
            k, n = finding_counts(records)[name]
            if not row.oracle and name in ("shorter_when_right", "fixed_when_wrong"):
                assert text == "—"
            else:
                assert text == rate_text(k, n)
        # the depth of the shortened and of the fixed samples apart, edits and cost
        shortened = [r for r in records if r.full_correct and r.best_correct
                     and r.best_length < NUM_LAYERS]
        fixed = [r for r in records if not r.full_correct and r.best_correct]
        for header, group in (("Depth shortened", shortened), ("Depth fixed", fixed)):
            expected = (f"{sum(r.best_length for r in group) / len(group) / NUM_LAYERS:.3f}"
                        if group else "—")
            assert cells[head.index(header)][0] == expected
        edits = [edit_distance(parse_chain(r.best_chain, NUM_LAYERS, 16), full_chain(NUM_LAYERS))
                 for r in records]
        assert cells[head.index("Edits")][0] == f"{sum(edits) / len(edits):.2f}"
        cost = sum(r.evaluated_layers for r in records) / len(records)
        assert cells[head.index("Layers/sample")][0] == f"{cost:.1f}"
        evaluations = sum(r.evaluations for r in records) / len(records)
        assert cells[head.index("Evals/sample")][0] == f"{evaluations:.2f}"


def test_the_decoy_control_sits_beside_each_finding(decoy_board):
    board, paths = decoy_board
    for head, _ in (task_table(board), board_table(board, oracle=True)):
        assert head.index("Decoy shortened (right)") == head.index("Shorter when right") + 1
        assert head.index("Decoy reached (wrong)") == head.index("Fixed when wrong") + 1
    head, body = task_table(board)
    assert head.index("Decoy depth shortened") == head.index("Depth shortened") + 1
    measured = 0
    for cells in body:
        task, variant = cells[0][0], cells[2][0].partition(" (")[0]
        (row,) = [r for r in board.rows if r.variant == variant]
        # the decoy's denominators: the samples that had a decoy
        records = [r for r in row.records_of(task)
                   if r.decoy is not None and r.decoy["target"] is not None]
        right = [r for r in records if r.full_correct]
        wrong = [r for r in records if not r.full_correct]
        reached = rate_text(sum(r.decoy["reached"] for r in wrong), len(wrong))
        shortened = rate_text(sum(r.decoy["shortened"] for r in right), len(right))
        # how short the decoy's shortest chains are, over the right samples it shortened
        # that kept a length
        lengths = [r.decoy["shortest"] for r in right if r.decoy.get("shortest") is not None]
        depth = f"{sum(lengths) / len(lengths) / NUM_LAYERS:.3f}" if lengths else "—"
        if variant == "mcts":
            assert records and cells[head.index("Decoy reached (wrong)")][0] == reached
            assert cells[head.index("Decoy shortened (right)")][0] == shortened
            assert cells[head.index("Decoy depth shortened")][0] == depth
            measured += len(lengths)
        else:  # no control in that run: no rate, rather than 0%
            assert cells[head.index("Decoy reached (wrong)")][0] == "—"
    assert measured > 0  # the fixture has decoy lengths to average
    # the pooled row: the counts its results file wrote
    head, body = board_table(board, oracle=True)
    (mcts,) = [cells for cells in body if cells[1][0] == "mcts"]
    written = load(next(r for r in board.rows if r.variant == "mcts").sources[0])
    summary = written["config"]["cola_summary"]
    assert mcts[head.index("Decoy reached (wrong)")][0] == rate_text(
        summary["decoy_wrong_reached"], summary["decoy_full_wrong"])
    assert mcts[head.index("Oracle acc")][0] == rate_text(summary["oracle_correct"],
                                                          summary["samples"])
    with open(paths["csv"], newline="") as handle:
        (line,) = [ln for ln in csv.DictReader(handle) if ln["variant"] == "mcts"]
    assert int(line["decoy_reached_when_wrong_k"]) == summary["decoy_wrong_reached"]
    assert [float(line["decoy_reached_when_wrong_low"]), float(
        line["decoy_reached_when_wrong_high"])] == summary["decoy_reached_when_wrong_ci"]
    assert [float(line["fixed_when_wrong_low"]), float(line["fixed_when_wrong_high"])] == \
        summary["fixed_when_wrong_ci"]
    # without any decoy in the board: no decoy columns at all
    plain = build_board([Path(paths["csv"]).parent.parent / "greedy"])
    for head, _ in (task_table(plain), board_table(plain, oracle=True)):
        assert not any(h.startswith("Decoy") for h in head)


def test_findings_without_records_come_from_the_written_counts(tmp_path):
    """No records: the pooled findings are the results file's exact counts; no per-task."""
    path = write_run(tmp_path / "run", "random")
    for records in tmp_path.rglob("cola-records_*.jsonl"):
        records.unlink()
    board = build_board([path])
    summary = load(path)["config"]["cola_summary"]
    head, body = board_table(board, oracle=True)
    assert column(head, body, "Shorter when right") == [rate_text(
        summary["right_with_shorter_chain"], summary["full_chain_right"])]
    assert task_table(board)[1] == []


def test_layer_table_is_written_beside_the_plot(tmp_path):
    runs = make_runs(tmp_path / "runs")
    board = build_board([runs["cmp"]])
    paths = write_board(board, tmp_path / "board")
    for task in ("arc_challenge", "gsm8k"):
        table, plot = tmp_path / "board" / f"layers_{task}.csv", f"layers_{task}.png"
        assert table in paths["tables"] and plot in {p.name for p in paths["plots"]}
        with open(table, newline="") as handle:
            lines = list(csv.DictReader(handle))
        assert {ln["variant"] for ln in lines} == {r.variant for r in board.oracles}
        assert len(lines) == NUM_LAYERS * len(board.oracles)
    assert "[layers_gsm8k.csv](layers_gsm8k.csv)" in paths["markdown"].read_text()


# ---------------------------------------------------------------------------- oracle metric


JUDGED = {"arc_challenge": ("acc", None), "gsm8k": ("exact_match", "flexible-extract")}


def gsm8k_score(folder: Path) -> tuple[str, float]:
    (row,) = build_board([folder]).rows
    return row.scores["gsm8k"].metric, row.scores["gsm8k"].value


@pytest.mark.parametrize("source", ["config", "records", "model_args"])
def test_the_task_column_follows_the_oracles_metric_and_filter(tmp_path, source):
    kwargs: dict = {}
    if source == "config":
        kwargs["extra_config"] = {"cola_oracle_metric": "exact_match",
                                  "cola_oracle_filter": "flexible-extract"}
    elif source == "records":
        kwargs["judged"] = JUDGED
    else:
        kwargs["model_args"] = "oracle_filter=flexible-extract"
    path = write_run(tmp_path / "run", "greedy", **kwargs)
    results = load(path)["results"]
    assert gsm8k_score(tmp_path / "run") == (OTHER_METRIC["gsm8k"],
                                             results["gsm8k"][OTHER_METRIC["gsm8k"]])
    board = build_board([tmp_path / "run"])
    assert board.rows[0].scores["arc_challenge"].metric == "acc,none"  # no filter there
    assert "gsm8k (exact_match, flexible-extract)" in to_markdown(board)


def test_the_config_names_the_metric_before_the_records(tmp_path):
    path = write_run(tmp_path / "run", "greedy", judged=JUDGED,
                     extra_config={"cola_oracle_filter": "strict-match"})
    assert gsm8k_score(tmp_path / "run") == (
        "exact_match,strict-match", load(path)["results"]["gsm8k"]["exact_match,strict-match"])
    # a filter the task does not report: lm-eval's main metric, as before
    data = load(path)
    data["config"]["cola_oracle_filter"] = "no-such-filter"
    path.write_text(json.dumps(data))
    assert gsm8k_score(tmp_path / "run")[0] == "exact_match,strict-match"


def paired_text(gold: list[bool], decoy: list[bool]) -> str:
    """The paired cell, counted here from per-sample outcomes."""
    both = sum(g and d for g, d in zip(gold, decoy, strict=True))
    gold_only, decoy_only = sum(gold) - both, sum(decoy) - both
    n = len(gold)
    low, high = paired_difference_interval(both, gold_only, decoy_only,
                                           n - both - gold_only - decoy_only)
    p = mcnemar_exact(gold_only, decoy_only)
    verdict = ABOVE if p < 0.05 and low > 0 else UNDECIDED
    return (f"gold {sum(gold)}/{n} vs decoy {sum(decoy)}/{n}; only {gold_only} vs "
            f"{decoy_only}; Δ {(gold_only - decoy_only) / n:+.0%} [{low:+.0%}, {high:+.0%}]; "
            + ("p < 0.001" if p < 0.001 else f"p = {p:.2g}") + f": {verdict}")


def test_each_finding_is_tested_against_its_decoy_on_the_same_samples(decoy_board):
    board, paths = decoy_board
    for head, _ in (task_table(board), board_table(board, oracle=True)):
        assert head.index("Shorter vs decoy (paired)") == head.index("Decoy shortened (right)") + 1
        assert head.index("Fixed vs decoy (paired)") == head.index("Decoy reached (wrong)") + 1
        assert head.index("No decoy") == head.index("Fixed vs decoy (paired)") + 1
    head, body = task_table(board)
    seen = 0
    for cells in body:
        task, variant = cells[0][0], cells[2][0].partition(" (")[0]
        if variant != "mcts":
            assert cells[head.index("Fixed vs decoy (paired)")][0] == "—"
            assert cells[head.index("No decoy")][0] == "—"
            continue
        (row,) = [r for r in board.rows if r.variant == variant]
        records = row.records_of(task)
        paired = [r for r in records if r.decoy["target"] is not None]
        wrong = [r for r in paired if not r.full_correct]
        right = [r for r in paired if r.full_correct]
        assert cells[head.index("Fixed vs decoy (paired)")][0] == paired_text(
            [r.best_correct for r in wrong], [r.decoy["reached"] for r in wrong])
        assert cells[head.index("Shorter vs decoy (paired)")][0] == paired_text(
            [r.best_correct and r.best_length < NUM_LAYERS for r in right],
            [r.decoy["shortened"] for r in right])
        none = [r for r in records if r.decoy["target"] is None]
        right_none = sum(r.full_correct for r in none)
        assert len(none) == 3  # doc ids 2, 5 and 8
        assert cells[head.index("No decoy")][0] == (
            f"3 ({right_none} right, {3 - right_none} wrong)")
        seen += 1
    assert seen == 2
    assert any("p < 0.05 and the interval excludes 0" in line for line in notes(board))
    # the CSV: the pairs as numbers, and what the results file's summary wrote
    written = load(next(r for r in board.rows if r.variant == "mcts").sources[0])
    fixed = written["config"]["cola_summary"]["fixed_vs_decoy"]
    with open(paths["csv"], newline="") as handle:
        (line,) = [ln for ln in csv.DictReader(handle) if ln["variant"] == "mcts"]
    assert int(line["fixed_vs_decoy_gold_only"]) == fixed["gold_only"]
    assert int(line["fixed_vs_decoy_decoy_only"]) == fixed["decoy_only"]
    # 18 samples: the wrong and the right ones with a decoy, and the 6 without one
    assert int(line["fixed_vs_decoy_n"]) == fixed["n"]
    assert fixed["n"] + int(line["shorter_vs_decoy_n"]) + int(line["no_decoy_samples"]) == 18
    assert float(line["fixed_vs_decoy_p"]) == fixed["mcnemar_p"]
    assert [float(line["fixed_vs_decoy_low"]), float(line["fixed_vs_decoy_high"])] == \
        fixed["difference_ci"]
    assert int(line["no_decoy_samples"]) == 6


def test_a_seed_rows_paired_cell_is_the_spread_of_its_differences():
    """Seeds search the same samples: their pairs are not pooled, their differences are."""
    parts = [Findings.from_summary(Summary.from_records(make_records(
        "mcts", ["arc_challenge"], 9, seed=seed, decoy=True, no_decoy=True)))
        for seed in (1, 2, 3)]
    differences = [p.fixed_vs_decoy.paired.difference for p in parts]
    pooled = Findings.over_seeds(parts)
    mean = sum(differences) / 3
    sd = (sum((d - mean) ** 2 for d in differences) / 2) ** 0.5
    (n,) = {p.fixed_vs_decoy.paired.n for p in parts}
    assert pooled.fixed_vs_decoy.text == f"Δ {mean:.1%} ± {sd:.1%} (n={n})"
    assert pooled.fixed_vs_decoy.csv() == {"": round(mean, 6), "_sd": round(sd, 6)}
    assert pooled.no_decoy.text == "3.0 ± 0.0"  # doc ids 2, 5 and 8 in every seed
