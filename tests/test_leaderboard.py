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

from tests.support.board_checks import TASKS, check_rows
from tests.support.lm_eval_setup import install_cola

pytestmark = [pytest.mark.tiny, pytest.mark.skipif(
    not os.environ.get("COLA_DATA_DIR"), reason="needs COLA_DATA_DIR (local benchmark data)"
)]

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ["none", "random", "greedy", "mcts", "chain:0+2-3"]
LM_EVAL_MODEL = {"none": "cola_hf", "random": "cola_random", "greedy": "cola_greedy",
                 "mcts": "cola_mcts", "chain:0+2-3": "cola_hf", "hf": "hf"}
LIMIT, BUDGET = 3, 4
# Short generations keep gsm8k fast on the tiny model (its prompts need no few-shot here).
EVAL = {"num_fewshot": 0, "gen_kwargs": "max_gen_toks=8"}


@pytest.fixture(scope="module", autouse=True)
def hooks_installed():
    install_cola()


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


def test_the_board_of_compare_runs_says_what_their_files_say(runs):
    """The files as compare and lm-eval wrote them: every number as in the files, and each
    row's kind, oracle flag and lm-eval model from what the run wrote. The same rules on
    fixture files, and the tables' layout, are in test_reports.py."""
    from lm_eval_cola.reports import build_board

    board = build_board([runs["base"], runs["cmp"]])
    assert not board.errors and not board.warnings
    assert board.tasks == TASKS
    assert len(board.rows) == len(VARIANTS) + 1
    check_rows(board, LIMIT)
    kinds = {r.variant: (r.kind, r.oracle, r.lm_eval_model) for r in board.rows}
    assert kinds == {
        "hf": ("plain", False, "hf"), "none": ("search", False, "cola_hf"),
        "random": ("search", True, "cola_random"), "greedy": ("search", True, "cola_greedy"),
        "mcts": ("search", True, "cola_mcts"), "chain 0+2-3": ("chain", False, "cola_hf"),
    }
    assert len({r.model for r in board.rows}) == 1  # one model, whichever its lm-eval model


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
