"""``lm-eval-cola table1``: the paper's Table 1 from records (pure), and end to end on the
tiny model through ``compare``."""

from __future__ import annotations

import csv
import os

import pytest

from lm_eval_cola.cli.table1 import _rows, variant_name
from lm_eval_cola.errors import UserError
from lm_eval_cola.reports.table1 import (
    build_table1,
    csv_lines,
    findings_table,
    to_html,
    to_markdown,
    write_table1,
)
from lm_eval_cola.results.stats import mcnemar_exact, paired_difference_interval
from tests.support.board_checks import finding_counts, rate_text
from tests.support.cli_helpers import arc_task_manager, run_subcommand
from tests.support.reports_fixtures import make_records

pytestmark = pytest.mark.quick

TASKS = ["arc_challenge", "gsm8k"]


def table_records():
    return {"original": make_records("none", TASKS, 7),
            "skip": make_records("mcts", TASKS, 7, seed=1),
            "loop": make_records("mcts", TASKS, 7, seed=2, decoy=True, no_decoy=True),
            "skip+loop": make_records("mcts", TASKS, 7, seed=3, decoy=True)}


def test_cells_are_the_records_counts_with_intervals():
    records = table_records()
    table = build_table1(records, settings="budget=4")
    assert [r.key for r in table.rows] == ["original", "skip", "loop", "skip+loop"]
    assert table.tasks == TASKS
    assert [r.oracle for r in table.rows] == [False, True, True, True]
    text = to_markdown(table)
    lines = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()
             if line.startswith("| ")}
    for row in table.rows:
        cells = lines[row.label + (" (oracle)" if row.oracle else "")].split(" | ")[1:]
        for task, cell in zip(TASKS, cells, strict=True):
            mine = [r for r in records[row.key] if r.task == task]
            counts = finding_counts(mine)
            k, n = counts["oracle_accuracy" if row.oracle else "full_chain_accuracy"]
            assert cell.strip(" |") == rate_text(k, n)
    assert "ORACLE" in text and "Decoy reached (wrong)" in text


def test_findings_rows_carry_the_decoy_only_where_the_run_had_one():
    table = build_table1(table_records())
    (skip,) = [r for r in table.rows if r.key == "skip"]
    (cola,) = [r for r in table.rows if r.key == "skip+loop"]
    assert all(f.decoy_reached is None for f in skip.by_task.values())
    assert all(f.decoy_reached is not None for f in cola.by_task.values())


def test_findings_beside_the_decoy_come_with_the_paired_test():
    records = table_records()
    table = build_table1(records)
    head, body = findings_table(table)
    assert head.index("Fixed vs decoy (paired)") == head.index("Decoy reached (wrong)") + 1
    assert head.index("Shorter vs decoy (paired)") == head.index("Decoy shortened (right)") + 1
    csv_head, csv_body = csv_lines(table)
    by_row = {(line[0], line[3]): dict(zip(csv_head, line, strict=True)) for line in csv_body}
    for line in body:
        key = {label: k for k, label in (("skip", "Skip-only"), ("loop", "Recurrence-only"),
                                         ("skip+loop", "CoLa (skip + recurrence)"))}[line[0]]
        cell = line[head.index("Fixed vs decoy (paired)")]
        numbers = by_row[(key, line[1])]
        if key == "skip":  # no control in that run
            assert cell == "—" and line[head.index("No decoy")] == "—"
            assert numbers["fixed_vs_decoy_n"] is None
            continue
        mine = [r for r in records[key] if r.task == line[1]]
        # the pairs, counted here: wrong samples with a decoy, (fixed?, decoy reached?)
        wrong = [r for r in mine if not r.full_correct and r.decoy["target"] is not None]
        both = sum(r.best_correct and r.decoy["reached"] for r in wrong)
        gold_only = sum(r.best_correct for r in wrong) - both
        decoy_only = sum(r.decoy["reached"] for r in wrong) - both
        neither = len(wrong) - both - gold_only - decoy_only
        assert cell.startswith(f"gold {both + gold_only}/{len(wrong)} vs decoy "
                               f"{both + decoy_only}/{len(wrong)}; only {gold_only} vs "
                               f"{decoy_only}; ")
        p = mcnemar_exact(gold_only, decoy_only)
        low, high = paired_difference_interval(both, gold_only, decoy_only, neither)
        assert numbers["fixed_vs_decoy_p"] == float(f"{p:.4g}")
        assert (numbers["fixed_vs_decoy_low"], numbers["fixed_vs_decoy_high"]) == (
            round(low, 4), round(high, 4))
        assert (numbers["fixed_vs_decoy_gold_only"], numbers["fixed_vs_decoy_decoy_only"],
                numbers["fixed_vs_decoy_n"]) == (gold_only, decoy_only, len(wrong))
        # the decoy's rate is over the same samples; those without a decoy are counted apart
        assert numbers["decoy_reached_when_wrong_n"] == len(wrong)
        none = [r for r in mine if r.decoy["target"] is None]
        assert numbers["no_decoy_samples"] == len(none) == (2 if key == "loop" else 0)
        assert line[head.index("No decoy")] == (
            f"{len(none)} ({sum(r.full_correct for r in none)} right, "
            f"{sum(not r.full_correct for r in none)} wrong)")
    for text in (to_markdown(table), to_html(table)):
        assert "p &lt; 0.05" in text or "p < 0.05" in text
        assert "never by overlapping intervals" in text
    # without a decoy anywhere, no paired note
    plain = build_table1({"skip": records["skip"]})
    assert "McNemar" not in to_markdown(plain)


