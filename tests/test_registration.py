"""Our models are found by lm-eval without any import by the user.

The installed ``lm_eval_cola.pth`` imports ``lm_eval_cola._autoload`` at interpreter start; that
module waits for ``lm_eval.api.registry`` to be imported and then (through
``lm_eval_cola.compat.registration``) registers the built-in models and ``cola_*`` placeholders.
These tests run fresh interpreters (subprocesses), since the hook acts at start-up, so they
need the package installed (``pip install -e .`` or ``pip install .``).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lm_eval_cola import _autoload
from lm_eval_cola.compat import registration

pytestmark = pytest.mark.tiny

HEAVY = ("torch", "transformers", "lm_eval")
NOT_INSTALLED = (
    "the start-up hook is not active: install the package (pip install -e .) so that "
    "lm_eval_cola.pth lands in site-packages"
)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(_autoload.DISABLE_ENV, None)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


def _python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    # cwd is a scratch folder, so the package comes from site-packages, not from the checkout.
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _json_of(proc: subprocess.CompletedProcess):
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ start-up cost

_STARTUP_PROBE = """
import json, sys
print(json.dumps({
    "modules": sorted(sys.modules),
    "hooked": any(type(f).__name__ == "_PostImportFinder" for f in sys.meta_path),
}))
"""


def test_startup_hook_is_active_and_imports_nothing_heavy(tmp_path):
    with_hook = _json_of(_python(_STARTUP_PROBE, tmp_path))
    assert "lm_eval_cola._autoload" in with_hook["modules"], NOT_INSTALLED
    assert with_hook["hooked"], "the import hook is not on sys.meta_path"
    heavy = [m for m in with_hook["modules"] if m.split(".")[0] in HEAVY]
    assert heavy == [], f"imported at interpreter start: {heavy}"

    # Everything the hook adds to a bare start: our two tiny modules, nothing else.
    without = _json_of(_python(_STARTUP_PROBE, tmp_path, **{_autoload.DISABLE_ENV: "1"}))
    assert not without["hooked"]
    added = set(with_hook["modules"]) - set(without["modules"])
    assert added <= {"lm_eval_cola", "lm_eval_cola._autoload"}, added


def test_importtime_of_the_hook_is_small(tmp_path):
    proc = _python("pass", tmp_path, PYTHONPROFILEIMPORTTIME="1")
    assert proc.returncode == 0, proc.stderr
    cumulative = {}
    for line in proc.stderr.splitlines():  # "import time: self | cumulative | name"
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[1].isdigit():
            cumulative[parts[2]] = int(parts[1])
    assert "lm_eval_cola._autoload" in cumulative, NOT_INSTALLED
    assert not [m for m in cumulative if m.split(".")[0] in HEAVY]
    ours = {m: t for m, t in cumulative.items() if m.startswith("lm_eval_cola")}
    # Generous bound (microseconds) for a slow CI machine; it is ~1 ms in practice.
    assert ours["lm_eval_cola._autoload"] < 100_000, ours


# ------------------------------------------------------------------------------ registration

_REGISTRY_PROBE = """
import json, sys
import lm_eval.api.registry as r
from lm_eval.api.registry import get_model
hf = get_model("hf")
out = {"hf": f"{hf.__module__}:{hf.__name__}", "cola": {}}
for alias in sorted(a for a in r.model_registry.keys() if a.startswith("cola_")):
    cls = get_model(alias)
    out["cola"][alias] = {
        "class": f"{cls.__module__}:{cls.__name__}",
        "upgraded": r.model_registry._objs[alias] is cls,
    }
