"""Every use of lm-eval internals, in one place.

lm-eval's documented API (``simple_evaluate``, ``evaluate``, the model registry, ``LM`` /
``TemplateLM`` / ``HFLM``'s public methods, ``TaskManager``) is not enough for a model that
runs its layers as a chain and searches per sample. What else we need is named here and only
here: private names (a leading underscore) and internal helpers that lm-eval does not document
(its CLI's argument parser, its HF stopping criteria, its doc hash). The rest of the package
calls the small functions below; ``tests/test_compat.py`` checks that

* every symbol in :data:`PRIVATE_SYMBOLS` (and each public one we patch, in
  :data:`PATCHED_SYMBOLS`) still exists in the installed lm-eval, and
* no other module of the package names a private lm-eval attribute.

So an lm-eval upgrade that moves one of them fails one test that names it, and the fix is here.
Nothing here imports lm-eval at module import time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# "module:attribute.path" of each internal lm-eval name this module uses.
PRIVATE_SYMBOLS: tuple[str, ...] = (
    "lm_eval.api.model:TemplateLM._encode_pair",
    "lm_eval.models.huggingface:HFLM._encode_pair",
    "lm_eval.models.huggingface:HFLM._model_generate",
    "lm_eval.loggers.evaluation_tracker:GeneralConfigTracker._get_model_name",
    "lm_eval._cli.utils:key_val_to_dict",
    "lm_eval.models.utils_hf:stop_sequences_criteria",
    "lm_eval.utils:sanitize_model_name",
    "lm_eval.utils:hash_string",
    "lm_eval.utils:handle_non_serializable",
)
# Instance attributes HFLM sets in __init__ (not resolvable on the class): checked on an
# HFLM instance by the tests, read and written only by the functions below.
HFLM_INSTANCE_ATTRIBUTES: tuple[str, ...] = (
    "_rank", "_world_size", "_model", "batch_size_per_gpu",
)
# Public lm-eval functions and methods that the compat layer wraps (hooks.py, local_data.py,
# task_path.py):
# public, but a rename would silently switch a patch off, so they are checked too.
PATCHED_SYMBOLS: tuple[str, ...] = (
    "lm_eval.evaluator:evaluate",
    "lm_eval.evaluator:simple_evaluate",
    "lm_eval.utils:make_table",
    "lm_eval.loggers.evaluation_tracker:EvaluationTracker.__init__",
    "lm_eval.loggers.evaluation_tracker:GeneralConfigTracker.log_experiment_args",
    "lm_eval.api.task:ConfigurableTask.download",
    "lm_eval.tasks.manager:TaskManager.__init__",
    "lm_eval.api.registry:model_registry",
)

# HFLM's generation step, which cola models override to plug in fast greedy decoding.
MODEL_GENERATE = "_model_generate"


def resolve(symbol: str) -> Any:
    """The object a ``"module:attribute.path"`` names (AttributeError/ImportError if gone)."""
    import importlib

    module_name, _, path = symbol.partition(":")
    target: Any = importlib.import_module(module_name)
    for name in filter(None, path.split(".")):
        target = getattr(target, name)
    return target


# ----------------------------------------------------------------------- TemplateLM / HFLM


def encode_pair(lm: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Tokens of one loglikelihood request, exactly as lm-eval's ``TemplateLM.loglikelihood``
    makes them, empty context included (``_encode_pair`` leaves that case to its caller)."""
    if context == "":
        continuation_enc = lm.tok_encode(continuation, add_special_tokens=False)
        if lm.prefix_token_id != continuation_enc[0]:
            return [lm.prefix_token_id], continuation_enc
        return continuation_enc[:1], continuation_enc[1:]
    return lm._encode_pair(context, continuation)


def set_data_parallel(lm: Any, rank: int, world_size: int) -> None:
    """Make an HFLM treat itself as data parallel ``rank`` of ``world_size`` (HFLM turns data
    parallel on by itself only with several GPUs; ``rank``/``world_size`` are read-only)."""
    lm._rank = int(rank)
    lm._world_size = int(world_size)


def hf_model_dtype(lm: Any) -> Any:
    """The dtype of the model an HFLM loaded (the unwrapped ``_model``, not accelerate's)."""
    return lm._model.dtype


