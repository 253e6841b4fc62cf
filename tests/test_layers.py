"""The package's layers, read from its import graph (``ast``; imports inside functions count).

Bottom to top: ``chains`` -> ``results`` -> ``engine`` -> ``search`` -> ``harness`` ->
``deploy`` -> ``cli``; beside them ``reports`` (reads results), ``compat`` (lm-eval's
surface) and ``tasks`` (YAML tasks and their Python). A package imports only itself, the
packages its row of ``ALLOWED`` names and ``errors`` (plus the package root, for
``__version__``); so cli/ is imported by nothing outside it, engine never imports harness,
search, deploy, cli or reports, and chains imports only the standard library and errors.
Results and reports import no torch, transformers or lm-eval. No import cycles, and no
module imports another module's ``_private`` name."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lm_eval_cola

pytestmark = pytest.mark.quick

PACKAGE = Path(lm_eval_cola.__file__).parent
ROOT = "lm_eval_cola"
BASE = {ROOT, f"{ROOT}.errors"}  # the version string and the error types: every layer
HEAVY = ("torch", "transformers", "lm_eval", "accelerate", "datasets")
COMPAT_SURFACE = {f"{ROOT}.compat.lm_eval_private", f"{ROOT}.compat.version"}
# Exemption: a chain file may be YAML (mergekit's slices); yaml is imported lazily, where such
# a file is read, and is a dependency the package always has (never torch or lm-eval).
CHAINS_THIRD_PARTY = {"__future__", "yaml"}
LAYERS = ("chains", "results", "engine", "search", "harness", "deploy", "cli")
# package -> what else it may import: packages, or single modules (COMPAT_SURFACE: lm-eval's
# private helpers and the version gate import nothing but errors, so the low layers may call
# them; compat's evaluator hook, above them, reaches into harness).
ALLOWED: dict[str, set[str]] = {
    "chains": set(),
    "results": {"chains"},
    "engine": {"chains", *COMPAT_SURFACE},
    "search": {"chains", "results", "engine", *COMPAT_SURFACE},
    "harness": {"chains", "results", "engine", "search", "compat"},
    "deploy": {"chains", "results", "engine", "search", "harness", "compat"},
    "cli": {"chains", "results", "engine", "search", "harness", "deploy", "compat", "reports"},
    "reports": {"chains", "results"},
    # The evaluator hook hands a cola model what lm-eval does not (harness.evaluation_call),
    # prints the notes under lm-eval's table (harness.table_notes) and labels the embedded
    # model (harness.default_model): compat is the glue lm-eval calls into, above harness.
    "compat": {"harness"},
    "tasks": {"compat"},
    "_autoload": set(),  # the start-up hook: the standard library only
    "errors": set(),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _body(path: Path) -> list[ast.stmt]:
    """The module's statements, less ``if __name__ == "__main__":`` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n for n in tree.body
            if not (isinstance(n, ast.If) and "__main__" in ast.unparse(n.test))]


def _absolute(node: ast.ImportFrom, name: str, path: Path) -> str:
    base = node.module or ""
    if node.level:
        anchor = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for _ in range(node.level - 1):
            anchor = anchor.rpartition(".")[0]
        base = f"{anchor}.{base}" if base else anchor
    return base


def imports(module_level_only: bool = False) -> dict[str, list[tuple[int, str, str]]]:
    """module -> (line, imported module, imported name or "") for every import it makes."""
    found: dict[str, list[tuple[int, str, str]]] = {}
    for name, path in package_modules().items():
        body = _body(path)
        nodes = body if module_level_only else [n for top in body for n in ast.walk(top)]
        rows = found.setdefault(name, [])
        for node in nodes:
            if isinstance(node, ast.Import):
                rows += [(node.lineno, a.name, "") for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, name, path)
                rows += [(node.lineno, base, a.name) for a in node.names]
    return found


def import_graph(module_level_only: bool) -> dict[str, set[str]]:
    """module -> package modules it imports (``importlib`` by name is not seen)."""
    modules = package_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, rows in imports(module_level_only).items():
        for _, base, alias in rows:
            if alias and f"{base}.{alias}" in modules:
                graph[name].add(f"{base}.{alias}")
            elif base in modules:
                graph[name].add(base)
    return graph


