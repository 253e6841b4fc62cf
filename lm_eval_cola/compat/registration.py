"""What the start-up hook does once lm-eval is imported (the hook itself: ``_autoload.py``).

lm-eval 0.4.13 has no plugin entry points for models, so ``lm_eval_cola.pth`` imports
``lm_eval_cola._autoload`` at every interpreter start; that tiny module watches for lm-eval's
modules and calls, right after each has executed, the callback named for it here:

* ``lm_eval.api.registry`` -> :func:`on_registry`: the built-in models and lazy placeholders
  for ours (:data:`MODELS`), e.g. ``cola_hf -> lm_eval_cola.harness.models:ColaHFLM``.
* ``lm_eval.tasks`` -> :func:`on_tasks`: local datasets via ``COLA_DATA_DIR`` (``local_data``),
  and our task folder on every TaskManager's task path (``task_path``).
* ``lm_eval.evaluator`` -> :func:`on_evaluator`: the evaluator hooks (``hooks``).

On an lm-eval outside the tested range (``version.py``) the task and evaluator patches are
not installed; one warning line says so, and a cola model, when asked for, fails with the
one-line version error. ``lm_eval --model hf`` and the rest keep working either way.

This module imports only the standard library at import time (the hook imports it while
lm-eval is half-way through its own imports).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

logger = logging.getLogger("lm_eval_cola")

# Placeholders must equal f"{cls.__module__}:{cls.__name__}" of the registered classes, so that
# lm-eval's registry upgrades them in place when ``@register_model`` runs.
MODELS: dict[str, str] = {
    "cola_hf": "lm_eval_cola.harness.models:ColaHFLM",
    "cola_mcts": "lm_eval_cola.harness.models:ColaMCTS",
    "cola_greedy": "lm_eval_cola.harness.models:ColaGreedy",
    "cola_random": "lm_eval_cola.harness.models:ColaRandom",
    "cola_router": "lm_eval_cola.harness.models:ColaRouter",
}

_warned = False


def register_models(registry_module: Any) -> None:
    """Register the built-in models and our lazy placeholders in lm-eval's model registry."""
    # lm_eval.models registers the built-in models as "module:Class" strings (get_model would
    # skip that once the registry is not empty). If it is being imported right now (it imports
    # the registry), this returns the partial module, and its own registration finishes after
    # us; either way the built-ins end up registered.
    importlib.import_module("lm_eval.models")
    registry = registry_module.model_registry
    for alias, target in MODELS.items():
        if alias not in registry:
            registry.register(alias, target=target)


def _version_problem() -> str | None:
    """The unsupported-version line, warned once per process; None when lm-eval is fine."""
    global _warned
    from lm_eval_cola.compat.version import installed_lm_eval_version, lm_eval_version_problem

    problem = lm_eval_version_problem(installed_lm_eval_version())
    if problem is not None and not _warned:
        _warned = True
        logger.warning("lm_eval_cola: %s; cola models and COLA_DATA_DIR are off", problem)
    return problem


def on_registry(registry_module: Any) -> None:
    # Placeholders only use the registry's public API, so they are registered on any version:
    # `--model cola_hf` then reaches our one-line version error instead of "model not found".
    register_models(registry_module)


def on_tasks(_module: Any) -> None:
    if _version_problem() is None:
        from lm_eval_cola.compat import local_data, task_path

        local_data.install()
        task_path.install()


def on_evaluator(_module: Any) -> None:
    from lm_eval_cola.compat import hooks

    if _version_problem() is None:
        hooks.install_evaluator_hook()
    else:
        hooks.install_version_guard()
