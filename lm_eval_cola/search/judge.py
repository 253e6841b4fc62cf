"""Oracle reward: is a sample answered right, by the lm-eval task's own definition?

No prompts or answer parsing of our own. A loglikelihood (multiple-choice) sample
is scored by ``task.process_results(doc, [(ll, is_greedy), ...])``; a generated
answer first goes through one of the task's own filter pipelines, then through
``process_results``. "Correct" means the chosen metric reaches its maximum (1.0).
A graded score (the gold choice's log-likelihood margin, where the task has a
single gold choice; for generation, where the searcher's reward is graded, the gold
answer's teacher-forced log-likelihood under the chain: ``forced_text.py``) guides search
and breaks ties; it never decides correctness.

A chain whose log-likelihoods are not all finite (NaN, or -inf from an overflowed chain)
answers nothing: it is judged wrong with the worst score, whatever the task's metric says
(``argmax`` of NaNs is 0, so without this rule a broken chain "answers" choice 0). The one
exception is the full (unedited) chain: its verdict is lm-eval's own (``process_results``
on its responses, NaN and all), so ``full_correct`` and the summary agree with the metric
lm-eval reports for the unedited model; it stays marked not finite.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lm_eval_cola.compat.lm_eval_private import task_filter_ensembles, task_metric_functions
from lm_eval_cola.errors import UserError
from lm_eval_cola.search.forced_text import forced_continuation, likelihood_margin

logger = logging.getLogger(__name__)


class OracleError(UserError):
    """The task cannot be searched in oracle mode (no usable gold or metric)."""


def flatten_tasks(task_dict: Any) -> dict[str, Any]:
    """Every Task object in lm-eval's (possibly nested) task dict, by its task name."""
    found: dict[str, Any] = {}
    if isinstance(task_dict, dict):
        for value in task_dict.values():
            found.update(flatten_tasks(value))
    elif hasattr(task_dict, "process_results") and hasattr(task_dict, "config"):
        found[task_dict.config.task] = task_dict
    return found


@dataclass(frozen=True)
class Judgement:
    """What one chain's responses do on one sample."""

    correct: bool
    score: float
    finite: bool = True  # every log-likelihood finite (always True for generated text)
    # The answer the chain gave: multiple choice, the index of the choice the metric picks
    # (None when not finite); loglikelihood tasks, is_greedy; generation, the filtered
    # text the metric compared.
    answer: Any = None


