"""Bad input: each case ends in one clear line that names the bad value and what is allowed
(a UserError, printed as ``error: ...`` with no traceback), and leaves existing records intact.

Most cases run in this process (each real ``lm_eval`` start indexes every lm-eval task: slow);
the real commands are checked for the one-line output in subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lm_eval_cola.errors import UserError
from tests.support import cli_helpers as cli
from tests.support.record_rows import RECORD

pytestmark = pytest.mark.tiny


@pytest.fixture()
def records(tmp_path) -> Path:
    """An existing records file that no bad input may touch."""
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(RECORD) + "\n")
    return path


def one_line(error: BaseException) -> str:
    assert isinstance(error, UserError), f"{type(error).__name__}: {error}"
    line = f"error: {error}"
    assert "\n" not in line
    return line


def expect_error(make, *needles: str) -> str:
    with pytest.raises(UserError) as caught:
        make()
    line = one_line(caught.value)
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def model(tiny_dir: str, records: Path, cls: str = "ColaHFLM", **args):
    from lm_eval_cola.harness import models

    return getattr(models, cls)(pretrained=tiny_dir, records=str(records), **args)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        ({"chain": "0-2+x"}, ["'x'", "allowed: N, A-B"]),  # malformed chain text
        ({"chain": "0-9"}, ["'0-9'", "index 4 out of range", "allowed 0-3"]),
        ({"chain": "+"}, ["empty chain '+'", "at least one layer"]),
        ({"chain": "0-3*3"}, ["'0-3*3'", "over the cap of 8", "max_chain_length"]),
        ({"searcher": "beam"}, ["'beam'", "allowed:", "mcts"]),  # unknown searcher
        ({"searcher": "mcts", "budget": 0}, ["budget", "0"]),
        ({"searcher": "greedy", "budget": -3}, ["budget", "-3"]),
        ({"searcher": "greedy", "c": 2}, ["'c'", "'greedy'", "its settings:"]),
        ({"c": 2}, ["'c'", "needs a searcher"]),
        ({"searcher": "mcts", "chain": "0-2"}, ["'0-2'", "searches start from the full chain"]),
        ({"searcher": "mcts", "search_batch": 0}, ["search_batch 0", "allowed: an integer >= 1"]),
        ({"max_chain_length": 0}, ["max_chain_length 0", "allowed: an integer >= 1"]),
        ({"chain": ""}, ["empty chain=", "identity"]),
        ({"searcher": "mcts", "control": "shuffle"}, ["control 'shuffle'", "allowed: none, decoy"]),
        ({"control": "decoy"}, ["control=decoy needs a searcher"]),
        ({"searcher": "mcts", "record_chains": "some"},
         ["record_chains 'some'", "allowed: best, all"]),
        ({"record_chains": "all"}, ["record_chains=all needs a searcher"]),
        ({"searcher": "mcts", "share_prompts": "sometimes"},
         ["share_prompts 'sometimes'", "allowed: True or False"]),
    ],
    ids=["malformed-chain", "layer-out-of-range", "empty-chain", "chain-over-cap",
         "unknown-searcher", "zero-budget", "negative-budget", "setting-of-other-searcher",
         "setting-without-searcher", "chain-with-searcher", "zero-search-batch",
         "zero-max-chain-length", "empty-chain-arg", "unknown-control", "control-without-searcher",
         "unknown-record-chains", "record-chains-without-searcher", "share-prompts-not-bool"],
)
def test_bad_model_args(tiny_llama_dir, records, args, needles):
    before = records.read_bytes()
    expect_error(lambda: model(tiny_llama_dir, records, **args), *needles)
    assert records.read_bytes() == before


def test_settings_are_refused_before_the_model_loads(monkeypatch, records):
    """Anything checkable without the model fails without loading it."""
    from lm_eval.models.huggingface import HFLM

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad setting was refused")

    monkeypatch.setattr(HFLM, "__init__", no_loading)
    for args in ({"max_chain_length": 0}, {"chain": ""}, {"searcher": "mcts", "budget": 0},
                 {"searcher": "mcts", "control": "decoys"}, {"control": "decoy"}):
        with pytest.raises(UserError):
            model("/nowhere", records, **args)
    # records under a path that is a file: refused before loading, naming the path
    unwritable = records / "out" / "records.jsonl"
    expect_error(lambda: model("/nowhere", unwritable, searcher="mcts"), repr(str(unwritable)),
                 "allowed: a file path in a writable folder")


def test_missing_pretrained_folder_is_one_line(tmp_path, records):
    missing = str(tmp_path / "no" / "such" / "dir")
    expect_error(lambda: model(missing, records), repr(missing), "does not exist",
                 "allowed: a local model folder")


def test_random_searcher_leaves_batch_size_to_lm_eval(tiny_llama_dir, tmp_path):
    """lm-eval always passes batch_size (-b 8); the random searcher once took it."""
    from lm_eval_cola.harness import models

    eight = models.ColaRandom(pretrained=tiny_llama_dir, batch_size=8, budget=5,
                              records=str(tmp_path / "a.jsonl"))
    one = models.ColaRandom(pretrained=tiny_llama_dir, budget=5,
                            records=str(tmp_path / "b.jsonl"))
    assert eight.batch_size_per_gpu == 8
    assert "batch_size" not in eight.searcher.settings.__dataclass_fields__
    assert eight.run_facts().config_hash() == one.run_facts().config_hash()


def test_bad_oracle_metric_fails_when_tasks_attach_before_any_search(tiny_llama_dir, records):
    task = _arc_task("metric_arc")
    lm = model(tiny_llama_dir, records, searcher="mcts", budget=2, oracle_metric="accc")
    expect_error(lambda: lm.attach_tasks({"metric_arc": task}), "'accc'", "metric_arc",
                 "allowed: acc")


@pytest.mark.parametrize("attach", [True, False])
def test_unattached_task_warns_loudly(tiny_llama_dir, records, caplog, monkeypatch, attach):
    """A task the evaluator hook did not attach is judged by a task object of our own:
    never silently."""
    monkeypatch.setenv("COLA_DATA_DIR", cli.DATA_DIR)
    lm = model(tiny_llama_dir, records, searcher="mcts", budget=2)
    if attach:
        lm.attach_tasks({"attached_arc": _arc_task("attached_arc")})
    with caplog.at_level("WARNING"):
        lm.judges.task("arc_easy")
    needle = "not among the tasks lm-eval attached" if attach else "did not hand this model"
    assert any(needle in r.getMessage() for r in caplog.records)


def test_unknown_searcher_setting(tiny_llama_dir, records):
    """A misspelt setting must not reach transformers as a model kwarg (a TypeError there)."""
    before = records.read_bytes()
    expect_error(lambda: model(tiny_llama_dir, records, cls="ColaMCTS", budgett=4),
                 "'budgett'", "did you mean 'budget'", "allowed:")
    assert records.read_bytes() == before


def test_unsupported_architecture(tmp_path, records):
    import transformers as T

    from tests.support.tiny_models import tiny_tokenizer

    folder = tmp_path / "gpt2"
    tokenizer = tiny_tokenizer()
    config = T.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2,
                          n_positions=128, bos_token_id=1, eos_token_id=2)
    T.GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    before = records.read_bytes()
    expect_error(lambda: model(str(folder), records), "'gpt2'", "supported:", "llama")
    assert records.read_bytes() == before


def _arc_task(name: str, **overrides):
    from lm_eval.api.task import ConfigurableTask

    import lm_eval_cola.compat.local_data as local

    local.install()
    config = {
        "task": name, "dataset_path": "allenai/ai2_arc", "dataset_name": "ARC-Challenge",
        "test_split": "test", "output_type": "multiple_choice",
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_target": "{{choices.label.index(answerKey)}}",
        "doc_to_choice": "{{choices.text}}", "metric_list": [{"metric": "acc"}],
    }
    config.update(overrides)
    return ConfigurableTask(config=config)


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_data_dir_missing_or_lacking_the_file(tmp_path, monkeypatch, folder):
    root = tmp_path / folder
    if folder == "empty":
        root.mkdir()
    monkeypatch.setenv("COLA_DATA_DIR", str(root))
    line = expect_error(lambda: _arc_task("mini_arc"), f"COLA_DATA_DIR={root}", "mini_arc",
                        "test.jsonl", "does not exist")
    if folder == "missing":
        assert "is not a directory" in line


def test_oracle_on_task_without_gold(tiny_llama_dir, records, monkeypatch):
    monkeypatch.setenv("COLA_DATA_DIR", cli.DATA_DIR)
    task = _arc_task("no_gold_arc", output_type="generate_until", doc_to_choice=None,
                     doc_to_target="{{ '' }}", metric_list=[{"metric": "exact_match"}])
    task.build_all_requests(limit=1, rank=0, world_size=1)
    lm = model(tiny_llama_dir, records, cls="ColaMCTS", budget=2)
    lm.attach_tasks({"no_gold_arc": task})
    before = records.read_bytes()
    expect_error(lambda: lm.loglikelihood(task.instances, disable_tqdm=True),
                 "'no_gold_arc'", "no usable gold")
    assert records.read_bytes() == before


def test_oracle_on_perplexity_task(tiny_llama_dir, records):
    class Request:
        task_name = "wikitext"

    lm = model(tiny_llama_dir, records, cls="ColaGreedy")
    expect_error(lambda: lm.loglikelihood_rolling([Request()]), "'wikitext'", "no gold answer",
                 "multiple_choice")


def test_corrupt_records_file(tmp_path):
    from lm_eval_cola.results.records import read_records

    path = tmp_path / "cola-records_x.jsonl"
    text = json.dumps(RECORD) + "\n{not json\n" + json.dumps({**RECORD, "doc_id": 1}) + "\n"
    path.write_text(text)
    expect_error(lambda: read_records(path, repair=True), str(path), "line 2",
                 "move the file away or fix that line")
    assert path.read_text() == text


def test_unwritable_output(tmp_path):
    from lm_eval_cola.results.records import RecordWriter

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    target = blocker / "out" / "records.jsonl"
    expect_error(lambda: RecordWriter(target), str(target), "cannot write records")
    assert blocker.read_text() == "not a folder"


def test_models_import_installs_the_excepthook():
    code = ("import lm_eval_cola.harness.models; from lm_eval_cola.errors import UserError; "
            "raise UserError(\"bad budget 0; allowed: an integer >= 1\")")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=cli.env(), timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == ["error: bad budget 0; allowed: an integer >= 1"]


def test_real_lm_eval_command_prints_one_line(tiny_llama_dir, records):
    """The real ``lm_eval`` command: a bad chain is one line, no traceback, records intact."""
    before = records.read_bytes()
    args = ["--model", "cola_hf", "--model_args",
            f"pretrained={tiny_llama_dir},chain=0-9,records={records}",
            "--tasks", cli.TASK, "--limit", "1"]
    done = cli.run_lm_eval(args)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: layer index 4 out of range in chain '0-9'; this model has 4 layers "
                      "(allowed 0-3)"], done.stderr[-3000:]
    assert records.read_bytes() == before


def _no_loading(monkeypatch) -> None:
    from lm_eval.models.huggingface import HFLM

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr(HFLM, "__init__", no_loading)


@pytest.mark.parametrize(("cls", "searcher"), [("ColaMCTS", "greedy"), ("ColaGreedy", "none"),
                                               ("ColaRandom", "mcts")])
def test_a_searcher_model_refuses_another_searcher(monkeypatch, records, cls, searcher):
    """cola_mcts searcher=greedy would run greedy under the name cola_mcts."""
    from lm_eval_cola.harness import models
    from lm_eval_cola.harness.config import ColaConfig

    _no_loading(monkeypatch)
    own = getattr(models, cls).default_searcher
    expect_error(lambda: model("/nowhere", records, cls=cls, searcher=searcher),
                 f"searcher={searcher} conflicts with the model cola_{own}",
                 f"allowed: searcher={own}", f"cola_hf with searcher={searcher}")
    config, _ = ColaConfig.from_model_args({"searcher": own}, own, set())  # its own: fine
    assert config.searcher == own


@pytest.mark.parametrize(("name", "model_args", "kwargs", "needles"), [
    ("cola_mcts", "budget=2", {"predict_only": True},
     ["--predict_only cannot run cola_mcts with searcher mcts", "allowed: drop --predict_only"]),
    ("cola_hf", "searcher=none", {"predict_only": True},
     ["--predict_only cannot run cola_hf with searcher none"]),
    ("cola_mcts", "budget=2", {"samples": {"arc_challenge": [5, 0]}},
     ["--samples for task 'arc_challenge': [5, 0]", "increasing", "e.g. [0, 5]"]),
    ("cola_hf", "", {"samples": {"arc_challenge": [1, 1]}}, ["[1, 1]", "without repeats"]),
], ids=["predict-only-mcts", "predict-only-searcher-none", "unsorted-samples",
        "repeated-samples"])
def test_refused_by_lm_eval_before_the_model_loads(monkeypatch, records, name, model_args,
                                                   kwargs, needles):
    """What would fail only after the search (--predict_only turns the metric off) or
    mislabel records (--samples out of order) is refused first, in one line."""
    import lm_eval

    from lm_eval_cola.compat import hooks

    hooks.install_evaluator_hook()
    _no_loading(monkeypatch)
    args = ",".join(filter(None, ["pretrained=/nowhere", f"records={records}", model_args]))
    before = records.read_bytes()
    expect_error(lambda: lm_eval.simple_evaluate(model=name, model_args=args,
                                                 tasks=["arc_challenge"], **kwargs), *needles)
    assert records.read_bytes() == before
    # a fixed chain needs no metric: --predict_only goes on to load the model
    with pytest.raises(AssertionError, match="the model was loaded"):
        lm_eval.simple_evaluate(model="cola_hf", model_args=f"pretrained={records.parent},"
                                "chain=0-1", tasks=["arc_challenge"], predict_only=True)


def test_lm_eval_command_refuses_predict_only_with_a_searcher(tiny_llama_dir, records):
    before = records.read_bytes()
    output = records.parent / "out"
    output.mkdir()
    (output / "earlier_results.json").write_text("{}")
    done = cli.run_lm_eval(["--model", "cola_greedy", "--model_args",
                            f"pretrained={tiny_llama_dir},budget=2,records={records}",
                            "--tasks", cli.TASK, "--limit", "1", "--predict_only",
                            "--output_path", str(output)])
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(
        "error: --predict_only cannot run cola_greedy with searcher greedy"), done.stderr[-3000:]
    assert "Loading weights" not in done.stderr  # refused before the model loads
    assert records.read_bytes() == before
    assert [p.name for p in output.rglob("*")] == ["earlier_results.json"]


def test_an_unknown_task_loaded_by_name_is_refused_in_one_line():
    """A task the judges load by name (verify, a model driven outside lm-eval's evaluator)
    that lm-eval does not know: one UserError naming it, not lm-eval's KeyError."""
    from lm_eval_cola.search.judge import TaskJudges

    judges = TaskJudges(None, None, expect_attached=False)
    with pytest.raises(UserError, match="task 'no_such_task_xyz' not found"):
        judges.task("no_such_task_xyz")
