"""Running the real ``lm_eval`` command in a subprocess, and reading what a run wrote.

Shared by the resume and distributed tests: the uninterrupted single-process reference run is
made once per test session (each ``lm_eval`` start indexes all of lm-eval's tasks: slow)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from lm_eval_cola.cli.compare import LM_EVAL_COMMAND

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = os.environ.get("COLA_DATA_DIR", "/work/shared/data")

# ``python -m lm_eval`` with our start-up hook imported first, so it works whether or not the
# package (and its .pth hook) is installed in this interpreter: what compare --processes runs.
LM_EVAL = LM_EVAL_COMMAND

# A fixed, small oracle run used by several tests.
TASK = "arc_challenge"
LIMIT = 8
BUDGET = 6

# Fields that differ between two runs of the same samples.
TIMING = ("seconds",)
SUMMARY_TIMING = ("total_search_seconds", "seconds_per_sample")


def env(**extra: str) -> dict[str, str]:
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    environ.setdefault("COLA_DATA_DIR", DATA_DIR)
    environ.setdefault("OMP_NUM_THREADS", "1")
    environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    environ.update(extra)
    return environ


def oracle_args(model_dir: str, output: str | os.PathLike, **settings: Any) -> list[str]:
    model_args = {"pretrained": model_dir, "budget": BUDGET, **settings}
    return [
        "--model", "cola_mcts",
        "--model_args", ",".join(f"{k}={v}" for k, v in model_args.items()),
        "--tasks", TASK, "--limit", str(LIMIT), "--output_path", str(output),
    ]


def run_lm_eval(args: list[str], timeout: float = 600, **extra_env: str):
    return subprocess.run(LM_EVAL + args, capture_output=True, text=True, timeout=timeout,
                          env=env(**extra_env), cwd=ROOT)


def record_files(output: str | os.PathLike) -> list[Path]:
    return sorted(Path(output).rglob("cola-records_*.jsonl"))


def load_records(output: str | os.PathLike) -> list[dict]:
    records = []
    for path in record_files(output):
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return records


def load_results(output: str | os.PathLike) -> dict:
    files = sorted(Path(output).rglob("results_*.json"))
    assert files, f"no results file under {output}"
    return json.loads(files[-1].read_text())


def comparable_records(records: list[dict]) -> dict[tuple[str, int], dict]:
    """Records by sample, without timing fields; asserts that no sample appears twice."""
    by_key: dict[tuple[str, int], dict] = {}
    for record in records:
        key = (record["task"], record["doc_id"])
        assert key not in by_key, f"sample {key} recorded twice"
        by_key[key] = {k: v for k, v in record.items() if k not in TIMING}
    return by_key


def comparable_results(results: dict) -> dict:
    """The metrics and the cola summary, without timing fields."""
    summary = dict(results["config"].get("cola_summary") or {})
    for key in SUMMARY_TIMING:
        summary.pop(key, None)
    return {"results": results["results"], "cola_summary": summary}


_REFERENCE: dict[str, Path] = {}


def reference_run(model_dir: str) -> Path:
    """The uninterrupted single-process run of ``oracle_args``, made once per session."""
    if model_dir not in _REFERENCE:
        output = Path(tempfile.mkdtemp(prefix="cola-reference-"))
        done = run_lm_eval(oracle_args(model_dir, output))
        assert done.returncode == 0, done.stderr[-3000:]
        _REFERENCE[model_dir] = output
    return _REFERENCE[model_dir]


def arc_task_manager() -> Any:
    """lm-eval's TaskManager over its ARC folder only (indexing every task is slow)."""
    from lm_eval import tasks

    folder = Path(tasks.__file__).parent / "arc"
    return tasks.TaskManager(include_defaults=False, include_path=[str(folder)])


def run_subcommand(module: Any, argv: list[str], task_manager: Any) -> int:
    """An ``lm-eval-cola`` subcommand module's ``run`` on ``argv``, in one torch thread."""
    import argparse

    import torch

    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return module.run(parser.parse_args(argv), task_manager=task_manager)
    finally:
        torch.set_num_threads(threads)
