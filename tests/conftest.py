"""Shared pytest fixtures, and the test tiers.

Every test is in one tier, so a tier runs alone (`pytest -m quick`, `-m tiny`, `-m real`):
- quick: no model at all (chain syntax, searchers on fake evaluators, scheduler, records,
  reports from fixture files, compatibility checks);
- tiny: tiny random models built here (every architecture, the lm-eval models end to end);
- real: the embedded SmolLM2-135M model and the local benchmark data.
A test file's tier is its default below; a test marked with a tier keeps its own.
"""

from __future__ import annotations

import os
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n N` (pytest-xdist): N worker processes share the cores; one intra-op thread
    # each (and in the lm_eval processes tests start) keeps them from oversubscribing.
    # Set before any test imports torch.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest

TIERS = ("quick", "tiny", "real")
FILE_TIERS = {
    "test_engine.py": "tiny",
    "test_fast.py": "tiny",
    "test_fast_generate.py": "tiny",
    "test_batch_generate.py": "tiny",
    "test_models.py": "tiny",
    "test_bad_input.py": "tiny",
    "test_resume.py": "tiny",
    "test_distributed.py": "tiny",
    "test_golden.py": "tiny",
    "test_registration.py": "tiny",
    "test_leaderboard.py": "tiny",
    "test_real_model.py": "real",
    "test_export.py": "tiny",
    "test_pruning.py": "tiny",
    "test_calibrate.py": "tiny",
    "test_router.py": "tiny",
    # quick by default; its two tiny-model tests carry their own mark
    "test_paper_tasks.py": "quick",
}


def pytest_configure(config: pytest.Config) -> None:
    for tier in TIERS:
        config.addinivalue_line("markers", f"{tier}: the {tier} test tier (see tests/conftest.py)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            tier = FILE_TIERS.get(Path(str(item.fspath)).name, "quick")
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> str:
    """A tiny random Llama (4 layers, hidden 32) and a byte-level BPE tokenizer trained offline,
    saved with ``save_pretrained``: usable as ``pretrained=<dir>`` by lm-eval's ``hf`` model."""
    from tests.tiny_models import save_tiny_model  # imports torch: only when a test needs it

    return save_tiny_model(tmp_path_factory.mktemp("tiny_llama"), "llama", seed=0)