def layer(module: str) -> str:
    """The package a module belongs to (``lm_eval_cola.engine.fast`` -> ``engine``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_at_import_time():
    assert _cycles(import_graph(module_level_only=True)) == []


def test_no_import_cycles_counting_imports_inside_functions():
    assert _cycles(import_graph(module_level_only=False)) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_is_in_a_known_layer():
    assert {layer(m) for m in package_modules()} - {""} <= set(ALLOWED), (
        "a new package: give it a row in ALLOWED")


def _offenders(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for name, targets in graph.items():
        own = layer(name)
        allowed = ALLOWED.get(own, set())
        for target in sorted(targets):
            if (target in BASE or layer(target) == own or target in allowed
                    or layer(target) in allowed):
                continue
            bad.append(f"{name} imports {target}")
    return bad


def test_each_package_imports_only_the_layers_it_may():
    assert _offenders(import_graph(module_level_only=False)) == []


def test_the_layer_check_sees_a_violation():
    graph = {f"{ROOT}.engine.fast": {f"{ROOT}.harness.models", f"{ROOT}.chains.syntax"},
             f"{ROOT}.search.driver": {f"{ROOT}.compat.hooks"},
             f"{ROOT}.reports.runs": {f"{ROOT}.results.records"}}
    assert _offenders(graph) == [f"{ROOT}.engine.fast imports {ROOT}.harness.models",
                                 f"{ROOT}.search.driver imports {ROOT}.compat.hooks"]


def test_cli_is_the_top_layer():
    """Nothing outside cli/ imports it, nor names it in a string (an ``importlib`` target)."""
    graph = import_graph(module_level_only=False)
    importers = sorted(n for n, targets in graph.items() if layer(n) != "cli"
                       and any(layer(t) == "cli" for t in targets))
    assert importers == []
    named = re.compile(rf"{ROOT}\.cli\b")
    for name, path in package_modules().items():
        if layer(name) == "cli":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        prose = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}  # docstrings
        strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
                   and isinstance(n.value, str) and id(n) not in prose]
        assert [s for s in strings if named.search(s)] == [], name


def test_engine_imports_no_higher_layer():
    graph = import_graph(module_level_only=False)
    higher = {"harness", "search", "deploy", "cli", "reports"}
    assert sorted(f"{n} -> {t}" for n, targets in graph.items() if layer(n) == "engine"
                  for t in targets if layer(t) in higher) == []


def test_chains_import_only_the_standard_library_and_errors():
    for name, rows in imports().items():
        if layer(name) != "chains":
            continue
        for line, base, alias in rows:
            top = base.partition(".")[0]
            if top == ROOT:
                target = f"{base}.{alias}" if f"{base}.{alias}" in package_modules() else base
                assert target in BASE or layer(target) == "chains", f"{name}:{line}: {target}"
            else:
                assert top in sys.stdlib_module_names or top in CHAINS_THIRD_PARTY, \
                    f"{name}:{line}: {base}"


@pytest.mark.parametrize("package", ["results", "reports"])
def test_results_and_reports_import_nothing_heavy(package):
    """Statically, anywhere in their code (the leaderboard runs without torch installed)."""
    heavy = [f"{name}:{line}: {base}" for name, rows in imports().items()
             if layer(name) == package for line, base, _ in rows
             if base.partition(".")[0] in HEAVY]
    assert heavy == []


def test_importing_all_of_results_loads_nothing_heavy(tmp_path):
    names = sorted(n for n in package_modules() if layer(n) == "results")
    code = (f"import importlib, json, sys; [importlib.import_module(m) for m in {names!r}]; "
            "print(json.dumps(sorted(sys.modules)))")
    env = dict(os.environ, LM_EVAL_COLA_NO_AUTOLOAD="1",
               PYTHONPATH=str(PACKAGE.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    assert f"{ROOT}.results.summary" in loaded
    assert [m for m in loaded if m.split(".")[0] in HEAVY] == []


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports() -> list[str]:
    """``from x import _y`` of a package module, and ``module._y`` of a package module bound
    by an import (``from lm_eval_cola.compat import hooks``; ``hooks._install``)."""
    modules = package_modules()
    bad = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound: dict[str, str] = {}  # local name -> package module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = _absolute(node, name, path)
                if base.partition(".")[0] != ROOT:
                    continue
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    if target in modules:
                        bound[alias.asname or alias.name] = target
                    elif _is_private(alias.name) and base != name:
                        bad.append(f"{name}:{node.lineno}: from {base} import {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules and alias.asname:
                        bound[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in bound and _is_private(node.attr)
                    and bound[node.value.id] != name):
                bad.append(f"{name}:{node.lineno}: {node.value.id}.{node.attr}")
    return bad


def test_no_module_imports_another_modules_private_name():
    assert private_imports() == []


# Private attributes read by name are invisible to the import graph. Outside compat/ only
# transformers' own config field may be read so (not an lm-eval object).
PRIVATE_GETATTR = re.compile(r"""getattr\([^,()]+,\s*["'](_[A-Za-z]\w*)["']""")
PRIVATE_ALLOWED = {"_attn_implementation"}


def private_getattrs(text: str) -> list[str]:
    return [name for name in PRIVATE_GETATTR.findall(text)
            if not (name.startswith("__") and name.endswith("__"))]


def test_private_attributes_are_read_by_name_only_in_compat():
    found = [f"{path.relative_to(PACKAGE)}: {name}" for path in sorted(PACKAGE.rglob("*.py"))
             if "compat" not in path.relative_to(PACKAGE).parts
             for name in private_getattrs(path.read_text())
             if name not in PRIVATE_ALLOWED]
    assert not found, found


def test_the_private_getattr_check_sees_one():
    assert private_getattrs('x = getattr(self.task, "_filters", [])') == ["_filters"]
    assert private_getattrs('getattr(module, "__spec__", None)') == []
