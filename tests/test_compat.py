"""The compatibility layer (lm_eval_cola/compat/): what it relies on in lm-eval still exists,
nothing else in the package names lm-eval's private symbols, the version gate, the flag that
says the evaluator hook handed a cola model its tasks (import cycles and the package's layers:
test_layers.py)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lm_eval_cola
from lm_eval_cola.compat import hooks, lm_eval_private, local_data, version
from lm_eval_cola.compat.version import UnsupportedLmEvalError, check_lm_eval_version
from lm_eval_cola.errors import UserError

pytestmark = pytest.mark.quick

PACKAGE = Path(lm_eval_cola.__file__).parent
PRIVATE_MODULE = "lm_eval_cola.compat.lm_eval_private"
# Modules left out of the private-symbol check while they are being moved onto
# compat.lm_eval_private (models.py was, until it called the functions there).
NOT_YET_CHECKED: set[str] = set()


# ------------------------------------------------------------------ what we rely on exists


@pytest.mark.parametrize("symbol",
                         lm_eval_private.PRIVATE_SYMBOLS + lm_eval_private.PATCHED_SYMBOLS)
def test_symbol_exists_in_the_installed_lm_eval(symbol):
    try:
        lm_eval_private.resolve(symbol)
    except (ImportError, AttributeError) as err:
        pytest.fail(f"{symbol} is gone from the installed lm-eval ({err!r}); "
                    f"update {PRIVATE_MODULE}")


@pytest.fixture(scope="module")
def hflm(tiny_llama_dir):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=tiny_llama_dir, device="cpu", batch_size=2)


@pytest.mark.tiny  # builds a tiny model (hflm)
def test_hflm_instance_attributes_exist(hflm):
    for name in lm_eval_private.HFLM_INSTANCE_ATTRIBUTES:
        assert hasattr(hflm, name), f"HFLM no longer sets {name}; update {PRIVATE_MODULE}"
    assert callable(getattr(hflm, lm_eval_private.MODEL_GENERATE))


@pytest.mark.tiny  # builds a tiny model (hflm)
def test_encode_pair_tokenizes_as_lm_eval_does(hflm, monkeypatch):
    from lm_eval.api.instance import Instance

    pairs = [("Question: is the whale a mammal? Answer:", " yes"), ("", " yes"),
             ("The answer is ", "42"), ("", "The answer")]
    seen: list = []

    def capture(requests, disable_tqdm=False):
        seen.extend(requests)
        return [(0.0, True)] * len(requests)

    monkeypatch.setattr(hflm, "_loglikelihood_tokens", capture)
    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    hflm.loglikelihood(requests, disable_tqdm=True)
    assert [(c, t) for _, c, t in seen] == [lm_eval_private.encode_pair(hflm, *p) for p in pairs]


@pytest.mark.tiny  # builds a tiny model (hflm)
def test_hflm_helpers(hflm):
    import torch

    assert lm_eval_private.hf_model_dtype(hflm) == torch.float32
    saved = (hflm.rank, hflm.world_size)
    lm_eval_private.set_data_parallel(hflm, 1, 3)
    try:
        assert (hflm.rank, hflm.world_size) == (1, 3)
    finally:
        lm_eval_private.set_data_parallel(hflm, *saved)
    before = lm_eval_private.batch_size_per_gpu(hflm)
    with lm_eval_private.batch_size_at_least(hflm, 5):
        assert hflm.batch_size_per_gpu == max(before, min(5, hflm.max_batch_size))
    assert hflm.batch_size_per_gpu == before


def test_small_helpers_match_lm_eval():
    from lm_eval.utils import handle_non_serializable, hash_string

    doc = {"question": "Ünïcode?", "choices": [1, 2], "set": {3}}
    text = json.dumps(doc, indent=2, default=handle_non_serializable, ensure_ascii=False)
    assert lm_eval_private.hash_doc(doc) == hash_string(text)
    assert lm_eval_private.key_val_to_dict("pretrained=a/b,batch_size=4") == {
        "pretrained": "a/b", "batch_size": 4}
    assert lm_eval_private.model_name_from_args("pretrained=a/b,dtype=float32") == "a/b"
    assert lm_eval_private.model_name_from_args({"chain": "0-3"}) is None
    assert "/" not in lm_eval_private.sanitize_model_name("org/model")


def test_override_model_generate_routes_hflm_generation():
    from lm_eval.models.huggingface import HFLM

    class Sub(HFLM):
        def fast_generate(self, context, max_length, stop, **kwargs):
            return "ours"

    lm_eval_private.override_model_generate(Sub, "fast_generate")
    assert getattr(Sub, lm_eval_private.MODEL_GENERATE) is Sub.fast_generate


# ------------------------------------------------------------------ nothing else names them


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined_private_names(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, classes, assigned names and attributes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return {n for n in names if _is_private(n)}


@pytest.fixture(scope="module")
def lm_eval_private_names() -> set[str]:
    """Private names lm-eval defines (its task folders' helpers aside), less the ones our own
    code defines too, unless those come from HFLM (a subclass setting HFLM's ``_rank`` or
    overriding its ``_model_generate`` touches lm-eval's private state all the same)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    root = Path(lm_eval.__file__).parent
    theirs: set[str] = set()
    for path in root.rglob("*.py"):
        if "tasks" not in path.relative_to(root).parts[:1]:
            theirs |= _defined_private_names(ast.parse(path.read_text(encoding="utf-8")))
    inherited = {n for n in dir(HFLM) if _is_private(n)}
    for cls in HFLM.__mro__:
        if cls.__module__.startswith("lm_eval."):
            source = Path(sys.modules[cls.__module__].__file__).read_text(encoding="utf-8")
            inherited |= _defined_private_names(ast.parse(source))
    ours: set[str] = set()
    for path in _package_modules().values():
        ours |= _defined_private_names(ast.parse(path.read_text(encoding="utf-8")))
    return theirs - (ours - inherited)


def _private_uses(tree: ast.AST, private_names: set[str]) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names
                      if a.name.split(".")[0] == "lm_eval" and any(map(_is_private,
                                                                       a.name.split(".")))]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            parts = node.module.split(".")
            if parts[0] == "lm_eval" and (any(map(_is_private, parts))
                                          or any(_is_private(a.name) for a in node.names)):
                found.append((node.lineno, f"from {node.module} import "
                              f"{', '.join(a.name for a in node.names)}"))
        elif isinstance(node, ast.Attribute) and node.attr in private_names:
            found.append((node.lineno, f".{node.attr}"))
        elif isinstance(node, ast.FunctionDef) and node.name in private_names:
            found.append((node.lineno, f"def {node.name}"))  # overrides HFLM's private method
    return found


def test_only_lm_eval_private_names_private_lm_eval_symbols(lm_eval_private_names):
    # Sanity: the check sees the private names the layer itself uses.
    private_tree = ast.parse(_package_modules()[PRIVATE_MODULE].read_text(encoding="utf-8"))
    used = {what for _, what in _private_uses(private_tree, lm_eval_private_names)}
    assert {"._encode_pair", "._rank", "._get_model_name", "._model_generate"} <= used, used
    offenders = []
    for name, path in _package_modules().items():
        if name == PRIVATE_MODULE or name in NOT_YET_CHECKED:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        offenders += [f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
                      for line, what in _private_uses(tree, lm_eval_private_names)]
    assert not offenders, ("private lm-eval symbols outside compat/lm_eval_private.py "
                           "(add a function there and call it):\n" + "\n".join(offenders))


# ------------------------------------------------------------------ the version gate


@pytest.mark.parametrize("installed", ["0.4.13", "0.4.14", "0.4.99.post1", "0.4.13+local"])
def test_supported_versions_pass(monkeypatch, installed):
    monkeypatch.setattr(version, "installed_lm_eval_version", lambda: installed)
    assert check_lm_eval_version() == installed


@pytest.mark.parametrize("installed",
                         ["0.4.12", "0.4.13rc1", "0.5.0", "0.5.0rc1", "1.0", "garbage", None])
def test_unsupported_versions_fail_with_one_line(monkeypatch, installed):
    monkeypatch.setattr(version, "installed_lm_eval_version", lambda: installed)
    with pytest.raises(UnsupportedLmEvalError) as err:
        check_lm_eval_version()
    message = str(err.value)
    assert isinstance(err.value, UserError) and "\n" not in message
    assert version.SUPPORTED_RANGE in message and version.TESTED_LM_EVAL in message
    assert (installed or "not installed") in message


def test_the_installed_lm_eval_is_supported():
    assert check_lm_eval_version() == version.installed_lm_eval_version()


def test_installing_hooks_checks_the_version(monkeypatch):
    monkeypatch.setattr(version, "installed_lm_eval_version", lambda: "0.5.1")
    monkeypatch.setattr(hooks, "_INSTALLED", False)
    monkeypatch.setattr(local_data, "is_installed", lambda: False)
    from lm_eval import evaluator
    from lm_eval.api.task import ConfigurableTask

    before = (evaluator.evaluate, ConfigurableTask.__dict__["download"])
    with pytest.raises(UnsupportedLmEvalError, match="lm-eval 0.5.1 is installed"):
        hooks.install_evaluator_hook()
    with pytest.raises(UnsupportedLmEvalError, match="lm-eval 0.5.1 is installed"):
        local_data.install()
    assert (evaluator.evaluate, ConfigurableTask.__dict__["download"]) == before  # untouched


_GUARD_PROBE = """
import json, sys
import lm_eval_cola.compat.version as v
v.installed_lm_eval_version = lambda: "0.5.0"
import lm_eval.evaluator as ev, lm_eval.api.registry as r
from lm_eval.api.task import ConfigurableTask
out = {"registered": "cola_hf" in r.model_registry and "hf" in r.model_registry,
       "tasks_imported": "lm_eval.tasks" in sys.modules,
       "download_patched": hasattr(ConfigurableTask.__dict__["download"],
                                   "_cola_local_tasks_original"),
       "evaluate_patched": ev.evaluate.__module__ != "lm_eval.evaluator"}
try:
    ev.simple_evaluate(model="cola_hf", tasks=["arc_challenge"])
except Exception as err:
    out["error"] = [type(err).__name__, str(err)]
print(json.dumps(out))
"""


def test_startup_hook_on_an_unsupported_lm_eval(tmp_path):
    """The .pth hook on lm-eval 0.5 (faked): one warning line, no patches, our models still
    registered, and asking for one fails with the one-line version error."""
    env = {k: v for k, v in os.environ.items() if k != "LM_EVAL_COLA_NO_AUTOLOAD"}
    proc = subprocess.run([sys.executable, "-c", _GUARD_PROBE], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["registered"] and out["tasks_imported"]
    assert not out["download_patched"] and not out["evaluate_patched"]
    kind, message = out["error"]
    assert kind == "UnsupportedLmEvalError" and "lm-eval 0.5.0 is installed" in message
    warnings = [line for line in proc.stderr.splitlines() if "lm-eval 0.5.0" in line]
    assert len(warnings) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]


# ------------------------------------------------------------------ tasks attached


class _FakeColaModel:
    def __init__(self):
        self.attached = None

    def attach_tasks(self, task_dict):
        self.attached = task_dict


def test_evaluator_hook_marks_tasks_attached():
    """A cola model run through lm-eval's evaluator gets the task objects, and says so;
    one that did not (no hook) says so too, instead of quietly loading its own tasks."""
    from lm_eval import evaluator

    from lm_eval_cola.compat import tasks_attached

    hooks.install_evaluator_hook()
    direct, inner = _FakeColaModel(), _FakeColaModel()
    cached = type("CachingLM", (), {"lm": inner})()  # lm-eval's CachingLM keeps it as .lm
    task_dict = {"tasks": {}, "groups": {}}
    assert not tasks_attached(direct) and not tasks_attached(cached)
    for lm in (direct, cached):
        # limit and samples together: lm-eval's evaluate refuses right after our hook ran.
        with pytest.raises(ValueError, match="limit"):
            evaluator.evaluate(lm, task_dict, limit=1, samples={})
    assert direct.attached is task_dict and inner.attached is task_dict
    assert tasks_attached(direct) and tasks_attached(cached) and tasks_attached(inner)


def test_compat_imports_nothing_heavy(tmp_path):
    """The start-up hook imports compat/registration.py inside lm-eval's own import: the
    package and that module must not pull in lm-eval, torch or transformers themselves."""
    code = ("import json, sys; import lm_eval_cola.compat, lm_eval_cola.compat.registration; "
            "print(json.dumps(sorted(sys.modules)))")
    env = dict(os.environ, LM_EVAL_COLA_NO_AUTOLOAD="1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    heavy = [m for m in json.loads(proc.stdout) if m.split(".")[0] in
             ("torch", "transformers", "lm_eval", "datasets", "yaml")]
    assert heavy == []


def test_plain_runs_of_the_embedded_model_are_labelled_at_the_source():
    """A plain ``--model hf`` run of the embedded model gets ``cola_model`` in its results,
    so reports label it without probing the reader's installed packages."""
    from lm_eval_cola.compat.hooks import label_embedded_model
    from lm_eval_cola.harness.default_model import DefaultModelMissingError, default_model

    try:
        embedded = default_model()
    except DefaultModelMissingError as err:
        pytest.skip(str(err))
    for args in (f"pretrained={embedded.folder},gguf_file={embedded.gguf_file}",
                 {"pretrained": embedded.folder, "gguf_file": embedded.gguf_file}):
        config = {"model": "hf", "model_args": args}
        label_embedded_model(config)
        assert config["cola_model"] == embedded.name
    other = {"model": "hf", "model_args": "pretrained=/some/other/model"}
    label_embedded_model(other)
    assert "cola_model" not in other
    label_embedded_model({"model_args": "not a valid=arg=string,,"})  # never raises
