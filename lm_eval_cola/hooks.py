"""Small patches to lm-eval's evaluator, installed by the start-up hook when lm-eval
imports ``lm_eval.evaluator`` (see ``_autoload.py``).

Why: per-sample oracle search needs the task objects (their metrics and filters),
which lm-eval never hands to a model, and the records belong beside lm-eval's
output files, whose folder only the EvaluationTracker knows. Each patch wraps the
original and changes nothing for models that are not ours.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

logger = logging.getLogger(__name__)

# The most recent EvaluationTracker: where `--output_path` results go.
current_tracker: Any = None
_INSTALLED = False


def is_cola_model(model: Any) -> bool:
    if isinstance(model, str):
        return model.startswith("cola_")
    return hasattr(model, "attach_tasks")


def install_evaluator_hook() -> None:
    global _INSTALLED
    if _INSTALLED:
        return
    from lm_eval import evaluator
    from lm_eval.loggers import evaluation_tracker as tracking

    from lm_eval_cola.errors import install_excepthook

    # Our UserErrors (--use_cache refused, local data missing) can come before any cola
    # model module is imported: print them as one line from the start.
    install_excepthook()

    original_evaluate = evaluator.evaluate

    @functools.wraps(original_evaluate)
    def evaluate(lm, task_dict, *args, **kwargs):
        target = getattr(lm, "lm", lm)  # CachingLM wraps the model
        if hasattr(target, "attach_tasks"):
            target.attach_tasks(task_dict)
        return original_evaluate(lm, task_dict, *args, **kwargs)

    evaluator.evaluate = evaluate

    original_simple = evaluator.simple_evaluate

    @functools.wraps(original_simple)
    def simple_evaluate(model, *args, **kwargs):
        if is_cola_model(model) and kwargs.get("use_cache"):
            from lm_eval_cola.errors import UserError

            raise UserError(
                f"--use_cache {kwargs['use_cache']!r} is not supported with {model}: lm-eval keys "
                "its cache without model_args, so one chain or searcher would reuse another's "
                "answers; drop --use_cache (cola runs resume from their records instead)"
            )
        return original_simple(model, *args, **kwargs)

    evaluator.simple_evaluate = simple_evaluate
    _patch_tracker(tracking)
    _INSTALLED = True


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
        if is_cola_model(model_source) and general._get_model_name(model_args) is None:
            from lm_eval.utils import sanitize_model_name

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
