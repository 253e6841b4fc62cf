"""``lm-eval-cola table1``: the paper's Table 1 from records (pure), and end to end on the
tiny model through ``compare``."""

from __future__ import annotations

import csv
import os

import pytest

from lm_eval_cola.errors import UserError
from lm_eval_cola.reports.table1 import build_table1, csv_lines, to_markdown, write_table1
from lm_eval_cola.table1 import _rows, variant_name
from tests.board_checks import finding_counts, rate_text
from tests.cli_helpers import arc_task_manager, run_subcommand
from tests.reports_fixtures import make_records

TASKS = ["arc_challenge", "gsm8k"]


def table_records():
    return {"original": make_records("none", TASKS, 7),
            "skip": make_records("mcts", TASKS, 7, seed=1),
            "loop": make_records("mcts", TASKS, 7, seed=2, decoy=True),
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
    from lm_eval_cola import table1 as command

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
    # every searched row's full chain agrees with the original row
    assert len({(r["full_chain_k"], r["full_chain_n"]) for r in rows}) == 1
    assert rows[0]["full_chain_k"] == rows[0]["accuracy_k"]
    # a later, smaller table reuses the search run (its first 2 samples) and runs nothing
    from lm_eval_cola import compare as compare_module

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