def test_csv_has_one_line_per_row_and_task_and_a_header_that_fits(tmp_path):
    table = build_table1(table_records())
    head, body = csv_lines(table)
    assert len(body) == 4 * len(TASKS)
    assert all(len(line) == len(head) for line in body)
    paths = write_table1(table, tmp_path / "t1")
    assert [p.name for p in paths] == ["table1.md", "table1.csv", "table1.html"]
    with open(paths[1], newline="") as handle:
        rows = list(csv.DictReader(handle))
    (original,) = [r for r in rows if r["row"] == "original" and r["task"] == "gsm8k"]
    mine = [r for r in table_records()["original"] if r.task == "gsm8k"]
    assert (int(original["accuracy_k"]), int(original["accuracy_n"])) == \
        finding_counts(mine)["full_chain_accuracy"]
    assert "<table>" in paths[2].read_text()


def test_a_row_without_records_is_left_out():
    table = build_table1({"original": make_records("none", TASKS, 3)})
    assert [r.key for r in table.rows] == ["original"]


def test_variants_and_bad_rows():
    assert variant_name("original", "cola", "decoy") == "none"
    assert variant_name("skip", "cola", "decoy") == "mcts:protocol=cola;actions=skip;control=decoy"
    assert variant_name("skip+loop", "polar", "none") == "mcts:protocol=polar;actions=skip+loop"
    assert _rows("skip+loop,original") == ["original", "skip+loop"]
    with pytest.raises(UserError, match="bad --rows 'skip,jump'"):
        _rows("skip,jump")


@pytest.mark.tiny
@pytest.mark.skipif(not os.environ.get("COLA_DATA_DIR"),
                    reason="needs COLA_DATA_DIR (local benchmark data)")
def test_table1_end_to_end(tiny_llama_dir, tmp_path, capsys, monkeypatch):
    from lm_eval_cola.cli import table1 as command

    manager = arc_task_manager()
    argv = ["--tasks", "arc_easy", "--limit", "3", "--budget", "4", "--rows",
            "original,skip,skip+loop", "--output", str(tmp_path / "runs"),
            "--model_args", f"pretrained={tiny_llama_dir},device=cpu"]
    assert run_subcommand(command, argv, manager) == 0
    out = capsys.readouterr().out
    assert "Original (full chain)" in out and "CoLa (skip + recurrence) (oracle)" in out
    assert "Recurrence-only" not in out
    md = (tmp_path / "runs" / "table1" / "table1.md").read_text()
    assert md.strip() == out.strip()
    with open(tmp_path / "runs" / "table1" / "table1.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["row"], r["task"], r["accuracy_n"]) for r in rows] == [
        ("original", "arc_easy", "3"), ("skip", "arc_easy", "3"),
        ("skip+loop", "arc_easy", "3")]
    # the decoy control ran for the search rows
    assert all(r["decoy_reached_when_wrong_n"] != "" or r["decoy_shortened_when_right_n"] != ""
               for r in rows[1:])
    # every searched sample is in one paired test, or counted as having no decoy
    for r in rows[1:]:
        assert sum(int(r[k] or 0) for k in ("fixed_vs_decoy_n", "shorter_vs_decoy_n",
                                            "no_decoy_samples")) == 3
    # every searched row's full chain agrees with the original row
    assert len({(r["full_chain_k"], r["full_chain_n"]) for r in rows}) == 1
    assert rows[0]["full_chain_k"] == rows[0]["accuracy_k"]
    # a later, smaller table reuses the search run (its first 2 samples) and runs nothing
    from lm_eval_cola.cli import compare as compare_module

    monkeypatch.setattr(compare_module, "run_variant", lambda *a, **k: pytest.fail("ran"))
    again = ["--tasks", "arc_easy", "--limit", "2", "--budget", "4", "--rows", "skip+loop",
             "--output", str(tmp_path / "second"), "--reuse", str(tmp_path / "runs"),
             "--model_args", f"pretrained={tiny_llama_dir},device=cpu"]
    assert run_subcommand(command, again, manager) == 0
    with open(tmp_path / "second" / "table1" / "table1.csv", newline="") as handle:
        (line,) = list(csv.DictReader(handle))
    assert (line["row"], line["accuracy_n"]) == ("skip+loop", "2")
    first = [r for r in rows if r["row"] == "skip+loop"][0]
    assert int(line["oracle_accuracy_k"]) <= int(first["oracle_accuracy_k"])
    # a budget the run did not use is not the same search
    other = again[:5] + ["5"] + again[6:]
    monkeypatch.setattr(command, "compare", lambda *a, **k: pytest.fail("no reuse"))
    with pytest.raises(pytest.fail.Exception, match="no reuse"):
        run_subcommand(command, other, manager)
