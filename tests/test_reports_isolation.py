"""Reports never run a model: they import neither torch, transformers, lm-eval, the engine nor
the models (only the results layer, the chain syntax and errors, which are held to the same
rule), have no import cycles, and work where those packages cannot be imported at all."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.reports_fixtures import make_runs

pytestmark = pytest.mark.quick

REPO = Path(__file__).resolve().parents[1]
REPORTS = REPO / "lm_eval_cola" / "reports"
HEAVY = ("torch", "transformers", "lm_eval", "accelerate", "datasets")
# lm_eval_cola modules a report may import (and their own imports are checked the same way):
# the results layer (records, summary, stats, identity), the chain syntax and the errors
OWN_PACKAGES = ("results", "chains")
ALLOWED_OWN = {"lm_eval_cola", "lm_eval_cola.errors", *(
    f"lm_eval_cola.{package}.{path.stem}" for package in OWN_PACKAGES
    for path in (REPO / "lm_eval_cola" / package).glob("*.py") if path.stem != "__init__"), *(
    f"lm_eval_cola.{package}" for package in OWN_PACKAGES)}
ALLOWED_THIRD_PARTY = {"matplotlib", "yaml"}  # both imported lazily, where used
MODEL_CODE = ("lm_eval_cola.harness", "lm_eval_cola.engine", "lm_eval_cola.search",
              "lm_eval_cola.deploy", "lm_eval_cola.cli", "lm_eval_cola.compat")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function, relative ones resolved."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(
        ".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}".rstrip(".")
            found.add(base)
            # `from package import module` imports the module
            found.update(f"{base}.{alias.name}" for alias in node.names
                         if (REPO / Path(*f"{base}.{alias.name}".split("."))).with_suffix(
                             ".py").is_file())
    return {name for name in found if name != "__future__"}


def report_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(REPORTS.glob("*.py"))}


def test_reports_import_only_the_allowed_modules():
    def path_of(module: str) -> Path:
        path = REPO / Path(*module.split("."))
        return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")

    checked = {**report_modules(), **{m: path_of(m) for m in ALLOWED_OWN - {"lm_eval_cola"}}}
    assert "lm_eval_cola.results.summary" in checked and "lm_eval_cola.chains.syntax" in checked
    for name, path in checked.items():
        for imported in imports_of(path):
            top = imported.partition(".")[0]
            if top == "lm_eval_cola":
                assert imported in ALLOWED_OWN or imported.startswith("lm_eval_cola.reports"), \
                    f"{name} imports {imported}"
            else:
                assert top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY, \
                    f"{name} imports {imported}"


def test_reports_have_no_import_cycles():
    modules = report_modules()
    graph = {name: {i for i in imports_of(path) if i in modules and i != name}
             for name, path in modules.items()}
    package = "lm_eval_cola.reports"
    # the package's __init__ imports its modules to re-export them: that is the one edge
    # from the package down, never a cycle, as no module imports the package itself
    assert all(package not in targets for name, targets in graph.items() if name != package)
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join([*path, name]))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*path, name])
        done.add(name)

    for name in graph:
        visit(name, [])


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=environ, timeout=120, cwd=REPO)


def test_building_and_rendering_a_board_loads_no_model_code(tmp_path):
    runs = make_runs(tmp_path / "runs")
    done = run_python(f"""
        import sys
        from lm_eval_cola.reports import build_board, to_html, to_markdown, write_board

        board = build_board([{str(runs["cmp"])!r}, {str(runs["base"])!r}])
        assert len(board.rows) == 6 and board.oracles, board.rows
        assert "| mcts |" in to_markdown(board) and "<table" in to_html(board)
        write_board(board, {str(tmp_path / "flat")!r}, plots=False)
        assert "matplotlib" not in sys.modules, "matplotlib before any plot was drawn"
        paths = write_board(board, {str(tmp_path / "board")!r})
        assert paths["plots"] and "matplotlib" in sys.modules
        loaded = [m for m in sys.modules if m.split(".")[0] in {HEAVY!r}
                  or m.startswith({MODEL_CODE!r})]
        assert not loaded, loaded
        print("ok")
    """, LM_EVAL_COLA_NO_AUTOLOAD="1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


BLOCKER = """
    import importlib.abc, sys

    BLOCKED = {blocked!r}

    class Blocker(importlib.abc.MetaPathFinder):
        # as if these were not installed at all: any import of them fails
        def find_spec(self, name, path=None, target=None):
            if name in BLOCKED or name.startswith(tuple(b + "." for b in BLOCKED)):
                raise ImportError(f"{{name}} is blocked", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    for name in list(sys.modules):
        if name in BLOCKED or name.startswith(tuple(b + "." for b in BLOCKED)):
            del sys.modules[name]
"""


@pytest.mark.parametrize("entry", ["reports", "lm-eval-cola"])
def test_the_leaderboard_runs_where_model_packages_cannot_be_imported(tmp_path, entry):
    """``python -m lm_eval_cola.reports`` (the model code blocked too) and the
    ``lm-eval-cola leaderboard`` command, with the start-up hook left on."""
    from lm_eval_cola.reports import build_board, to_markdown

    runs = make_runs(tmp_path / "runs")
    out = tmp_path / "board"
    argv = [str(runs["cmp"]), str(runs["base"]), "--out", str(out)]
    if entry == "reports":
        blocked = HEAVY + MODEL_CODE
        call = ("import runpy; sys.argv = ['lm_eval_cola.reports', *ARGV]\n"
                "runpy.run_module('lm_eval_cola.reports', run_name='__main__', alter_sys=True)")
    else:
        blocked = HEAVY
        call = "from lm_eval_cola.cli import main\nsys.exit(main(['leaderboard', *ARGV]))"
    code = textwrap.dedent(BLOCKER.format(blocked=blocked)) + f"ARGV = {argv!r}\n" + call
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    expected = to_markdown(build_board([runs["cmp"], runs["base"]]))
    assert done.stdout.strip() == expected.strip()
    assert (out / "leaderboard.html").is_file() and (out / "layers_arc_challenge.png").is_file()
