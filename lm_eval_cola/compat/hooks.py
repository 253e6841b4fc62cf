"""Small patches to lm-eval's evaluator, installed by the start-up hook when lm-eval
imports ``lm_eval.evaluator`` (see ``registration.py``), or by :func:`install_evaluator_hook`.

Why: per-sample oracle search needs the task objects (their metrics and filters),
which lm-eval never hands to a model, and the records belong beside lm-eval's
output files, whose folder only the EvaluationTracker knows. Each patch wraps the
original and changes nothing for models that are not ours.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from lm_eval_cola.compat.lm_eval_private import (
    key_val_to_dict,
    model_name_from_args,
    sanitize_model_name,
)
from lm_eval_cola.compat.version import check_lm_eval_version
from lm_eval_cola.errors import UserError, install_excepthook

logger = logging.getLogger(__name__)

# The most recent EvaluationTracker: where `--output_path` results go.
current_tracker: Any = None
_INSTALLED = False
_GUARD_MARK = "_cola_guard"
# Set on a cola model once the evaluator hook has handed it lm-eval's task objects.
_ATTACHED_FLAG = "_cola_tasks_attached"


def is_cola_model(model: Any) -> bool:
    if isinstance(model, str):
        return model.startswith("cola_")
    return hasattr(model, "attach_tasks")


def tasks_attached(lm: Any) -> bool:
    """Whether lm-eval's evaluator, through our hook, handed ``lm`` its task objects.

    False means the tasks a cola model searches on would have to be loaded by the model
    itself (a second, possibly different task index): the evaluator hook was not installed
    (``LM_EVAL_COLA_NO_AUTOLOAD=1``, no ``.pth`` file) or the model is run outside
    ``lm_eval.evaluator.evaluate``.
    """
    return bool(getattr(getattr(lm, "lm", lm), _ATTACHED_FLAG, False))


def attach_tasks(lm: Any, task_dict: Any) -> None:
    """Hand ``task_dict`` to a cola model (unwrapping lm-eval's CachingLM) and mark it."""
    target = getattr(lm, "lm", lm)  # CachingLM wraps the model
    if hasattr(target, "attach_tasks"):
        target.attach_tasks(task_dict)
        setattr(target, _ATTACHED_FLAG, True)


def install_evaluator_hook() -> None:
    """Patch lm-eval's evaluator (idempotent). Raises ``UnsupportedLmEvalError`` (one line)
    when the installed lm-eval is outside the tested range."""
    global _INSTALLED
    if _INSTALLED:
        return
    # Our UserErrors (--use_cache refused, local data missing) can come before any cola
    # model module is imported: print them as one line from the start.
    install_excepthook()
    check_lm_eval_version()
    from lm_eval import evaluator
    from lm_eval.loggers import evaluation_tracker as tracking

    original_evaluate = evaluator.evaluate

    @functools.wraps(original_evaluate)
    def evaluate(lm, task_dict, *args, **kwargs):
        attach_tasks(lm, task_dict)
        return original_evaluate(lm, task_dict, *args, **kwargs)

    evaluator.evaluate = evaluate
    _guard_simple_evaluate(evaluator)
    _patch_tracker(tracking)
    _INSTALLED = True


def install_version_guard() -> None:
    """On an unsupported lm-eval, patch nothing but make cola models fail with the one-line
    version error (other models run as usual). Used by the start-up hook instead of
    :func:`install_evaluator_hook`, which would raise in every lm-eval process."""
    from lm_eval import evaluator

    install_excepthook()
    _guard_simple_evaluate(evaluator)


def _guard_simple_evaluate(evaluator: Any) -> None:
    """Refuse, for cola models only, an unsupported lm-eval and ``use_cache``."""
    original_simple = evaluator.simple_evaluate
    if getattr(original_simple, _GUARD_MARK, False):
        return

    @functools.wraps(original_simple)
    def simple_evaluate(model, *args, **kwargs):
        if is_cola_model(model):
            check_lm_eval_version()
            if kwargs.get("use_cache"):
                raise UserError(
                    f"--use_cache {kwargs['use_cache']!r} is not supported with {model}: lm-eval "
                    "keys its cache without model_args, so one chain or searcher would reuse "
                    "another's answers; drop --use_cache (cola runs resume from their records "
                    "instead)"
                )
        results = original_simple(model, *args, **kwargs)
        if not is_cola_model(model) and isinstance(results, dict):
            label_embedded_model(results.get("config") or {})
        return results

    setattr(simple_evaluate, _GUARD_MARK, True)
    evaluator.simple_evaluate = simple_evaluate


def label_embedded_model(config: dict[str, Any]) -> None:
    """Name a plain run (``--model hf``) of the embedded default model after it in its
    results (``cola_model``), as cola runs are: reports then label it without looking at
    the reader's machine. Never fails a run."""
    try:
        args = config.get("model_args")
        args = args if isinstance(args, dict) else key_val_to_dict(str(args or ""))
        pretrained = args.get("pretrained")
        if not pretrained:
            return
        from pathlib import Path

        from lm_eval_cola.default_model import converted_folder, default_model

        embedded = default_model()
        same = ((Path(str(pretrained)) == Path(embedded.folder)
                 and args.get("gguf_file") == embedded.gguf_file)
                or Path(str(pretrained)) == converted_folder(embedded))
        if same:
            config["cola_model"] = embedded.name
    except Exception as err:  # noqa: BLE001 - a label must never cost a finished run
        logger.debug("no embedded-model label for this run: %s", err)


def _patch_tracker(tracking: Any) -> None:
    original_init = tracking.EvaluationTracker.__init__

    @functools.wraps(original_init)
    def init(self, *args, **kwargs):
        global current_tracker
        original_init(self, *args, **kwargs)
        current_tracker = self

    tracking.EvaluationTracker.__init__ = init

    general = tracking.GeneralConfigTracker
    original_log = general.log_experiment_args

    @functools.wraps(original_log)
    def log_experiment_args(self, model_source, model_args, *args, **kwargs):
        original_log(self, model_source, model_args, *args, **kwargs)
        # Without pretrained= lm-eval names the run at random; name it after the
        # embedded default model so reruns (and resumes) land in the same folder.
        if is_cola_model(model_source) and model_name_from_args(model_args) is None:
            from lm_eval_cola.default_model import DEFAULT_NAME

            self.model_name = DEFAULT_NAME
            self.model_name_sanitized = sanitize_model_name(DEFAULT_NAME)

    general.log_experiment_args = log_experiment_args


def output_folder() -> str | None:
    """The folder lm-eval writes this run's results into, if --output_path was given."""
    tracker = current_tracker
    if tracker is None or not getattr(tracker, "output_path", None):
        return None
    from pathlib import Path

    path = Path(tracker.output_path)
    if path.suffix == ".json":  # lm-eval accepts a results file path too
        path = path.parent
    name = getattr(tracker.general_config_tracker, "model_name_sanitized", None)
    return str(path / name) if name else str(path)