def hf_model_generate(lm: Any, context: Any, max_length: int, stop: list[str],
                      **generation_kwargs: Any) -> Any:
    """lm-eval's own ``HFLM._model_generate``: what an override falls back to (the
    ``super()`` call of a subclass that overrides :data:`MODEL_GENERATE`)."""
    from lm_eval.models.huggingface import HFLM

    return HFLM._model_generate(lm, context, max_length, stop, **generation_kwargs)


def override_model_generate(cls: type, method_name: str) -> type:
    """Route HFLM's generation step (``_model_generate``, called by ``generate_until`` with
    the tokens it prepared) to ``cls.<method_name>``, a method with the same signature
    ``(context, max_length, stop, **generation_kwargs)``. Returns ``cls`` (a decorator's
    helper). Raises AttributeError when lm-eval no longer has that step."""
    from lm_eval.models.huggingface import HFLM

    if not callable(getattr(HFLM, MODEL_GENERATE, None)):
        raise AttributeError(f"lm-eval's HFLM has no {MODEL_GENERATE}; update "
                             "lm_eval_cola/compat/lm_eval_private.py")
    setattr(cls, MODEL_GENERATE, getattr(cls, method_name))
    return cls


@contextmanager
def batch_size_at_least(lm: Any, size: int) -> Iterator[None]:
    """Inside the block, an HFLM with a fixed batch size batches at least ``size`` requests
    (up to its ``max_batch_size``), e.g. all choices of one question in one forward."""
    saved = lm.batch_size_per_gpu
    if isinstance(saved, int):  # "auto" batch sizes are left alone
        lm.batch_size_per_gpu = max(saved, min(size, lm.max_batch_size))
    try:
        yield
    finally:
        lm.batch_size_per_gpu = saved


def batch_size_per_gpu(lm: Any) -> Any:
    """An HFLM's batch size per device (an int, or "auto")."""
    return lm.batch_size_per_gpu


# ----------------------------------------------------------------------- helpers


def model_name_from_args(model_args: str | dict[str, Any] | None) -> str | None:
    """The model name lm-eval's results tracker reads from model_args (None: none given)."""
    from lm_eval.loggers.evaluation_tracker import GeneralConfigTracker

    return GeneralConfigTracker._get_model_name(model_args)


def sanitize_model_name(name: str) -> str:
    """The folder name lm-eval derives from a model name."""
    from lm_eval.utils import sanitize_model_name as sanitize

    return sanitize(name)


def key_val_to_dict(text: str) -> dict[str, Any]:
    """``key=value,key=value`` parsed as lm-eval's CLI parses ``--model_args``."""
    from lm_eval._cli.utils import key_val_to_dict as parse

    return parse(text)


def parse_model_args(text: str | None) -> dict[str, Any]:
    """``key=value,key=value`` the way lm-eval's CLI reads --model_args; a one-line
    UserError when it cannot be read."""
    if not text:
        return {}
    from lm_eval_cola.errors import UserError

    try:
        return key_val_to_dict(text)
    except ValueError as err:
        raise UserError(f"bad --model_args {text!r}: {err}") from None


def stop_sequences_criteria(tokenizer: Any, stop_sequences: list[str], initial_length: int,
                            batch_size: int) -> Any:
    """lm-eval's HF stopping criteria for ``generate_until`` (stop strings after the prompt)."""
    from lm_eval.models.utils_hf import stop_sequences_criteria as criteria

    return criteria(tokenizer, stop_sequences, initial_length, batch_size)


def hash_doc(doc: Any) -> str:
    """lm-eval's own doc hash, as in its ``--log_samples`` output (``doc_hash``)."""
    from lm_eval.utils import handle_non_serializable, hash_string

    text = json.dumps(doc, indent=2, default=handle_non_serializable, ensure_ascii=False)
    return hash_string(text)


def task_filter_ensembles(task: Any) -> list[Any]:
    """A ``ConfigurableTask``'s filter ensembles (``_filters``: no public accessor)."""
    return list(getattr(task, "_filters", []) or [])


def task_metric_functions(task: Any) -> dict[str, Any]:
    """A ``ConfigurableTask``'s metric functions by name (``_metric_fn_list``)."""
    return dict(getattr(task, "_metric_fn_list", {}) or {})
