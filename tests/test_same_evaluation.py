""""The same evaluation" (``identity.RunConditions``), shared by ``table1 --reuse`` and
``compare``'s resume, and the leaderboard's rows keyed by the prompt settings, on fixture
results files and records (no model runs).

``table1 --reuse`` takes a run for a search row only when it is the Original row's
evaluation (model_args, dtype, oracle metric and filter, max_len, chat template, few-shot,
gen_kwargs) and, document by document, has the Original row's prompt, metric, filter and
full-chain correctness; otherwise it refuses in one line naming the difference.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lm_eval_cola.cli.table1 import expected_settings
from lm_eval_cola.errors import UserError
from lm_eval_cola.results.records import read_records
from tests.support.reports_fixtures import PRETRAINED, TASKS, load, write_run

pytestmark = pytest.mark.quick

MODEL_DIR = "__models__tiny-llama"
SKIP = "mcts:protocol=cola;actions=skip;control=decoy"
TEMPLATE = "{% for m in messages %}{{ m.content }}{% endfor %}"


def edit(path: Path, change) -> None:
    data = load(path)
    change(data)
    path.write_text(json.dumps(data))


def records_file(results: Path) -> Path:
    return Path(load(results)["config"]["cola_records"])


def rewrite_records(results: Path, change) -> None:
    path = records_file(results)
    rows = [change(r.to_json()) for r in read_records(path)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def tables(tmp_path, monkeypatch):
    """The Original row as compare left it under ``out/``, and under ``reuse/`` an earlier
    skip-only search of the same samples: the same evaluation, its full chain right exactly
    where the Original row's is."""
    from lm_eval_cola.cli import compare as compare_module

    monkeypatch.setattr(compare_module, "run_variant",
                        lambda *a, **k: pytest.fail("a row was run"))
    original = write_run(tmp_path / "out" / "none" / MODEL_DIR, "none", extra_config={
        "model_dtype": "torch.float32", "cola_settings": {"budget": 1, "max_len": 8}})
    reused = write_run(tmp_path / "reuse" / "skip" / MODEL_DIR, "mcts", number=1,
                       model_args="protocol=cola,actions=skip,control=decoy", extra_config={
                           "model_dtype": "torch.float32",
                           "cola_settings": {**expected_settings(SKIP, 4), "max_len": 8}})
    full = {r.key: r.full_correct for r in read_records(records_file(original))}
    rewrite_records(reused, lambda r: {**r, "full_correct": full[(r["task"], r["doc_id"])]})
    return {"root": tmp_path, "original": original, "reused": reused}


def table1(tables, *extra: str, rows: str = "original,skip") -> int:
    from lm_eval_cola.cli import table1 as command
    from tests.support.cli_helpers import run_subcommand

    argv = ["--tasks", ",".join(TASKS), "--limit", "3", "--budget", "4", "--rows", rows,
            "--output", str(tables["root"] / "out"), "--reuse", str(tables["root"] / "reuse"),
            "--model_args", f"pretrained={PRETRAINED},device=cpu", *extra]
    return run_subcommand(command, argv, None)


