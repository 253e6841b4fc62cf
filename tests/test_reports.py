"""The board's rows and numbers, from fixture results and records files (no model runs).

Every number the tests expect is read back from the fixture files, never from the code under
test. ``tests/test_leaderboard.py`` checks the same on files that real runs wrote.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from lm_eval_cola.reports import build_board, combine_summaries
from lm_eval_cola.results.records import read_records
from lm_eval_cola.results.summary import Summary
from tests.support.board_checks import (
    check_oracle_rows_in_their_own_table,
    check_rows,
    counts,
    source_of,
)
from tests.support.reports_fixtures import (
    LIMIT,
    PRETRAINED,
    TASKS,
    VARIANTS,
    folder_name,
    legacy_summary,
    load,
    make_runs,
    one_task_part,
    results_file,
    write_run,
)

pytestmark = pytest.mark.quick


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    return make_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def legacy_runs(tmp_path_factory) -> dict[str, Path]:
    return make_runs(tmp_path_factory.mktemp("legacy"), legacy=True)


def test_table_numbers_equal_those_in_the_inputs(runs):
    board = build_board([runs["cmp"], runs["base"]])
    assert not board.errors and not board.warnings
    assert board.tasks == TASKS
    assert len(board.rows) == len(VARIANTS) + 1
    check_rows(board, LIMIT)
    assert all(r.findings is None for r in board.rows if r.kind != "search")
    # deployable rows first, oracle rows after
    assert [r.oracle for r in board.rows] == sorted(r.oracle for r in board.rows)


def test_mixed_hf_and_cola_rows(runs):
    board = build_board([runs["base"], runs["cmp"]])
    kinds = {r.variant: (r.kind, r.oracle, r.lm_eval_model) for r in board.rows}
    assert kinds == {
        "hf": ("plain", False, "hf"), "none": ("search", False, "cola_hf"),
        "random": ("search", True, "cola_random"), "greedy": ("search", True, "cola_greedy"),
        "mcts": ("search", True, "cola_mcts"), "chain 0+2-3": ("chain", False, "cola_hf"),
    }
    assert {r.model for r in board.rows} == {PRETRAINED}  # whichever its lm-eval model
    check_oracle_rows_in_their_own_table(board)


def test_oracle_and_model_name_are_what_the_run_wrote(tmp_path):
    """No guessing from the variant or the reader's packages: cola_oracle and cola_model."""
    write_run(tmp_path / "a", "mcts", number=0, oracle=False,
              extra_config={"cola_model": "Display-Name"})
    write_run(tmp_path / "b", "beam", number=1, extra_config={"model_name": "ignored"})
    board = build_board([tmp_path])
    rows = {r.variant: r for r in board.rows}
    assert rows["mcts"].oracle is False and rows["mcts"].model == "Display-Name"
    assert rows["mcts"].shorter_when_right is None  # no gold chose its chains: no findings
    assert rows["beam"].oracle is True and rows["beam"].model == PRETRAINED
    assert board.deployable == [rows["mcts"]] and board.oracles == [rows["beam"]]


def test_model_name_falls_back_to_lm_evals_then_pretrained(tmp_path):
    path = write_run(tmp_path / "hf", "hf")
    data = load(path)
    data["model_name"] = "from-lm-eval"
    path.write_text(json.dumps(data))
    (row,) = build_board([path]).rows
    assert row.model == "from-lm-eval"
    del data["model_name"]
    path.write_text(json.dumps(data))
    (row,) = build_board([path]).rows
    assert row.model == PRETRAINED


def test_files_written_before_cola_oracle_and_exact_sums(legacy_runs):
    """Old results (no cola_oracle, no cola_model, no exact sums) and schema-1 records."""
    board = build_board([legacy_runs["cmp"], legacy_runs["base"]])
    assert not board.errors and not board.warnings
    assert {r.variant for r in board.oracles} == {"random", "greedy", "mcts"}
    assert {r.model for r in board.rows} == {PRETRAINED}  # lm-eval's model_name
    for row in board.rows:
        if row.kind != "search":
            continue
        (records_file,) = Path(source_of(row)["config"]["cola_records"]).parent.glob("*.jsonl")
        assert "schema" not in json.loads(records_file.read_text().splitlines()[0])
        assert all(r.oracle == (r.searcher != "none") for r in row.records)
        # no exact sums in the file: recounted from the records, exactly
        assert row.summary == Summary.from_records(row.records)
        written = source_of(row)["config"]["cola_summary"]
        for key in ("samples", "shorter_when_right", "fixed_when_wrong", "mean_depth_ratio"):
            assert row.findings[key] == written[key]


def test_corrupt_records_warn_and_keep_the_row(runs, tmp_path):
    copy = tmp_path / "mcts"
    shutil.copytree(runs["cmp"] / "mcts", copy)
    (records,) = copy.rglob("cola-records_*.jsonl")
    lines = records.read_text().splitlines()
    records.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    board = build_board([copy])
    (row,) = board.rows
    assert any("corrupt records file" in w for w in board.warnings)
    assert row.summary == Summary.from_dict(source_of(row)["config"]["cola_summary"])
    assert row.records == [] and row.task_summaries == {}


def test_missing_records_warn_and_keep_the_written_findings(runs, tmp_path):
    copy = tmp_path / "greedy"
    shutil.copytree(runs["cmp"] / "greedy", copy)
    for path in copy.rglob("cola-records_*.jsonl"):
        path.unlink()
    results = results_file(copy)
    data = load(results)
    data["config"]["cola_records"] = str(tmp_path / "gone" / "cola-records_x.jsonl")
    results.write_text(json.dumps(data))
    board = build_board([copy])
    (row,) = board.rows
    assert any("records of" in w and "not found" in w for w in board.warnings)
    assert row.summary == Summary.from_dict(source_of(row)["config"]["cola_summary"])


