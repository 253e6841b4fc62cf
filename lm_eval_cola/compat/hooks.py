"""Small patches to lm-eval's evaluator, installed by the start-up hook when lm-eval
imports ``lm_eval.evaluator`` (see ``registration.py``), or by :func:`install_evaluator_hook`.

Why: per-sample oracle search needs the task objects (their metrics and filters),
which lm-eval never hands to a model, and the records belong beside lm-eval's
output files, whose folder only the EvaluationTracker knows. Each evaluation call also
tells a cola model its ``--samples`` ids and lm-eval's ``--seed``, and gets its chains
into lm-eval's logged samples (``evaluation_call.py``); ``make_table`` gets the oracle
caveat and the findings under the table (``table_notes.py``). Each patch wraps the
original and changes nothing for models that are not ours.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
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
# lm-eval's random seed (``--seed``'s first value) for the simple_evaluate call in progress;
# None outside one, or where lm-eval is left at its default seed (see config.search_seed).
current_run_seed: int | None = None
# The simple_evaluate call in progress's num_fewshot and gen_kwargs as given (lm-eval hands
# evaluate() neither): with evaluate()'s own prompt settings they name a cola model's
# records file (identity.EvalIdentity). Empty outside one.
current_eval_args: dict[str, Any] = {}
_EVAL_ARGS = ("num_fewshot", "gen_kwargs")
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
    from lm_eval import evaluator, utils
    from lm_eval.loggers import evaluation_tracker as tracking

    original_evaluate = evaluator.evaluate

    @functools.wraps(original_evaluate)
    def evaluate(lm, task_dict, *args, **kwargs):
        call = _arguments(original_evaluate, (lm, task_dict, *args), kwargs)
        target = getattr(lm, "lm", lm)  # CachingLM wraps the model
        if hasattr(target, "start_evaluation"):  # per-call state starts fresh
            target.start_evaluation(call.get("samples"), current_run_seed)
        if hasattr(target, "attach_evaluation"):  # the prompt and decoding settings
            target.attach_evaluation({**current_eval_args, **{
                k: call.get(k) for k in ("apply_chat_template", "system_instruction",
                                         "fewshot_as_multiturn", "samples")}})
        attach_tasks(lm, task_dict)
        results = original_evaluate(lm, task_dict, *args, **kwargs)
        if hasattr(target, "finish_evaluation"):  # every rank: it may gather
            target.finish_evaluation(results, bool(call.get("log_samples", True)))
        return results

    evaluator.evaluate = evaluate
    _guard_simple_evaluate(evaluator)
    _patch_tracker(tracking)
    _patch_make_table(utils)
    _INSTALLED = True


def _arguments(function: Callable, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The arguments of a call by name (empty where they do not bind: the call itself
    then fails as lm-eval makes it fail)."""
    try:
        return dict(inspect.signature(function).bind_partial(*args, **kwargs).arguments)
    except TypeError:
        return {}


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
        global current_run_seed, current_eval_args
        call = _arguments(original_simple, (model, *args), kwargs)
        if is_cola_model(model):
            check_lm_eval_version()
            if kwargs.get("use_cache"):
                raise UserError(
                    f"--use_cache {kwargs['use_cache']!r} is not supported with {model}: lm-eval "
                    "keys its cache without model_args, so one chain or searcher would reuse "
                    "another's answers; drop --use_cache (cola runs resume from their records "
                    "instead)"
                )
            _refuse_before_any_work(model, call)
        previous, current_run_seed = current_run_seed, _run_seed(original_simple, call)
        given, current_eval_args = current_eval_args, {k: call.get(k) for k in _EVAL_ARGS}
        try:
            results = original_simple(model, *args, **kwargs)
        finally:
            current_run_seed, current_eval_args = previous, given
        if isinstance(results, dict) and isinstance(results.get("config"), dict):
            # what lm-eval does not keep but a run's identity needs (identity.py): the
            # few-shot count as given (None: each task's own), and --samples
            results["config"]["cola_num_fewshot"] = call.get("num_fewshot")
            if call.get("samples"):
                results["config"]["cola_samples"] = call["samples"]
        if not is_cola_model(model) and isinstance(results, dict):
            label_embedded_model(results.get("config") or {})
        return results

    setattr(simple_evaluate, _GUARD_MARK, True)
    evaluator.simple_evaluate = simple_evaluate


def _refuse_before_any_work(model: Any, call: dict[str, Any]) -> None:
    """What a cola model cannot run, refused in one line before the model loads."""
    from lm_eval_cola.harness.evaluation_call import checked_samples

    checked_samples(call.get("samples"))
    searcher = _searcher_of(model, call.get("model_args"))
    if call.get("predict_only") and searcher is not None:
        name = model if isinstance(model, str) else type(getattr(model, "lm", model)).__name__
        raise UserError(
            f"--predict_only cannot run {name} with searcher {searcher}: the search judges "
            "each chain's answer with the task's metric, which --predict_only turns off; "
            "allowed: drop --predict_only, or cola_hf with a fixed chain (chain=...)")


def _searcher_of(model: Any, model_args: Any) -> str | None:
    """The searcher a cola model (a name and its model_args, or an object) runs; None for
    none (a fixed chain, the router) or where that cannot be told before loading."""
    if not isinstance(model, str):
        return getattr(getattr(getattr(model, "lm", model), "searcher", None), "name", None)
    if isinstance(model_args, str):
        try:
            model_args = key_val_to_dict(model_args) if model_args else {}
        except ValueError:
            return None  # the model's own parsing says what is wrong
    args = model_args if isinstance(model_args, dict) else {}
    if "searcher" in args:  # as config.ColaConfig reads it ("none" parses to None)
        return str(args["searcher"] or "none")
    try:
        from lm_eval.api.registry import get_model

        return getattr(get_model(model), "default_searcher", None)
    except Exception:  # noqa: BLE001 - an unknown model name: lm-eval says so next
        return None


def _run_seed(simple_evaluate: Callable, call: dict[str, Any]) -> int | None:
    """lm-eval's random seed for this call; None where it is lm-eval's default (0 in
    0.4.13: what every run without --seed gets), so those runs keep the search's own
    default seed and their records."""
    parameter = inspect.signature(simple_evaluate).parameters.get("random_seed")
    default = None if parameter is None else parameter.default
    seed = call.get("random_seed", default)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed == default:
        return None
    return seed


def _patch_make_table(utils: Any) -> None:
    """Under lm-eval's last results table (the groups table where there is one), the oracle
    caveat and the findings of a cola search run: one line per task."""
    original = utils.make_table
    if getattr(original, _GUARD_MARK, False):
        return

    @functools.wraps(original)
    def make_table(result_dict, column: str = "results", *args, **kwargs):
        table = original(result_dict, column, *args, **kwargs)
        last = "groups" if "groups" in result_dict else "results"
        if column != last:
            return table
        try:
            from lm_eval_cola.harness.table_notes import table_notes

            notes = table_notes(result_dict)
        except Exception as err:  # noqa: BLE001 - a note must never cost a finished run
            logger.warning("no cola notes under the results table: %s", err)
            return table
        if not notes:
            return table
        return table.rstrip("\n") + "\n" + "".join(f"{line}\n" for line in notes)

    setattr(make_table, _GUARD_MARK, True)
    utils.make_table = make_table


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

        from lm_eval_cola.harness.default_model import converted_folder, default_model

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
            from lm_eval_cola.harness.default_model import DEFAULT_NAME

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
