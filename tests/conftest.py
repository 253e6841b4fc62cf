"""Shared pytest fixtures, and the test tiers.

Every test is in exactly one tier, so a tier runs alone (`pytest -m quick`, `-m tiny`, `-m real`):
- quick: no model at all (chain syntax, searchers on fake evaluators, scheduler, records,
  reports from fixture files, compatibility checks); no lm-eval CLI run;
- tiny: tiny random models built here (every architecture, the lm-eval models end to end);
- real: the embedded SmolLM2-135M model, and the lm-eval CLI on the local benchmark data.
Each test file names its tier itself (`pytestmark = pytest.mark.quick`); a test marked with
another tier keeps its own. A collected test with no tier stops the run, naming its file.
"""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n N` (pytest-xdist): N worker processes share the cores; one intra-op thread
    # each (and in the lm_eval processes tests start) keeps them from oversubscribing.
    # Set before any test imports torch.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest

TIERS = ("quick", "tiny", "real")


def pytest_configure(config: pytest.Config) -> None:
    for tier in TIERS:
        config.addinivalue_line("markers", f"{tier}: the {tier} test tier (see tests/conftest.py)")


def _tier_marks(node: pytest.Item | pytest.Collector) -> list[pytest.Mark]:
    return [m for m in node.own_markers if m.name in TIERS]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give each test one tier: its own mark (function or class) if it has one, else its file's.

    A file's `pytestmark` would otherwise add its tier to every test beside the test's own, and
    `-m quick` would then select a tiny test of a quick file; so the file's tier mark moves off
    the module and onto the tests that have none. Runs before `-m` deselects (conftest hooks run
    before pytest's own).
    """
    module_tiers: dict[pytest.Module, list[pytest.Mark]] = {}
    untiered: set[str] = set()
    for item in items:
        module = item.getparent(pytest.Module)
        if module is not None and module not in module_tiers:
            module_tiers[module] = _tier_marks(module)
            module.own_markers[:] = [m for m in module.own_markers if m.name not in TIERS]
        if any(_tier_marks(node) for node in item.listchain()):
            continue
        file_tiers = module_tiers.get(module, []) if module is not None else []
        if not file_tiers:
            untiered.add(str(item.path))
            continue
        for mark in file_tiers:
            item.add_marker(mark.name)
    if untiered:
        raise pytest.UsageError(
            "no test tier for the tests in " + ", ".join(sorted(untiered))
            + f"; add `pytestmark = pytest.mark.<tier>` (one of {', '.join(TIERS)}) to the file")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> str:
    """A tiny random Llama (4 layers, hidden 32) and a byte-level BPE tokenizer trained offline,
    saved with ``save_pretrained``: usable as ``pretrained=<dir>`` by lm-eval's ``hf`` model."""
    # imports torch: only when a test needs it
    from tests.support.tiny_models import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny_llama"), "llama", seed=0)
