"""compare + leaderboard end to end on a tiny random model and the local ARC / GSM8K data.

The fixture runs are real: ``compare`` runs lm-eval's own evaluator once per variant (none,
random, greedy, mcts and a fixed chain) and once more for a plain ``hf`` baseline in another
folder. Every number the tests expect is read back from those runs' files. Every test here
needs those model runs; the same rules are checked on fixture files, without a model, in
``tests/test_reports*.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.board_checks import check_rows, check_written, counts, source_of
from tests.support.reports_browser import Browser, find_browser, page_url

pytestmark = [pytest.mark.tiny, pytest.mark.skipif(
    not os.environ.get("COLA_DATA_DIR"), reason="needs COLA_DATA_DIR (local benchmark data)"
)]

REPO = Path(__file__).resolve().parents[1]
TASKS = ["arc_challenge", "gsm8k"]
MAIN_METRIC = {"arc_challenge": "acc,none", "gsm8k": "exact_match,strict-match"}
VARIANTS = ["none", "random", "greedy", "mcts", "chain:0+2-3"]
LM_EVAL_MODEL = {"none": "cola_hf", "random": "cola_random", "greedy": "cola_greedy",
                 "mcts": "cola_mcts", "chain:0+2-3": "cola_hf", "hf": "hf"}
LIMIT, BUDGET = 3, 4
# Short generations keep gsm8k fast on the tiny model (its prompts need no few-shot here).
EVAL = {"num_fewshot": 0, "gen_kwargs": "max_gen_toks=8"}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def hooks_installed():
    # The .pth start-up hook does this when the package is installed; be explicit here.
    from lm_eval_cola.compat import hooks, local_data

    local_data.install()
    hooks.install_evaluator_hook()
    import lm_eval_cola.harness.models  # noqa: F401


@pytest.fixture(scope="module")
def task_manager():
    from lm_eval import tasks

    folder = Path(tasks.__file__).parent
    return tasks.TaskManager(include_defaults=False,
                             include_path=[str(folder / "arc"), str(folder / "gsm8k")])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llama_dir, task_manager):
    import torch

    from lm_eval_cola.cli.compare import compare

    root = tmp_path_factory.mktemp("runs")
    model_args = f"pretrained={tiny_llama_dir},device=cpu"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model gains nothing from threads; on a busy box they thrash
    try:
        searched = compare(VARIANTS, TASKS, root / "cmp", limit=LIMIT, budget=BUDGET,
                           model_args=model_args, task_manager=task_manager, eval_kwargs=EVAL)
        plain = compare(["hf"], TASKS, root / "base", limit=LIMIT, model_args=model_args,
                        task_manager=task_manager, eval_kwargs=EVAL)
    finally:
        torch.set_num_threads(threads)
    assert [s for _, s in searched + plain] == ["ran"] * (len(VARIANTS) + 1)
    return {"root": root, "cmp": root / "cmp", "base": root / "base", "model_args": model_args,
            "task_manager": task_manager}


def results_file(folder: Path) -> Path:
    (path,) = sorted(folder.rglob("results_*.json"))
    return path


def load(path: Path) -> dict:
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------- compare


def test_compare_runs_each_variant_as_its_own_lm_eval_model(runs):
    from lm_eval_cola.cli.compare import _folder_name

    for name in VARIANTS:
        data = load(results_file(runs["cmp"] / _folder_name(name)))
        config = data["config"]
        assert config["model"] == LM_EVAL_MODEL[name]
        assert config["limit"] == LIMIT
        assert set(data["results"]) == set(TASKS)
        assert {t: v["effective"] for t, v in data["n-samples"].items()} == dict.fromkeys(
            TASKS, LIMIT)
        assert (config["random_seed"], config["numpy_seed"], config["torch_seed"]) == (0, 1234,
                                                                                       1234)
        if name.startswith("chain:"):
            assert config["cola_chain"] == "0+2-3" and "cola_searcher" not in config
            continue
        assert config["cola_searcher"] == name and config["cola_seed"] == 1234
        assert config["cola_settings"]["budget"] == (1 if name == "none" else BUDGET)
        records = Path(config["cola_records"])
        assert records.parent == results_file(runs["cmp"] / name).parent and records.is_file()
    assert load(results_file(runs["base"]))["config"]["model"] == "hf"


def test_compare_skips_complete_variants_and_reruns_missing_ones(runs, monkeypatch, tmp_path):
    from lm_eval_cola.cli import compare as compare_module

    calls = []
    monkeypatch.setattr(compare_module, "run_variant", lambda v, *a, **k: calls.append(v.name))
    kwargs = dict(limit=LIMIT, budget=BUDGET, model_args=runs["model_args"],
                  task_manager=runs["task_manager"], eval_kwargs=EVAL)
    done = compare_module.compare(VARIANTS, TASKS, runs["cmp"], **kwargs)
    assert [s for _, s in done] == ["skipped"] * len(VARIANTS) and calls == []
    # another budget or gen_kwargs is another run; a crashed run (no results file) runs again
    compare_module.compare(["mcts"], TASKS, runs["cmp"], **{**kwargs, "budget": 2})
    other_gen = {**EVAL, "gen_kwargs": "max_gen_toks=9"}
    compare_module.compare(["none"], TASKS, runs["cmp"], **{**kwargs, "eval_kwargs": other_gen})
    # so is a run with a system instruction, or with each task's own few-shot count (the
    # runs were made with --num_fewshot 0, which their results now say)
    system = {**EVAL, "system_instruction": "Answer briefly."}
    compare_module.compare(["greedy"], TASKS, runs["cmp"], **{**kwargs, "eval_kwargs": system})
    own_shots = {k: v for k, v in EVAL.items() if k != "num_fewshot"}
    compare_module.compare(["random"], TASKS, runs["cmp"],
                           **{**kwargs, "eval_kwargs": own_shots})
    assert calls == ["mcts", "none", "greedy", "random"]
    copy = tmp_path / "cmp"
    shutil.copytree(runs["cmp"], copy)
    results_file(copy / "greedy").unlink()
    calls.clear()
    done = compare_module.compare(VARIANTS, TASKS, copy, **kwargs)
    assert calls == ["greedy"]
    assert [s for _, s in done] == ["skipped", "skipped", "ran", "skipped", "skipped"]


def test_compare_rejects_bad_variants(tmp_path):
    from lm_eval_cola.cli.compare import make_variants
    from lm_eval_cola.errors import UserError

    with pytest.raises(UserError, match="unknown variant 'beam'"):
        make_variants(["beam"], tmp_path, "", 1, 4)
    with pytest.raises(UserError, match="must not set 'budget'"):
        make_variants(["mcts"], tmp_path, "budget=3", 1, 4)


# ---------------------------------------------------------------------------- the table


def test_table_numbers_equal_those_in_the_inputs(runs):
    from lm_eval_cola.reports import build_board

    board = build_board([runs["cmp"], runs["base"]])
    assert not board.errors and not board.warnings
    assert board.tasks == TASKS
    assert len(board.rows) == len(VARIANTS) + 1
    check_rows(board, LIMIT)


def test_mixed_hf_and_cola_rows(runs):
    from lm_eval_cola.reports import build_board, to_markdown
    from lm_eval_cola.reports.render import ORACLE_HEADING

    board = build_board([runs["base"], runs["cmp"]])
    kinds = {r.variant: (r.kind, r.oracle, r.lm_eval_model) for r in board.rows}
    assert kinds == {
        "hf": ("plain", False, "hf"), "none": ("search", False, "cola_hf"),
        "random": ("search", True, "cola_random"), "greedy": ("search", True, "cola_greedy"),
        "mcts": ("search", True, "cola_mcts"), "chain 0+2-3": ("chain", False, "cola_hf"),
    }
    assert len({r.model for r in board.rows}) == 1  # one model, whichever its lm-eval model
    lines = to_markdown(board).splitlines()
    oracle_from = lines.index(f"### {ORACLE_HEADING}")
    for row in board.rows:
        (number,) = [n for n, ln in enumerate(lines)
                     if ln.startswith(f"| {row.model} | {row.variant} |")]
        assert (number > oracle_from) == row.oracle  # oracle rows only in their own table


def test_outputs_csv_markdown_html_and_plots(runs, tmp_path):
    from lm_eval_cola.reports import build_board, write_board

    board = build_board([runs["cmp"], runs["base"]])
    paths = write_board(board, tmp_path / "board")
    check_written(board, paths, LIMIT, tables=3)
    check_renders(paths, board)


def check_renders(paths: dict, board) -> None:
    """The page in headless Chromium, when one is installed (``test_reports_browser.py``
    checks sorting on fixture runs): every row drawn, every plot loaded."""
    executable = find_browser()
    if executable is None:
        return
    with Browser(executable) as browser:
        browser.open(page_url(paths["html"]))
        drawn = browser.evaluate(
            "Array.from(document.querySelectorAll('#board tbody tr, #oracle-board tbody tr'))"
            ".filter(function (r) { return r.getBoundingClientRect().height > 0; }).length")
        assert drawn == len(board.rows)
        widths = browser.evaluate("Array.from(document.images).map(i => i.naturalWidth)")
        assert len(widths) == len(paths["plots"]) and all(w > 0 for w in widths)
        assert browser.console_errors() == []


# ---------------------------------------------------------------------------- merging


def test_files_of_one_run_with_disjoint_tasks_merge_into_one_row(runs, tmp_path):
    """A run split over two results files (one task each) gives the row of the whole run."""
    from lm_eval_cola.reports import build_board, combine_summaries
    from lm_eval_cola.results.summary import Summary

    whole = build_board([runs["cmp"] / "mcts"]).rows[0]
    data = source_of(whole)
    folder = tmp_path / "split" / results_file(runs["cmp"] / "mcts").parent.name
    folder.mkdir(parents=True)
    for record_file in (runs["cmp"] / "mcts").rglob("cola-records_*.jsonl"):
        shutil.copy(record_file, folder)
    for number, task in enumerate(TASKS):
        part = json.loads(json.dumps(data))
        part["results"] = {task: data["results"][task]}
        part["n-samples"] = {task: data["n-samples"][task]}
        part["date"] = data["date"] + number
        mine = [r for r in whole.records if r.task == task]
        part["config"]["cola_summary"] = Summary.from_records(mine).as_dict()
        part["config"]["cola_records"] = str(folder / Path(data["config"]["cola_records"]).name)
        (folder / f"results_{number}.json").write_text(json.dumps(part))
    (row,) = build_board([tmp_path / "split"]).rows
    assert row.scores == whole.scores
    assert counts(row.summary) == counts(whole.summary)  # the files' exact counts, merged
    assert counts(Summary.from_records(row.records)) == counts(whole.summary)
    for record_file in folder.glob("cola-records_*.jsonl"):
        record_file.unlink()
    (row,) = build_board([tmp_path / "split"]).rows
    assert counts(row.summary) == counts(whole.summary) and row.records == []
    # files written before summaries had exact sums, and no records: the two files'
    # counts and rounded means add up to the same findings
    old = ("oracle", "num_layers", "total_best_length", "total_evaluations", "oracle_correct")
    parts = []
    for path in sorted(folder.glob("results_*.json")):
        data = load(path)
        for key in old:
            data["config"]["cola_summary"].pop(key)
        path.write_text(json.dumps(data))
        parts.append(data["config"]["cola_summary"])
    combined = combine_summaries(parts)
    expected = whole.findings
    for key in ("samples", "full_chain_right", "right_with_shorter_chain", "full_chain_wrong",
                "wrong_fixed_by_some_chain", "shorter_when_right", "fixed_when_wrong",
                "oracle_accuracy", "full_chain_accuracy"):
        assert combined[key] == expected[key]
    for key in ("mean_depth_ratio", "mean_evaluations"):
        assert combined[key] == pytest.approx(expected[key], abs=2e-4)
    (row,) = build_board([tmp_path / "split"]).rows
    assert row.summary is None and row.legacy_summary == combined


def test_the_table_rebuilds_from_moved_files_without_torch_or_lm_eval(runs, tmp_path):
    from lm_eval_cola.reports import build_board, to_markdown

    moved = tmp_path / "moved"
    shutil.copytree(runs["cmp"], moved)
    expected = to_markdown(build_board([runs["cmp"]])).replace(str(runs["cmp"]), str(moved))
    code = ("import sys\n"
            "for name in ('torch', 'transformers', 'lm_eval'): sys.modules[name] = None\n"
            "from lm_eval_cola.cli import main\n"
            f"sys.exit(main(['leaderboard', {str(moved)!r}, '--out', {str(tmp_path / 'b')!r}]))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "LM_EVAL_COLA_NO_AUTOLOAD": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected.strip()
    assert (tmp_path / "b" / "layers_arc_challenge.png").is_file()