def test_records_past_the_limit_and_superseded_samples(runs, tmp_path):
    """Only docs below lm-eval's effective count count; a sample's last record wins."""
    copy = tmp_path / "random"
    shutil.copytree(runs["cmp"] / "random", copy)
    (path,) = copy.rglob("cola-records_*.jsonl")
    records = read_records(path)
    beyond = dataclasses.replace(records[0], doc_id=LIMIT)
    again = dataclasses.replace(records[1], best_chain="0+3", best_length=2, best_correct=True)
    with open(path, "a") as handle:
        for record in (beyond, again):
            handle.write(json.dumps(record.to_json()) + "\n")
    (row,) = build_board([copy]).rows
    assert len(row.records) == LIMIT * len(TASKS)
    assert again in row.records and records[1] not in row.records


def split_run(whole_folder: Path, into: Path, summaries: bool = True) -> list[Path]:
    """The run of ``whole_folder`` as one results file a task, records beside them."""
    data = load(results_file(whole_folder))
    into.mkdir(parents=True)
    for record_file in whole_folder.rglob("cola-records_*.jsonl"):
        shutil.copy(record_file, into)
    records = [r for p in into.glob("*.jsonl") for r in read_records(p)]
    paths = []
    for number, task in enumerate(TASKS):
        part = one_task_part(data, task, number)
        summary = Summary.from_records([r for r in records if r.task == task]).as_dict()
        part["config"]["cola_summary"] = summary if summaries else legacy_summary(summary)
        part["config"]["cola_records"] = str(into / Path(data["config"]["cola_records"]).name)
        paths.append(into / f"results_{number}.json")
        paths[-1].write_text(json.dumps(part))
    return paths


def test_files_of_one_run_with_disjoint_tasks_merge_into_one_row(runs, tmp_path):
    """A run split over two results files (one task each) gives the row of the whole run."""
    whole = build_board([runs["cmp"] / "mcts"]).rows[0]
    split_run(runs["cmp"] / "mcts", tmp_path / "split")
    board = build_board([tmp_path / "split"])
    (row,) = board.rows
    assert not board.warnings
    assert row.scores == whole.scores
    assert counts(row.summary) == counts(whole.summary)  # the files' exact counts, merged
    assert row.sources == sorted(row.sources, reverse=True)  # newest first
    # without the records the exact counts still merge
    for record_file in (tmp_path / "split").glob("cola-records_*.jsonl"):
        record_file.unlink()
    board = build_board([tmp_path / "split"])
    (row,) = board.rows
    assert counts(row.summary) == counts(whole.summary) and row.records == []


def test_old_split_files_without_exact_sums(runs, tmp_path):
    """Old files: recounted from the records; without records, the rounded combination."""
    whole = build_board([runs["cmp"] / "mcts"]).rows[0]
    parts = split_run(runs["cmp"] / "mcts", tmp_path / "split", summaries=False)
    (row,) = build_board([tmp_path / "split"]).rows
    assert row.summary == Summary.from_records(row.records)
    assert counts(row.summary) == counts(whole.summary)
    for record_file in (tmp_path / "split").glob("cola-records_*.jsonl"):
        record_file.unlink()
    (row,) = build_board([tmp_path / "split"]).rows
    written = [load(p)["config"]["cola_summary"] for p in parts]
    combined = combine_summaries(written)
    assert row.summary is None and row.legacy_summary == combined
    expected = whole.findings
    for key in ("samples", "full_chain_right", "right_with_shorter_chain", "full_chain_wrong",
                "wrong_fixed_by_some_chain", "shorter_when_right", "fixed_when_wrong",
                "oracle_accuracy", "full_chain_accuracy"):
        assert combined[key] == expected[key]
    for key in ("mean_depth_ratio", "mean_evaluations"):
        assert combined[key] == pytest.approx(expected[key], abs=2e-4)
    assert row.shorter_when_right == expected["shorter_when_right"]


def test_a_newer_file_supersedes_an_older_ones_tasks(runs, tmp_path):
    """Re-run of one task: the newest file wins it; the older, now partial file's summary
    counts samples not in the row, so the findings are recounted from the records."""
    folder = tmp_path / "rerun"
    shutil.copytree(runs["cmp"] / folder_name("greedy"), folder)
    newer = write_run(folder / "again", "greedy", tasks=["gsm8k"], number=50)
    board = build_board([folder])
    (row,) = board.rows
    assert row.scores["gsm8k"].value == load(newer)["results"]["gsm8k"]["exact_match,strict-match"]
    assert len(row.sources) == 2 and row.sources[0] == newer
    assert row.summary == Summary.from_records(row.records)
    assert {r.task for r in row.records} == set(TASKS)
    # a file all of whose tasks a newer file has is superseded, with a warning
    write_run(folder / "third", "greedy", number=60)
    board = build_board([folder])
    assert len(board.rows) == 1
    assert sum("superseded" in w for w in board.warnings) == 2


def test_a_groups_column_collects_its_subtasks_records(tmp_path):
    path = write_run(tmp_path / "g", "mcts", tasks=["mini_a", "mini_b"])
    data = load(path)
    data["results"]["mini"] = {"alias": "mini", "acc,none": 0.5, "acc_stderr,none": 0.1}
    data["group_subtasks"] = {"mini": ["mini_a", "mini_b"], "mini_a": [], "mini_b": []}
    path.write_text(json.dumps(data))
    (row,) = build_board([path]).rows
    assert list(row.scores) == ["mini"] and row.scores["mini"].value == 0.5
    assert len(row.records_of("mini")) == 2 * LIMIT
    assert row.task_summaries["mini"].tasks == {"mini_a", "mini_b"}
