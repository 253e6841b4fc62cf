"""Data parallel: ``lm_eval --model cola_mcts`` over 2 CPU processes (torchrun, gloo) writes
every sample's record once across the ranks' files, and its metrics, records and summary equal
a single-process run with the same seed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import cli_helpers as cli

pytestmark = pytest.mark.tiny


def test_two_cpu_ranks_equal_one_process(tiny_llama_dir, tmp_path):
    reference = cli.reference_run(tiny_llama_dir)
    output = tmp_path / "dp2"
    # accelerate takes the launcher's ranks on CPU only with ACCELERATE_USE_CPU (what
    # `accelerate launch --cpu` sets); `accelerate launch --cpu` itself starts one process.
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "--no_python", *cli.LM_EVAL, *cli.oracle_args(tiny_llama_dir, output),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env=cli.env(ACCELERATE_USE_CPU="true"), cwd=cli.ROOT)
    assert done.returncode == 0, done.stderr[-3000:]

    files = cli.record_files(output)
    assert sorted(p.name.rsplit("_", 1)[-1] for p in files) == ["rank0.jsonl", "rank1.jsonl"]
    shares = [len(p.read_text().splitlines()) for p in files]
    assert all(shares) and sum(shares) == cli.LIMIT, shares

    both = cli.load_records(output)
    plain = cli.load_records(reference)
    assert cli.comparable_records(both) == cli.comparable_records(plain)  # none lost, none twice
    results, single = cli.load_results(output), cli.load_results(reference)
    assert cli.comparable_results(results) == cli.comparable_results(single)
    assert results["config"]["cola_summary"]["samples"] == cli.LIMIT
    assert sorted(results["config"]["cola_records_files"]) == [str(p) for p in files]

    # The leaderboard reads every rank's records, each sample once.
    from lm_eval_cola.reports import build_board

    board = build_board([output])
    assert [len(row.records) for row in board.rows] == [cli.LIMIT]
    assert board.rows[0].task_summaries[cli.TASK].samples == cli.LIMIT


def test_compare_with_two_processes_equals_one_process(tiny_llama_dir, tmp_path):
    """``lm-eval-cola compare --processes 2``: each variant over 2 ranks, same as lm_eval."""
    from lm_eval_cola.cli import main

    reference = cli.reference_run(tiny_llama_dir)
    output = tmp_path / "cmp"
    status = main(["compare", "--searchers", "mcts", "--tasks", cli.TASK, "--limit",
                   str(cli.LIMIT), "--budget", str(cli.BUDGET), "--processes", "2",
                   "--model_args", f"pretrained={tiny_llama_dir}", "--output", str(output)])
    assert status == 0
    files = cli.record_files(output)
    assert [p.name.rsplit("_", 1)[-1] for p in files] == ["rank0.jsonl", "rank1.jsonl"]
    assert (cli.comparable_records(cli.load_records(output))
            == cli.comparable_records(cli.load_records(reference)))
    assert (cli.comparable_results(cli.load_results(output))
            == cli.comparable_results(cli.load_results(reference)))
