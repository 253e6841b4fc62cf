"""The graded part of a generation sample's score: which text is teacher-forced after the
prompt, and how its log-likelihood under a chain becomes a number in (-1/2, 1/2).

A generated answer is right or wrong (the task's metric, 0 or 1), so without more every
wrong chain ties and a search has no gradient. The graded score adds, under the chain, the
mean per-token log-likelihood of the gold answer teacher-forced after the sample's prompt
(``teacher_forced.py`` computes it), squashed by :func:`likelihood_margin`. It guides search
and breaks ties only; what lm-eval scores is still the generated text.

Which text (:func:`forced_continuation`), the answer written as lm-eval writes an answer
after a prompt in its own few-shot examples (``Task.build_qa_turn``):

- the answer (:func:`answer_text`): a per-task override from :data:`FORCED_ANSWERS` (the
  first key the task's name starts with), else the task's gold, ``doc_to_target(doc)`` (the
  choice's text where the target is a choice index, the first where it is a list). So
  gsm8k forces its whole reference solution (its target, ending ``#### 72``), the paper's
  ``cola_arc_*`` the label (``B``), and ``cola_dart_*`` (whose target is only the last
  ``\\boxed{}`` of the solution, while the model is asked to write a solution) the
  reference solution;
- joined to the prompt: after a ``gen_prefix`` (the prompt ends with it, plain or chat)
  with one space where neither side has whitespace at the join (lm-eval's
  ``maybe_delimit``); else, where the prompt ends with the doc's text (plain text),
  after the task's ``target_delimiter``; else (a chat template's assistant turn) as is.

The decoy (``decoy.py``) forces its other doc's answer after this doc's prompt by the
same rule, so its graded score has the gold's form.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

# Task-name prefix -> the answer text to force, where the task's target is not what the
# model is asked to write.
FORCED_ANSWERS: dict[str, Callable[[dict], str]] = {
    # target: the last \boxed{} of the solution; the prompt asks for a worked solution
    "cola_dart_": lambda doc: str(doc["solution"]),
}

# The margin stays this far inside (-1/2, 1/2), so every right chain (metric 1) outscores
# every wrong one (metric 0), even at the extremes.
EDGE = 1e-6


def answer_text(task: Any, doc: dict) -> str:
    """The answer to force for ``doc`` (module docstring)."""
    name = str(task.config.task)
    for prefix, answer in FORCED_ANSWERS.items():
        if name.startswith(prefix):
            return answer(doc)
    gold = task.doc_to_target(doc)
    if isinstance(gold, list):
        gold = gold[0] if gold else ""
    if isinstance(gold, int) and task.config.doc_to_choice is not None:
        gold = task.doc_to_choice(doc)[gold]
    return str(gold)


def _prefix(task: Any, doc: dict) -> str | None:
    make = getattr(task, "doc_to_prefix", None)
    prefix = make(doc) if callable(make) else getattr(task.config, "gen_prefix", None)
    return prefix or None


def forced_continuation(task: Any, doc: dict, context: str, answer_doc: dict | None = None
                        ) -> str:
    """The text forced after ``context`` (``doc``'s prompt): the answer of ``answer_doc``
    (default ``doc``: the gold) joined as the module docstring says."""
    answer = answer_text(task, doc if answer_doc is None else answer_doc)
    prefix = _prefix(task, doc)
    if prefix is not None:
        # lm-eval's maybe_delimit(gen_prefix, answer, " ") without the prefix itself
        needs_space = bool(answer) and not (prefix[-1].isspace() or answer[0].isspace())
        return (" " if needs_space else "") + answer
    text = task.doc_to_text(doc)
    if isinstance(text, str) and context.endswith(text):
        return f"{task.config.target_delimiter}{answer}"
    return answer


def likelihood_margin(mean_loglikelihood: float | None) -> float:
    """A mean per-token log-likelihood (nats, <= 0) as the score's graded part:
    ``1 / (1 + cross-entropy) - 1/2``, kept :data:`EDGE` inside (-1/2, 1/2). It falls
    polynomially, not exponentially, so chains far from the answer (several nats a token)
    still differ. Not finite: the worst; None (a text of no tokens): 0, no signal."""
    if mean_loglikelihood is None:
        return 0.0
    if not math.isfinite(mean_loglikelihood):
        return -0.5 + EDGE
    cross_entropy = max(0.0, -mean_loglikelihood)
    return min(0.5 - EDGE, max(-0.5 + EDGE, 1.0 / (1.0 + cross_entropy) - 0.5))
