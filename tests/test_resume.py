"""Resume: a real ``lm_eval`` process killed with SIGKILL mid-run, started again with the same
command, skips finished samples and ends with the same records and metrics as a run that was
never interrupted (and searched with another search_batch). A torn last line is dropped
with a warning. ``--use_cache`` is refused."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.support import cli_helpers as cli

pytestmark = pytest.mark.tiny


def _kill_after_records(args: list[str], output, lines: int, timeout: float = 400) -> int:
    """Start lm_eval, SIGKILL it once its records file has ``lines`` lines; lines at the kill."""
    process = subprocess.Popen(cli.LM_EVAL + args, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=cli.env(), cwd=cli.ROOT)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            files = cli.record_files(output)
            if files and files[0].read_bytes().count(b"\n") >= lines:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)
                return files[0].read_bytes().count(b"\n")
            if process.poll() is not None:
                pytest.fail(f"lm_eval ended (rc {process.returncode}) before it could be killed")
            time.sleep(0.02)
        pytest.fail("lm_eval wrote no records in time")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigkill_then_resume_matches_uninterrupted_run(tiny_llama_dir, tmp_path):
    reference = cli.reference_run(tiny_llama_dir)
    output = tmp_path / "killed"
    # Two samples side by side (the reference run searches 8 at once): the kill lands
    # between finished samples, and the records must not depend on what ran beside them.
    args = cli.oracle_args(tiny_llama_dir, output, search_batch=2)

    finished = _kill_after_records(args, output, lines=2)
    assert 2 <= finished < cli.LIMIT, "the kill must land mid-run"
    assert not list(output.rglob("results_*.json"))
    records_file = cli.record_files(output)[0]
    before = records_file.read_bytes()
    # A second kill mid-write leaves half a record with no newline.
    torn = json.dumps({"task": cli.TASK, "doc_id": 999, "doc_hash": "abc"})[:30]
    records_file.write_bytes(before + torn.encode())

    done = cli.run_lm_eval(args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dropping a torn last line" in done.stderr
    after = records_file.read_bytes()
    assert after.startswith(before), "finished records must be kept as they were"
    assert torn.encode() not in after

    resumed = cli.load_records(output)
    plain = cli.load_records(reference)
    assert len(resumed) == len(plain) == cli.LIMIT
    assert cli.comparable_records(resumed) == cli.comparable_records(plain)
    assert (cli.comparable_results(cli.load_results(output))
            == cli.comparable_results(cli.load_results(reference)))
    assert cli.load_results(output)["config"]["cola_summary"]["samples"] == cli.LIMIT


def test_use_cache_is_refused(tiny_llama_dir, tmp_path):
    records = tmp_path / "records.jsonl"
    records.write_text("")
    args = cli.oracle_args(tiny_llama_dir, tmp_path / "out", records=records)
    done = cli.run_lm_eval(args + ["--use_cache", str(tmp_path / "cache")])
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr[-3000:]
    assert "--use_cache" in errors[0] and "drop --use_cache" in errors[0]
    assert records.read_text() == ""
