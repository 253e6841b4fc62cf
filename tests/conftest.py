"""Shared pytest fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> str:
    """A tiny random Llama (4 layers, hidden 32) and a byte-level BPE tokenizer trained offline,
    saved with ``save_pretrained``: usable as ``pretrained=<dir>`` by lm-eval's ``hf`` model."""
    from tests.tiny_models import save_tiny_model  # imports torch: only when a test needs it

    return save_tiny_model(tmp_path_factory.mktemp("tiny_llama"), "llama", seed=0)