@functools.lru_cache(maxsize=4)
def task_manager(include_path: str | None = None) -> Any:
    """One lm-eval TaskManager per include path: building one indexes every task (slow).
    Kept: it is an index of task configs; every ``load`` makes fresh task objects."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path)


class TaskJudges:
    """lm-eval's task objects of a run and one ``TaskJudge`` per task.

    lm-eval never hands a model its tasks; the evaluator hook attaches them
    (``attach``) before any request runs, so judging uses the very task objects lm-eval
    scores with. Tasks not attached (a model driven outside lm-eval's evaluator, e.g.
    by ``verify``) are loaded by name, with a warning when a run was expected to attach.
    """

    def __init__(self, metric: str | None, filter_name: str | None,
                 include_path: str | None = None, expect_attached: bool = True):
        self.metric = metric
        self.filter_name = filter_name
        self.include_path = include_path
        # False where loading tasks by name is the plan (verify), not a missing hook
        self.expect_attached = expect_attached
        self.tasks: dict[str, Any] = {}
        self.judges: dict[str, TaskJudge] = {}
        self.attached = False

    def attach(self, task_dict: Any, check: bool = False) -> None:
        """Take lm-eval's tasks; with ``check``, build every judge now, so a bad
        oracle_metric or oracle_filter fails before the first search, not in it."""
        self.tasks.update(flatten_tasks(task_dict))
        self.attached = True
        if check:
            for name in flatten_tasks(task_dict):
                self.judge(name).check_metric()

    def task(self, name: str) -> Any:
        if name not in self.tasks:
            if self.attached:
                logger.warning(
                    "task %r was not among the tasks lm-eval attached; loading it by name, "
                    "so it is judged by a task object of our own", name)
            elif self.expect_attached:
                logger.warning(
                    "lm-eval's evaluator did not hand this model its tasks (the start-up "
                    "hook is off: LM_EVAL_COLA_NO_AUTOLOAD, or no lm_eval_cola.pth); loading "
                    "task %r by name, so it is judged by a task object of our own, which "
                    "may differ from the one lm-eval scores with", name)
            # TaskManager.load (lm-eval >= 0.4.13; get_task_dict is deprecated there)
            try:
                loaded = task_manager(self.include_path).load([name])
            except KeyError:
                loaded = {"tasks": {}}  # an unknown name: refused below in one line
            self.tasks.update(flatten_tasks(loaded["tasks"]))
        if name not in self.tasks:
            raise UserError(f"task {name!r} not found; custom tasks need include_path=<dir>")
        return self.tasks[name]

    def judge(self, name: str) -> TaskJudge:
        if name not in self.judges:
            self.judges[name] = TaskJudge(self.task(name), self.metric, self.filter_name)
        return self.judges[name]


def _metric_value(metrics: dict[str, Any], metric: str, task_name: str) -> float:
    if metric not in metrics:
        allowed = ", ".join(sorted(metrics)) or "none"
        raise OracleError(
            f"oracle_metric {metric!r} is not reported by task {task_name!r}; it reports: {allowed}"
        )
    value = metrics[metric]
    if isinstance(value, tuple | list):  # some metrics defer aggregation: (pred, gold) pairs
        raise OracleError(
            f"metric {metric!r} of task {task_name!r} has no per-sample value; "
            "choose another with oracle_metric="
        )
    return float(value)


def squashed_margin(responses: Sequence[Any], index: int) -> float:
    """Choice ``index``'s log-likelihood minus the best other one's, squashed into
    (-1/2, 1/2): the graded score toward that choice (the gold, or a decoy)."""
    lls = [float(r[0]) for r in responses]
    best_other = max(ll for i, ll in enumerate(lls) if i != index)
    return math.tanh((lls[index] - best_other) / 10.0) / 2.0


class TaskJudge:
    """Judges one task's samples with the task's own metric (and filter, for generation)."""

    def __init__(self, task: Any, metric: str | None, filter_name: str | None):
        self.task = task
        self.name = task.config.task
        self.output_type = task.OUTPUT_TYPE
        if self.output_type == "loglikelihood_rolling":
            raise OracleError(
                f"task {self.name!r} is a perplexity task with no gold answer; oracle search "
                "needs a task with a gold (multiple_choice, loglikelihood or generate_until)"
            )
        self.metric = metric or self._default_metric()
        self.filter = self._pick_filter(filter_name)

    def _default_metric(self) -> str:
        names = [m["metric"] for m in (self.task.config.metric_list or []) if "metric" in m]
        names = [n if isinstance(n, str) else getattr(n, "__name__", str(n)) for n in names]
        for preferred in ("acc", "exact_match"):
            if preferred in names:
                return preferred
        if names:
            return names[0]
        return "acc" if self.output_type in ("multiple_choice", "loglikelihood") else "exact_match"

    def _pick_filter(self, filter_name: str | None):
        ensembles = task_filter_ensembles(self.task)
        if self.output_type != "generate_until":
            return None
        names = [e.name for e in ensembles]
        if filter_name is None:
            return ensembles[0] if ensembles else None
        for ensemble in ensembles:
            if ensemble.name == filter_name:
                return ensemble
        raise OracleError(
            f"oracle_filter {filter_name!r} is not a filter of task {self.name!r}; "
            f"allowed: {', '.join(names) or 'none'}"
        )

    @property
    def filter_name(self) -> str | None:
        return self.filter.name if self.filter is not None else None

    @property
    def scores_likelihoods(self) -> bool:
        return self.output_type in ("multiple_choice", "loglikelihood")

    def filtered(self, doc: dict, responses: Sequence[Any]) -> list[Any]:
        """What the task's metric is given: the responses through the oracle filter."""
        return self._filtered(doc, responses)

    def _filtered(self, doc: dict, responses: Sequence[Any]) -> list[Any]:
        if self.filter is None:
            return list(responses)
        filtered = [[r] for r in responses]
        for make_filter in self.filter.filters:
            filtered = make_filter().apply(filtered, [doc] * len(filtered))
        return [f for f in filtered]

    def judge(self, doc: dict, responses: Sequence[Any], full: bool = False) -> Judgement:
        """``responses``: one per unique request of the doc, in request order. ``full``:
        they are the full chain's, judged by lm-eval's verdict even when not finite."""
        filtered = self._filtered(doc, responses)
        value = self.metric_value(doc, filtered)
        if not self.finite(responses):
            if not full:
                return Judgement(correct=False, score=-math.inf, finite=False, answer=None)
            # lm-eval's verdict and its reading of the answer (argmax: a NaN comes first);
            # a finite score when right, or the searcher's Outcome would drop the verdict
            right = value >= 1.0 - 1e-9
            return Judgement(correct=right, score=value if right else -math.inf,
                             finite=False, answer=self._answer_or_none(doc, responses, filtered))
        correct = value >= 1.0 - 1e-9
        score = value + self._margin(doc, responses)
        answer = self._answer_or_none(doc, responses, filtered)
        return Judgement(correct=correct, score=score, finite=True, answer=answer)

    def _answer_or_none(self, doc: dict, responses: Sequence[Any], filtered: list[Any]) -> Any:
        try:
            return self.answer(doc, responses, filtered)
        except (ValueError, TypeError, IndexError, AttributeError, KeyError):
            return None  # a task shaped unlike lm-eval's own: the verdict still stands

    def metric_value(self, doc: dict, filtered: list[Any]) -> float:
        """The oracle metric of ``filtered`` answers judged against ``doc``'s gold."""
        return _metric_value(self.task.process_results(doc, filtered), self.metric, self.name)

    def finite(self, responses: Sequence[Any]) -> bool:
        """Whether every log-likelihood is finite (generated text always is)."""
        if not self.scores_likelihoods:
            return True
        try:
            return all(math.isfinite(float(r[0])) for r in responses)
        except (TypeError, ValueError, IndexError):
            return True  # not (ll, is_greedy) pairs: nothing numeric to check

    def answer(self, doc: dict, responses: Sequence[Any], filtered: list[Any]) -> Any:
        """The answer a chain gave, as the metric reads it (see ``Judgement.answer``)."""
        if self.output_type == "multiple_choice":
            import numpy as np

            scores = self.choice_scores(doc, responses)
            return int(np.argmax(scores)) if scores else None  # lm-eval's pick among ties
        if self.output_type == "loglikelihood":
            return bool(responses[0][1]) if responses else None
        return filtered[0] if len(filtered) == 1 else list(filtered)

    def choice_scores(self, doc: dict, responses: Sequence[Any]) -> list[float]:
        """Per choice, what the oracle metric takes the argmax of, as lm-eval's
        ``process_results`` computes it: the raw log-likelihood (``acc`` and any other
        metric), divided by the choice's length in characters (``acc_norm``) or bytes
        (``acc_bytes``), or minus the unconditional one (``acc_mutual_info``). Where the
        task has its own process_results, the raw log-likelihood."""
        import numpy as np

        lls = np.array([float(r[0]) for r in responses])
        choices = [str(c) for c in self.task.doc_to_choice(doc)]
        metric_fns = task_metric_functions(self.task)
        unconditional = None
        if 2 * len(choices) == len(lls) and "acc_mutual_info" in metric_fns:
            lls, unconditional = lls[:len(choices)], lls[len(choices):]
        with np.errstate(divide="ignore", invalid="ignore"):  # as lm-eval divides
            if self.metric == "acc_norm":
                lls = lls / np.array([float(len(c)) for c in choices])
            elif self.metric == "acc_bytes":
                lls = lls / np.array([float(len(c.encode("utf-8"))) for c in choices])
            elif self.metric == "acc_mutual_info" and unconditional is not None:
                lls = lls - unconditional
        return [float(v) for v in lls]

    def gold_choices(self, doc: dict) -> set[int]:
        """The gold choice indices of a multiple-choice doc, as ``process_results`` reads
        them (several for a multiple-target task; out-of-range golds dropped)."""
        choices = list(self.task.doc_to_choice(doc))
        gold = (self.task.doc_to_text(doc) if getattr(self.task, "multiple_input", False)
                else self.task.doc_to_target(doc))
        golds = gold if isinstance(gold, list) else [gold]
        found: set[int] = set()
        for g in golds:
            if isinstance(g, str):
                g = choices.index(g) if g in choices else -1
            if isinstance(g, int) and 0 <= g < len(choices):
                found.add(g)
        return found

    def gold_text(self, doc: dict) -> Any:
        """A generation doc's gold as ``process_results`` compares it."""
        gold = self.task.doc_to_target(doc)
        if self.task.config.doc_to_choice is not None and isinstance(gold, int):
            return self.task.doc_to_choice(doc)[gold]
        return gold

    @functools.cached_property
    def eval_docs(self) -> Any:
        """The task's evaluation docs (a doc's ``doc_id`` is its index here), read once:
        lm-eval re-runs ``process_docs`` on every access."""
        return self.task.eval_docs

    def check_metric(self) -> None:
        """Refuse a metric the task does not list (where it lists its metrics)."""
        listed = [m["metric"] for m in (self.task.config.metric_list or []) if "metric" in m]
        names = [n if isinstance(n, str) else getattr(n, "__name__", str(n)) for n in listed]
        if names and self.metric not in names:
            raise OracleError(f"oracle_metric {self.metric!r} is not a metric of task "
                              f"{self.name!r}; allowed: {', '.join(names)}")

    def forced_margin(self, doc: dict, responses: Sequence[Any],
                      answer_doc: dict | None = None) -> float:
        """Generation: the graded part of the score, in (-1/2, 1/2): the squashed mean
        log-likelihood per token, under the chain, of ``answer_doc``'s answer (default
        ``doc``'s gold; the decoy passes its other doc) teacher-forced after ``doc``'s prompt
        (``forced_text.py``). 0 where the responses carry no teacher-forced values
        (``teacher_forced.ForcedResponses``: only where the searcher's reward is graded)."""
        likelihood = getattr(responses, "mean_loglikelihood", None)
        if likelihood is None:
            return 0.0
        text = forced_continuation(self.task, doc, getattr(responses, "context", ""),
                                   answer_doc)
        return likelihood_margin(likelihood(text))

    def _margin(self, doc: dict, responses: Sequence[Any]) -> float:
        """Gold log-likelihood minus the best other choice's, squashed into (-1, 1);
        generation: ``forced_margin``."""
        if self.output_type == "generate_until":
            return self.forced_margin(doc, responses)
        if self.output_type != "multiple_choice" or len(responses) < 2:
            return 0.0
        try:
            gold = self.task.doc_to_target(doc)
            if isinstance(gold, str):
                gold = self.task.doc_to_choice(doc).index(gold)
            if not isinstance(gold, int):
                return 0.0
            return squashed_margin(responses, gold)
        except (ValueError, TypeError, IndexError, AttributeError, KeyError):
            return 0.0

    def check_gold(self, doc: dict) -> None:
        """Fail early, with one line, for a task whose docs have no usable gold."""
        try:
            gold = self.task.doc_to_target(doc)
        except Exception as err:  # noqa: BLE001 - the task template may raise anything
            raise OracleError(f"task {self.name!r} has no usable gold answer: {err}") from None
        if gold is None or gold == "" or gold == []:
            raise OracleError(
                f"task {self.name!r} has no usable gold answer (doc_to_target gave {gold!r}); "
                "oracle search needs one"
            )
