"""Tests for lm_eval_cola.compat.local_data: lm-eval tasks read COLA_DATA_DIR instead of the hub.

Mechanism under test: ``install()`` wraps ``ConfigurableTask.download``; with ``COLA_DATA_DIR``
set, a task's hub ``dataset_path``/``dataset_name`` map to ``<root>/<name>/<config>/<split>.jsonl``
loaded by the ``json`` builder; unset, lm-eval's own download runs unchanged.

1. path resolution on tiny tmp mirrors (found, missing -> error names the file);
2. real data (``COLA_DATA_DIR`` from the environment, else skipped): lm-eval's own TaskManager
   builds gsm8k, arc_challenge, arc_easy, piqa, boolq (and the ``ai2_arc`` tag) from the built-in
   YAMLs, with sockets blocked, and every task's docs equal the local file;
3. the literal lm-eval CLI (``lm_eval --model dummy --tasks arc_challenge --limit 3``) in a
   subprocess, started early so it overlaps the in-process tests (its task index takes ~15 s);
   tier real (the rest is quick);
4. without ``COLA_DATA_DIR`` the patched download still asks the hub for the hub id.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.quick

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the package may not be installed in the venv
    sys.path.insert(0, str(REPO))

datasets = pytest.importorskip("datasets")
lm_eval_tasks = pytest.importorskip("lm_eval.tasks")
ConfigurableTask = pytest.importorskip("lm_eval.api.task").ConfigurableTask
local_tasks = pytest.importorskip("lm_eval_cola.compat.local_data")
ENV_VAR = local_tasks.ENV_VAR
LocalDataMissingError = local_tasks.LocalDataMissingError
candidate_dirs = local_tasks.candidate_dirs
resolve_split_files = local_tasks.resolve_split_files

TASKS_DIR = Path(lm_eval_tasks.__file__).parent
# The built-in task folders the real-data tests need; indexing only these keeps TaskManager fast.
TASK_DIRS = [TASKS_DIR / d for d in ("gsm8k", "arc", "piqa", "super_glue/boolq")]
# task -> file its eval docs must equal (relative to COLA_DATA_DIR)
EXPECTED = {
    "gsm8k": "gsm8k/main/test.jsonl",
    "arc_challenge": "ai2_arc/ARC-Challenge/test.jsonl",
    "arc_easy": "ai2_arc/ARC-Easy/test.jsonl",
    "piqa": "piqa/validation.jsonl",
    "boolq": "super_glue/boolq/validation.jsonl",
}
CLI_TEST = "test_cli_dummy_model_reads_local_arc_challenge"


def _real_root() -> Path | None:
    value = os.environ.get(ENV_VAR, "").strip()
    return Path(value) if value else None


needs_real_data = pytest.mark.skipif(
    _real_root() is None or not (_real_root() / EXPECTED["arc_challenge"]).is_file(),
    reason=f"set {ENV_VAR} to the local benchmark mirror (e.g. ../shared/data) to run",
)


def _rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module", autouse=True)
def _installed():
    was = local_tasks.is_installed()
    local_tasks.install()
    yield
    if not was:
        local_tasks.uninstall()


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """Start the CLI subprocess once; the test waits for it."""
    root = _real_root()
    out = tmp_path_factory.mktemp("cli")
    script = (
        "import sys, lm_eval_cola.compat.local_data as t; t.install(); "
        "from lm_eval.__main__ import cli_evaluate; "
        f"sys.argv = ['lm_eval', '--model', 'dummy', '--tasks', 'arc_challenge', '--limit', '3', "
        f"'--output_path', {str(out)!r}, '--log_samples']; cli_evaluate()"
    )
    env = dict(os.environ, **{ENV_VAR: str(root), "PYTHONPATH": str(REPO)})
    # The dummy model's tokenizer look-up (results metadata) would retry the unreachable hub for
    # ~50 s; offline mode makes it fail at once. The datasets themselves need no hub (test 2).
    env["HF_HUB_OFFLINE"] = "1"
    log = (out / "cli.log").open("w")  # a file, not a pipe: a full pipe would stall the child
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    yield proc, out
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture(scope="module", autouse=True)
def _start_cli_early(request):
    """Start the slow CLI subprocess before the other tests, only if its test will run."""
    if _real_root() is not None and any(i.name == CLI_TEST for i in request.session.items):
        request.getfixturevalue("cli_run")


@pytest.fixture(scope="module")
def task_manager():
    return lm_eval_tasks.TaskManager(
        include_defaults=False, include_path=[str(p) for p in TASK_DIRS]
    )


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# --------------------------------------------------------------------- (1) path resolution


def test_candidate_dirs_basename_then_full_id(tmp_path):
    assert candidate_dirs(tmp_path, "openai/gsm8k", "main") == [
        tmp_path / "gsm8k" / "main",
        tmp_path / "openai" / "gsm8k" / "main",
    ]
    assert candidate_dirs(tmp_path, "gsm8k", "main") == [tmp_path / "gsm8k" / "main"]
    assert candidate_dirs(tmp_path, "baber/piqa", None)[0] == tmp_path / "piqa"
    assert tmp_path / "piqa" / "default" in candidate_dirs(tmp_path, "baber/piqa", None)


def test_resolve_finds_existing_splits_only(tmp_path):
    test = _write(tmp_path / "ai2_arc" / "ARC-Easy" / "test.jsonl", [{"q": 1}])
    train = _write(tmp_path / "ai2_arc" / "ARC-Easy" / "train.jsonl", [{"q": 2}])
    got = resolve_split_files(
        tmp_path, "allenai/ai2_arc", "ARC-Easy", ["test", "validation", "train"], "test"
    )
    assert got == {"test": test, "train": train}


def test_resolve_full_hub_id_variant(tmp_path):
    f = _write(tmp_path / "aps" / "super_glue" / "boolq" / "validation.jsonl", [{"q": 1}])
    got = resolve_split_files(tmp_path, "aps/super_glue", "boolq", ["validation"], "validation")
    assert got == {"validation": f}


def test_resolve_no_splits_named_takes_all_files(tmp_path):
    a = _write(tmp_path / "squad_v2" / "train.jsonl", [{"q": 1}])
    b = _write(tmp_path / "squad_v2" / "validation.jsonl", [{"q": 1}])
    assert resolve_split_files(tmp_path, "lighteval/squad_v2") == {"train": a, "validation": b}


def test_resolve_missing_eval_split_names_the_file(tmp_path):
    _write(tmp_path / "piqa" / "train.jsonl", [{"q": 1}])
    with pytest.raises(LocalDataMissingError) as err:
        resolve_split_files(
            tmp_path, "baber/piqa", None, ["train", "validation"], "validation", task="piqa"
        )
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, ValueError)
    assert "\n" not in msg
    assert ENV_VAR in msg and "'piqa'" in msg
    assert str(tmp_path / "piqa" / "validation.jsonl") in msg
    assert err.value.path == tmp_path / "piqa" / "validation.jsonl"


def test_resolve_missing_dataset_names_the_file(tmp_path):
    with pytest.raises(LocalDataMissingError, match=r"gsm8k/main/test\.jsonl does not exist"):
        resolve_split_files(tmp_path, "openai/gsm8k", "main", ["train", "test"], "test")


# ------------------------------------------------ (1b) the patched download, on tiny mirrors

TOY = {
    "task": "toy",
    "dataset_path": "someone/toy_ds",
    "dataset_name": "cfg",
    "dataset_kwargs": {"trust_remote_code": True, "revision": "main", "token": "x"},
    "training_split": "train",
    "test_split": "test",
    "output_type": "multiple_choice",
    "doc_to_text": "{{q}}",
    "doc_to_target": "{{a}}",
    "doc_to_choice": ["x", "y"],
}
TOY_ROWS = [{"q": "first", "a": 0}, {"q": "second", "a": 1}]


def test_download_loads_local_and_drops_missing_optional_split(tmp_path, monkeypatch, no_network):
    path = _write(tmp_path / "toy_ds" / "cfg" / "test.jsonl", TOY_ROWS)
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    task = ConfigurableTask(config=json.loads(json.dumps(TOY)))
    assert list(task.eval_docs) == TOY_ROWS
    assert task.config.training_split is None  # train.jsonl is missing: lm-eval's fallback
    assert task.config.dataset_path == "someone/toy_ds"  # provenance kept
    assert task.config.metadata["cola_local_data"] == {"test": str(path)}


def test_download_missing_eval_split_raises_one_line(tmp_path, monkeypatch):
    _write(tmp_path / "toy_ds" / "cfg" / "train.jsonl", TOY_ROWS)
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(LocalDataMissingError) as err:
        ConfigurableTask(config=json.loads(json.dumps(TOY)))
    assert str(tmp_path / "toy_ds" / "cfg" / "test.jsonl") in str(err.value)
    assert "\n" not in str(err.value)


def test_builtin_task_missing_file_error(tmp_path, monkeypatch, task_manager, no_network):
    _write(tmp_path / "piqa" / "train.jsonl", [{"goal": "g", "sol1": "a", "sol2": "b", "label": 0}])
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(LocalDataMissingError, match=str(tmp_path / "piqa" / "validation.jsonl")):
        task_manager.load(["piqa"])


def test_local_builder_tasks_untouched(tmp_path, monkeypatch):
    own = _write(tmp_path / "elsewhere.jsonl", TOY_ROWS)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "empty_mirror"))
    cfg = dict(
        TOY,
        dataset_path="json",
        dataset_name=None,
        training_split=None,
        dataset_kwargs={"data_files": {"test": str(own)}},
    )
    task = ConfigurableTask(config=cfg)
    assert list(task.eval_docs) == TOY_ROWS
    assert "cola_local_data" not in (task.config.metadata or {})


def test_install_is_idempotent():
    assert local_tasks.is_installed()
    before = ConfigurableTask.__dict__["download"]
    assert local_tasks.install() is False
    assert ConfigurableTask.__dict__["download"] is before


# ------------------------------------------------- (4) without COLA_DATA_DIR: hub unchanged


def test_without_env_var_hub_download_unchanged(monkeypatch, task_manager):
    monkeypatch.delenv(ENV_VAR, raising=False)
    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name))
        row = {"question": "1+1?", "answer": "#### 2"}
        return datasets.DatasetDict(
            {s: datasets.Dataset.from_list([row, row]) for s in ("train", "test")}
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    task = task_manager.load(["gsm8k"])["tasks"]["gsm8k"]
    assert calls == [("openai/gsm8k", "main")]
    assert task.config.dataset_path == "openai/gsm8k"
    assert task.config.training_split == "train"
    assert "cola_local_data" not in task.config.metadata


# ------------------------------------------- (2) real data through lm-eval's own TaskManager


@needs_real_data
def test_standard_tasks_load_local_files(monkeypatch, task_manager, no_network):
    root = _real_root()
    monkeypatch.setenv(ENV_VAR, str(root))
    # a group/tag (ai2_arc) together with single tasks
    loaded = task_manager.load(["ai2_arc", "gsm8k", "piqa", "boolq"])
    tasks = loaded["tasks"]
    assert set(EXPECTED) <= set(tasks)
    for name, rel in EXPECTED.items():
        rows = _rows(root / rel)
        docs = tasks[name].eval_docs
        assert len(docs) == len(rows), name
        assert docs[0] == rows[0], name
        used = {Path(v).resolve() for v in tasks[name].config.metadata["cola_local_data"].values()}
        assert (root / rel).resolve() in used  # COLA_DATA_DIR may be a link
    # few-shot splits that exist locally are kept; missing ones fall back
    assert tasks["gsm8k"].config.fewshot_split == "train"
    assert len(tasks["gsm8k"].fewshot_docs()) == len(_rows(root / "gsm8k/main/train.jsonl"))
    assert tasks["piqa"].config.training_split is None


# ----------------------------------------------------- (3) the literal CLI, any lm-eval model


@pytest.mark.real  # the lm-eval CLI in a subprocess, on the local benchmark data
@needs_real_data
def test_cli_dummy_model_reads_local_arc_challenge(cli_run):
    proc, out = cli_run
    proc.wait(timeout=120)
    log = (out / "cli.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    samples = sorted(out.rglob("samples_arc_challenge_*.jsonl"))
    results = sorted(out.rglob("results_*.json"))
    assert samples and results, log[-3000:]
    rows = _rows(_real_root() / EXPECTED["arc_challenge"])[:3]
    docs = [s["doc"] for s in sorted(_rows(samples[0]), key=lambda s: s["doc_id"])]
    assert docs == rows
    cfg = json.loads(results[0].read_text())["configs"]["arc_challenge"]
    assert cfg["metadata"]["cola_local_data"]["test"] == str(
        _real_root().resolve() / EXPECTED["arc_challenge"]
    )