def refused(tables, line: str, *extra: str, rows: str = "original,skip") -> None:
    before = {p: p.read_bytes() for p in tables["root"].rglob("*") if p.is_file()}
    with pytest.raises(UserError) as caught:
        table1(tables, *extra, rows=rows)
    message = str(caught.value)
    assert message.startswith(f"--reuse {tables['root'] / 'reuse'}: {line}"), message
    assert "\n" not in message
    after = {p: p.read_bytes() for p in tables["root"].rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing replaced


def test_reuse_takes_a_run_of_the_same_evaluation(tables, capsys):
    assert table1(tables) == 0
    assert f"skip: reusing {tables['reused']}" in capsys.readouterr().err
    assert (tables["root"] / "out" / "table1" / "table1.csv").is_file()


@pytest.mark.parametrize("parallel", [None, 1])
def test_reuse_ignores_the_parallel_setting_at_its_default(tables, capsys, parallel):
    """A run written before ``parallel`` existed (no such key) and one written with it at its
    default (``parallel: 1``, as runs write it now) are both this row's search."""
    def set_parallel(data):
        data["config"]["cola_settings"].pop("parallel", None)
        if parallel is not None:
            data["config"]["cola_settings"]["parallel"] = parallel
    edit(tables["reused"], set_parallel)
    assert table1(tables) == 0
    assert f"skip: reusing {tables['reused']}" in capsys.readouterr().err


def test_reuse_does_not_take_a_run_with_other_parallel_simulations(tables, capsys):
    edit(tables["reused"], lambda data: data["config"]["cola_settings"].update(parallel=8))
    with pytest.raises(pytest.fail.Exception, match="a row was run"):
        table1(tables)


def test_reuse_refuses_another_dtype(tables):
    edit(tables["reused"], lambda d: d["config"].update(model_dtype="torch.bfloat16"))
    refused(tables, "dtype bfloat16 != float32 (the Original row's)")


def test_reuse_refuses_another_chat_template(tables):
    edit(tables["reused"], lambda d: d.update(chat_template=TEMPLATE, fewshot_as_multiturn=True))
    refused(tables, "chat template sha256 ")
    # without an Original row, against the table's own settings: a plain table refuses it,
    # and a chat-template table refuses a plain run
    refused(tables, "chat template sha256 ", rows="skip")
    edit(tables["reused"], lambda d: d.pop("chat_template"))
    refused(tables, "chat template none (plain prompts) != applied (this table's)",
            "--apply_chat_template", rows="skip")


def test_reuse_refuses_another_filter(tables):
    edit(tables["reused"], lambda d: d["config"].update(
        model_args=d["config"]["model_args"] + ",oracle_filter=flexible-extract"))
    refused(tables, "oracle filter flexible-extract != the task default (the Original row's)")


def test_reuse_refuses_records_judged_otherwise(tables):
    """The filter the records were judged by, where the model_args do not say it."""
    def judged(filt):
        def change(record):
            return {**record, "oracle_metric": "exact_match", "oracle_filter": filt} \
                if record["task"] == "gsm8k" else record
        return change

    rewrite_records(tables["original"], judged("strict-match"))
    rewrite_records(tables["reused"], judged("flexible-extract"))
    refused(tables, "gsm8k doc 0: oracle filter flexible-extract != strict-match "
                    "(the Original row's)")


def test_reuse_refuses_another_full_chain_verdict_or_prompt(tables):
    rewrite_records(tables["reused"], lambda r: {**r, "full_correct": not r["full_correct"]}
                    if (r["task"], r["doc_id"]) == ("gsm8k", 1) else r)
    refused(tables, "gsm8k doc 1: full chain ")
    rewrite_records(tables["reused"], lambda r: {**r, "requests": [["other q", " a"]]}
                    if (r["task"], r["doc_id"]) == ("arc_challenge", 2) else r)
    refused(tables, "arc_challenge doc 2: the prompt (doc or requests) differs from the "
                    "Original row's")


def test_reuse_refusal_is_one_line_and_a_failing_exit(tables, capsys):
    from lm_eval_cola.cli import main

    edit(tables["reused"], lambda d: d["config"].update(model_dtype="torch.bfloat16"))
    argv = ["table1", "--tasks", ",".join(TASKS), "--limit", "3", "--budget", "4", "--rows",
            "original,skip", "--output", str(tables["root"] / "out"),
            "--reuse", str(tables["root"] / "reuse"),
            "--model_args", f"pretrained={PRETRAINED},device=cpu"]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "dtype bfloat16 != float32 (the Original row's)" in err[0]


# ------------------------------------------------------------------ compare's resume


@pytest.mark.parametrize(("stored", "asked", "same"), [
    ({}, {}, True),
    ({"chat_template": TEMPLATE}, {}, False),
    ({"chat_template": TEMPLATE}, {"apply_chat_template": True}, True),
    ({}, {"apply_chat_template": True}, False),
    ({"system_instruction": "Be brief."}, {}, False),
    ({"system_instruction": "Be brief."}, {"system_instruction": "Be brief."}, True),
    ({"config": {"cola_num_fewshot": 5}}, {}, False),
    ({"config": {"cola_num_fewshot": 5}}, {"num_fewshot": 5}, True),
    ({"config": {"gen_kwargs": {"max_gen_toks": 32}}}, {"gen_kwargs": "max_gen_toks=32"}, True),
    ({"config": {"gen_kwargs": {"max_gen_toks": 32}}}, {}, False),
    ({"chat_template": TEMPLATE, "fewshot_as_multiturn": True},
     {"apply_chat_template": True, "fewshot_as_multiturn": False}, False),
])
def test_compare_resumes_only_a_run_with_the_same_prompt_settings(tmp_path, stored, asked,
                                                                  same):
    from lm_eval_cola.cli.compare import Variant, complete_results

    path = write_run(tmp_path / "mcts" / MODEL_DIR, "mcts")
    args = load(path)["config"]["model_args"]

    def change(data):
        data["config"].update(stored.get("config", {}))
        data.update({k: v for k, v in stored.items() if k != "config"})
        data.setdefault("fewshot_as_multiturn", True)  # what simple_evaluate writes

    edit(path, change)
    variant = Variant("mcts", "cola_mcts", args, tmp_path / "mcts")
    assert (complete_results(variant, TASKS, 3, asked) == path) is same


# ------------------------------------------------------------------ the leaderboard


def test_a_chat_template_run_and_a_plain_run_are_two_rows(tmp_path):
    from lm_eval_cola.reports import build_board

    plain = write_run(tmp_path / "plain" / MODEL_DIR, "mcts", number=0)
    chat = write_run(tmp_path / "chat" / MODEL_DIR, "mcts", number=1)
    edit(chat, lambda d: d.update(chat_template=TEMPLATE, fewshot_as_multiturn=True))
    shots = write_run(tmp_path / "shots" / MODEL_DIR, "mcts", number=2)
    edit(shots, lambda d: d["config"].update(cola_num_fewshot=5,
                                            gen_kwargs={"max_gen_toks": 32}))
    board = build_board([tmp_path])
    assert not [w for w in board.warnings if "superseded" in w]
    rows = {tuple(str(s) for s in row.sources): row for row in board.rows}
    assert set(rows) == {(str(plain),), (str(chat),), (str(shots),)}
    sha = hashlib.sha256(TEMPLATE.encode()).hexdigest()[:7]
    assert rows[(str(plain),)].settings == "budget=4, seed=1234"
    assert rows[(str(chat),)].settings == (f"budget=4, seed=1234, chat template {sha}, "
                                           "multi-turn few-shot")
    assert rows[(str(shots),)].settings == ("budget=4, seed=1234, 5-shot, "
                                            "gen_kwargs max_gen_toks=32")