out["hooked"] = any(type(f).__name__ == "_PostImportFinder" for f in sys.meta_path)
print(json.dumps(out))
"""


def test_get_model_finds_builtin_and_cola_models(tmp_path):
    out = _json_of(_python(_REGISTRY_PROBE, tmp_path))
    assert out["hf"] == "lm_eval.models.huggingface:HFLM", "the built-in models were hidden"
    assert sorted(out["cola"]) == sorted(registration.MODELS), (
        f"cola_* models are not registered ({NOT_INSTALLED}): {out['cola']}"
    )
    for alias, target in registration.MODELS.items():
        got = out["cola"][alias]
        assert got["class"] == target, (
            f"get_model({alias!r}) resolved to {got['class']}, expected {target} "
            "(lm_eval_cola/harness/models.py must define and @register_model this class)"
        )
        assert got["upgraded"], f"registry entry of {alias} is still a placeholder"


def test_placeholders_name_the_classes_module():
    """lm-eval upgrades a placeholder only if it equals f"{cls.__module__}:{cls.__name__}"."""
    for alias, target in registration.MODELS.items():
        module, _, name = target.partition(":")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            pytest.fail(f"{alias}: {target} does not exist yet ({exc!r})")
        assert f"{cls.__module__}:{cls.__name__}" == target, (
            f"{alias}: class is {cls.__module__}:{cls.__name__}; "
            "update MODELS in lm_eval_cola/compat/registration.py"
        )


def test_hook_removes_itself_after_the_evaluator_import(tmp_path):
    code = (
        "import sys, lm_eval.evaluator, lm_eval.api.registry as r\n"
        "print(int(any(type(f).__name__ == '_PostImportFinder' for f in sys.meta_path)),"
        " int('cola_hf' in r.model_registry), int('hf' in r.model_registry))"
    )
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "1", "1"], proc.stdout


# ------------------------------------------------------------------------------ hook mechanics


@pytest.fixture
def probe_module(tmp_path, monkeypatch):
    """A throw-away module on sys.path whose import our finder watches."""
    name = f"cola_probe_{os.getpid()}_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{name}.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def _watch(monkeypatch, name, callback):
    monkeypatch.setitem(_autoload._CALLBACKS, name, callback)
    finder = _autoload._PostImportFinder([name])
    sys.meta_path.insert(0, finder)
    return finder


def test_callback_runs_after_the_module_and_the_finder_leaves(probe_module, monkeypatch):
    seen = []
    finder = _watch(monkeypatch, probe_module, lambda m: seen.append(m.VALUE))
    try:
        module = importlib.import_module(probe_module)
    finally:
        finder.remove()
    assert seen == [42]
    assert finder not in sys.meta_path
    assert type(module.__loader__).__name__ == "SourceFileLoader"
    assert module.__spec__.loader is module.__loader__


def test_a_failing_callback_does_not_break_the_import(probe_module, monkeypatch, caplog):
    def boom(_module):
        raise RuntimeError("boom")

    finder = _watch(monkeypatch, probe_module, boom)
    try:
        with caplog.at_level(logging.WARNING, logger="lm_eval_cola"):
            module = importlib.import_module(probe_module)
    finally:
        finder.remove()
    assert module.VALUE == 42
    assert "start-up hook" in caplog.text and "boom" in caplog.text


def test_optional_module_missing_is_quiet_but_inner_import_errors_propagate(monkeypatch, tmp_path):
    _autoload._call_optional("lm_eval_cola.no_such_module_xyz", "install")  # no error
    pkg = tmp_path / "cola_broken_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("import cola_missing_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(ImportError):
            _autoload._call_optional("cola_broken_pkg.mod", "install")
    finally:
        for name in ("cola_broken_pkg", "cola_broken_pkg.mod"):
            sys.modules.pop(name, None)


# ------------------------------------------------------------------------------ the real CLI


def _lm_eval_exe() -> str:
    exe = Path(sys.executable).with_name("lm_eval")
    return str(exe) if exe.exists() else (shutil.which("lm_eval") or "lm_eval")


@pytest.mark.skipif(
    not os.environ.get("COLA_DATA_DIR"),
    reason="set COLA_DATA_DIR to the local benchmark mirror (e.g. ../shared/data) to run",
)
def test_lm_eval_cli_runs_cola_hf_and_hf(tiny_llama_dir, tmp_path):
    """The literal ``lm_eval --model cola_hf ...`` (and the built-in ``hf``) on a tiny model."""
    runs = {}
    for model in ("cola_hf", "hf"):  # both at once: each spends ~15 s indexing lm-eval's tasks
        log = (tmp_path / f"{model}.log").open("w+")
        cmd = [_lm_eval_exe(), "--model", model, "--model_args", f"pretrained={tiny_llama_dir}",
               "--tasks", "arc_challenge", "--limit", "2"]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        runs[model] = (proc, log)
    failures = []
    for model, (proc, log) in runs.items():
        try:
            proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.seek(0)
        output = log.read()
        log.close()
        table = re.search(r"^\|\s*Tasks\s*\|", output, re.M) and "|arc_challenge|" in output
        if proc.returncode != 0 or not table:
            failures.append(f"lm_eval --model {model}: exit {proc.returncode}\n{output[-3000:]}")
    assert not failures, "\n\n".join(failures)
