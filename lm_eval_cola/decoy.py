"""The chance control (``control=decoy``): how often does a search "find" a wrong answer?

An oracle search reports that some chain answers a wrong sample right, or that a shorter
chain keeps a right sample right. With enough chains tried, some chain says almost
anything, so each sample is searched a second time, with the same searcher, settings,
budget and seed, toward a *decoy*: a target that is wrong by construction.

- multiple choice: a wrong choice, drawn with the sample's own seed; it also differs from
  the full chain's own answer whenever another wrong choice exists, so for a sample the
  full chain gets wrong the decoy is as far from the full chain's answer as the gold is
  (neither is what the full chain says);
- generation: the gold answer of another doc of the same task's eval docs (drawn by the
  seed, with a gold different from this doc's), one the full chain's own answer does not
  already give whenever such a doc exists: as for multiple choice, so a short-answer task
  (a letter, a number) gets no decoy the full chain "reaches" before any search.

A chain "answers the decoy" when the metric's choice is the decoy choice (multiple
choice, under the oracle metric: raw log-likelihood argmax for ``acc``, length-normalised
for ``acc_norm``), or when the task's ``process_results(other doc, filtered answer)``
reaches 1.0 (generation). A chain with non-finite scores answers nothing. The decoy's
graded score has the gold's form (metric value plus the squashed log-likelihood margin of
the decoy choice), so the searcher is guided toward it exactly as toward the gold.

The findings' rates next to the decoy's (decoy reached among wrong samples, decoy
shortened among right samples) say how much of them chance alone explains.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lm_eval_cola.oracle import Judgement, TaskJudge, squashed_margin

logger = logging.getLogger(__name__)

# Mixed into the sample's seed, so the decoy draw is its own random stream: it never
# shifts the searcher's draws, which use the sample's seed itself.
DECOY_SALT = 0x5D3C0
_RANDOM_TRIES = 64  # generation: random draws before a deterministic scan takes over


@dataclass(frozen=True)
class Decoy:
    """A sample's decoy target."""

    target: Any  # multiple choice: a choice index; generation: another doc's gold
    doc: Any = None  # generation: the other doc, whose gold the answers are judged by
    doc_id: int | None = None  # generation: the other doc's index in the eval docs

    def describe(self) -> dict[str, Any]:
        """The JSON fields a record keeps of the target."""
        out: dict[str, Any] = {"target": self.target}
        if self.doc_id is not None:
            out["target_doc_id"] = self.doc_id
        return out


def decoy_rng(seed: int) -> random.Random:
    return random.Random(seed ^ DECOY_SALT)


def draw_choice(choices: int, golds: set[int], full_answer: int | None,
                seed: int) -> int | None:
    """A wrong choice index (never a gold), not the full chain's answer when another
    wrong choice exists; None when every choice is gold."""
    wrong = [i for i in range(choices) if i not in golds]
    if full_answer in wrong and len(wrong) > 1:
        wrong.remove(full_answer)
    return decoy_rng(seed).choice(wrong) if wrong else None


def draw_other_doc(docs: Sequence[Any], doc_id: int, gold: Any, gold_of: Any,
                   seed: int, avoid: Callable[[Any], bool] | None = None
                   ) -> tuple[int, Any] | None:
    """(index, doc) of another doc whose gold (``gold_of(doc)``) differs from ``gold``,
    drawn by the seed, and not one ``avoid(doc)`` rejects when another exists; None when
    there is none."""
    count = len(docs)
    if count < 2:
        return None
    wanted = _normal(gold)

    def fits(index: int, strict: bool) -> bool:
        if index == doc_id or _normal(gold_of(docs[index])) == wanted:
            return False
        return not (strict and avoid is not None and avoid(docs[index]))

    for strict in ((True, False) if avoid is not None else (False,)):
        rng = decoy_rng(seed)
        for _ in range(_RANDOM_TRIES):
            index = rng.randrange(count)
            if fits(index, strict):
                return index, docs[index]
        start = rng.randrange(count)  # many docs share this gold: look at each once
        for step in range(count):
            index = (start + step) % count
            if fits(index, strict):
                return index, docs[index]
    return None


def _normal(gold: Any) -> str:
    return str(gold).strip()


def draw_decoy(judge: TaskJudge, doc: Any, doc_id: int, seed: int,
               full: Judgement, full_responses: Sequence[Any] | None = None) -> Decoy | None:
    """The sample's decoy, drawn with ``seed`` (the sample's own); ``full`` is the full
    chain's judgement (``full_responses`` its raw answers: generation avoids a decoy the
    full chain already gives). None where no decoy exists (every choice gold, no other
    gold, or a task without choices or generated text)."""
    if judge.output_type == "multiple_choice":
        choices = len(judge.task.doc_to_choice(doc))
        full_answer = full.answer if full.finite else None
        index = draw_choice(choices, judge.gold_choices(doc), full_answer, seed)
        return None if index is None else Decoy(target=index)
    if judge.output_type == "generate_until":
        avoid = None
        if full_responses is not None and full.finite:
            said = judge.filtered(doc, full_responses)

            def avoid(other: Any) -> bool:
                return judge.metric_value(other, said) >= 1.0 - 1e-9

        found = draw_other_doc(judge.eval_docs, doc_id, judge.gold_text(doc), judge.gold_text,
                               seed, avoid)
        if found is None:
            return None
        index, other = found
        return Decoy(target=judge.gold_text(other), doc=other, doc_id=index)
    return None


def judge_decoy(judge: TaskJudge, doc: Any, responses: Sequence[Any], gold: Judgement,
                decoy: Decoy) -> Judgement:
    """Does this chain answer the decoy? ``gold`` is its judgement against the gold (its
    answer and finiteness are the same whatever the target)."""
    if not gold.finite:
        return gold  # answers nothing: wrong, with the worst score
    if judge.output_type == "multiple_choice":
        hit = gold.answer == decoy.target
        try:
            margin = squashed_margin(responses, decoy.target)
        except (ValueError, IndexError):  # fewer responses than choices: no graded signal
            margin = 0.0
        return Judgement(correct=hit, score=float(hit) + margin, finite=True,
                         answer=gold.answer)
    value = judge.metric_value(decoy.doc, judge.filtered(doc, responses))
    return Judgement(correct=value >= 1.0 - 1e-9, score=value, finite=True, answer=gold.answer)
