"""What one lm-eval evaluation call tells a cola model, and what the model tells back.

lm-eval hands a model only its requests. The evaluator hook (``compat/hooks.py``) adds, for
each call of ``lm_eval.evaluator.evaluate``, what a cola model must know to behave as
lm-eval does:

* ``--samples``: requests then carry a document's place among the chosen documents
  (``Instance.doc_id``), while lm-eval's outputs name the document by its id in the task
  (the number the user gave); records must use the latter, or ``verify`` reads another
  document.
* lm-eval's seed for the run (``--seed``), which the search follows where ``seed=`` is not
  given (``config.search_seed``).

And back, for ``--log_samples``: each logged sample gets the chain that answered it
(``ChosenChain``), so lm-eval's samples file says which chain answered and whether the gold
chose it. One ``EvaluationCall`` lives for one call: a model object reused in Python starts
each evaluation fresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lm_eval_cola.errors import UserError
from lm_eval_cola.results.identity import EvalIdentity

# The keys added to each of lm-eval's logged samples.
LOG_KEYS = ("cola_chain", "cola_chain_length", "cola_oracle")


@dataclass(frozen=True)
class ChosenChain:
    """The chain that answered one sample, and whether the gold answer chose it."""

    chain: str
    length: int
    oracle: bool

    def log_fields(self) -> dict[str, Any]:
        return dict(zip(LOG_KEYS, (self.chain, self.length, self.oracle), strict=True))


def checked_samples(samples: Any) -> dict[str, list[int]]:
    """lm-eval's ``samples`` (``--samples``: task -> document ids), checked for what a cola
    model needs: lm-eval evaluates the chosen documents in the task's order but labels each
    by its place in the user's list, so only increasing ids without repeats are labelled
    right (and can be recorded right). A one-line UserError otherwise."""
    if samples is None:
        return {}
    if not isinstance(samples, Mapping):
        raise UserError(f"bad --samples {samples!r}; allowed: a JSON object of task names to "
                        "lists of document ids, e.g. '{\"arc_challenge\": [0, 5]}'")
    out: dict[str, list[int]] = {}
    for task, ids in samples.items():
        good = (isinstance(ids, list | tuple)
                and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids))
        if not good:
            raise UserError(f"bad --samples for task {task!r}: {ids!r}; allowed: a list of "
                            "document ids (integers >= 0)")
        ids = list(ids)
        if ids != sorted(set(ids)):
            raise UserError(
                f"bad --samples for task {task!r}: {ids!r}; allowed: increasing document ids "
                f"without repeats, e.g. {sorted(set(ids))!r} (lm-eval reads the documents in "
                "the task's order but labels them by the list's order)")
        out[str(task)] = ids
    return out


@dataclass
class EvaluationCall:
    """One call of lm-eval's evaluator, as a cola model sees it."""

    # task -> lm-eval's document ids by place (``--samples``); a task not here: place = id
    doc_ids: dict[str, list[int]] = field(default_factory=dict)
    # lm-eval's seed for the run (None: lm-eval left at its default, or not known)
    run_seed: int | None = None
    # (task, document id) -> the chain that answered it (searched or routed samples)
    chosen: dict[tuple[str, int], ChosenChain] = field(default_factory=dict)

    @classmethod
    def start(cls, samples: Any = None, run_seed: int | None = None) -> EvaluationCall:
        return cls(doc_ids=checked_samples(samples), run_seed=run_seed)

    def doc_id(self, task: str, place: int) -> int:
        """lm-eval's id of the document a request's ``doc_id`` (its place) points at."""
        ids = self.doc_ids.get(task)
        return ids[place] if ids else place  # lm-eval ignores an empty list too

    def annotate(self, logged: Mapping[str, Iterable[dict]],
                 every: ChosenChain | None = None) -> int:
        """Add the answering chain to each of lm-eval's logged samples (``results
        ["samples"]``): its own where one was chosen, else ``every`` (a fixed chain).
        Returns how many samples got one."""
        done = 0
        for task, examples in logged.items():
            for example in examples:
                chosen = self.chosen.get((task, int(example.get("doc_id", -1)))) or every
                if chosen is not None:
                    example.update(chosen.log_fields())
                    done += 1
        return done


def evaluation_identity(settings: Mapping[str, Any],
                        chat_template: Callable[[Any], str | None]) -> EvalIdentity:
    """The run-identity part of lm-eval's prompt and decoding settings (chat template,
    system instruction, few-shot, gen_kwargs, --samples), as the evaluator hook hands them
    over; ``chat_template`` is the model's (``HFLM.chat_template``)."""
    applied = settings.get("apply_chat_template")
    # the template lm-eval applies and stores (its sha) in the results
    template = (chat_template(applied) or "") if applied else None
    return EvalIdentity.make(
        chat_template=template, system_instruction=settings.get("system_instruction"),
        fewshot_as_multiturn=bool(settings.get("fewshot_as_multiturn")),
        num_fewshot=settings.get("num_fewshot"), gen_kwargs=settings.get("gen_kwargs"),
        samples=settings.get("samples") or None)
