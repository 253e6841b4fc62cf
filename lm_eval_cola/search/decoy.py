"""The chance control (``control=decoy``): how often does a search "find" a wrong answer?

An oracle search reports that some chain answers a wrong sample right, or that a shorter
chain keeps a right sample right. With enough chains tried, some chain says almost
anything, so each sample is searched a second time, with the same searcher, settings,
budget, seed and early-stop rule, toward a *decoy*: a target that is wrong by construction.

Where the decoy comes from (drawn with the sample's own seed, in its own random stream):

- multiple choice: one of the item's wrong choices;
- generation, where the doc lists its own answer labels (``doc["choices"]["label"]``, as
  ARC, OpenBookQA or CommonsenseQA have them, e.g. the paper's ``cola_arc_*``; or the
  task's ``doc_to_choice``): one of *this item's* labels, judged by the task's metric on a
  copy of the doc whose gold field holds that label (so a label the item lacks, e.g. ``E``
  for an item labelled ``1``-``4``, is never drawn: it could never be reached);
- any other generation task: the gold answer of another of the task's eval docs, judged by
  the task's metric against that doc.

Every candidate must pass two tests, both by the task's own metric (``process_results``):

1. it is not the gold: neither does the metric count the candidate (as plain text, ``$x$``
   or ``\\boxed{x}``) right for this doc, nor this doc's gold right for the candidate's doc
   (so ``0.5`` is no decoy for the gold ``\\frac{1}{2}`` under ``math_verify``);
2. the full (unedited) chain does not already answer it (multiple choice: it is not the
   choice the full chain's scores pick, lm-eval's argmax, even when they are not finite;
   generation: the metric does not count the full chain's filtered answer right for it).

A sample with no candidate left has *no decoy*, and its record says why (``NoDecoy``):
``all_choices_gold`` (every choice or label is right), ``only_wrong_answer_is_full_chains``
(the only wrong ones are what the full chain says: a two-choice task's wrong samples),
``no_other_answer`` (no other doc has a different, non-equivalent gold) or
``unsupported_output_type`` (a task with neither choices nor generated text). Such samples
leave the decoy's denominators; the full chain never counts as reaching a decoy.

A chain "answers the decoy" when the metric's choice is the decoy choice (multiple choice,
under the oracle metric: raw log-likelihood argmax for ``acc``, length-normalised for
``acc_norm``), or when the task's ``process_results(decoy doc, filtered answer)`` reaches 1.0
(generation). A chain with non-finite scores answers nothing. The decoy's graded score has
the gold's form (metric value plus the squashed log-likelihood margin of the decoy choice;
generation: plus the decoy doc's answer teacher-forced after this doc's prompt,
``TaskJudge.forced_margin``), so the searcher is guided toward it exactly as toward the gold.

The findings' rates next to the decoy's (decoy reached among wrong samples, decoy
shortened among right samples) say how much of them chance alone explains.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lm_eval_cola.search.judge import Judgement, TaskJudge, squashed_margin

logger = logging.getLogger(__name__)

# Mixed into the sample's seed, so the decoy draw is its own random stream: it never
# shifts the searcher's draws, which use the sample's seed itself.
DECOY_SALT = 0x5D3C0
_RANDOM_TRIES = 64  # generation: random draws before a deterministic scan takes over
_RIGHT = 1.0 - 1e-9  # a metric value at least this is "right", as the oracle judges

# Why a sample has no decoy (the record's ``decoy["none"]``)
ALL_GOLD = "all_choices_gold"
ONLY_FULL = "only_wrong_answer_is_full_chains"
NO_OTHER = "no_other_answer"
UNSUPPORTED = "unsupported_output_type"


@dataclass(frozen=True)
class Decoy:
    """A sample's decoy target."""

    target: Any  # multiple choice: a choice index; generation: a label or another doc's gold
    doc: Any = None  # generation: the doc whose gold the target is (answers are judged by it)
    doc_id: int | None = None  # another doc's gold: that doc's index in the eval docs

    def describe(self) -> dict[str, Any]:
        """The JSON fields a record keeps of the target."""
        out: dict[str, Any] = {"target": self.target}
        if self.doc_id is not None:
            out["target_doc_id"] = self.doc_id
        return out


@dataclass(frozen=True)
class NoDecoy:
    """A sample with no decoy, and why (one of the reasons above)."""

    reason: str

    def describe(self) -> dict[str, Any]:
        """The record's ``decoy`` field: no target, nothing searched."""
        return {"target": None, "none": self.reason, "reached": False, "evaluations": 0}


def decoy_rng(seed: int) -> random.Random:
    return random.Random(seed ^ DECOY_SALT)


def draw_choice(choices: int, golds: set[int], full_answer: int | None,
                seed: int) -> int | NoDecoy:
    """A wrong choice index (never a gold, never the full chain's answer), drawn by the
    seed; a ``NoDecoy`` when there is none."""
    wrong = [i for i in range(choices) if i not in golds]
    if not wrong:
        return NoDecoy(ALL_GOLD)
    wrong = [i for i in wrong if i != full_answer]
    return decoy_rng(seed).choice(wrong) if wrong else NoDecoy(ONLY_FULL)


def draw_other_doc(docs: Sequence[Any], doc_id: int, gold: Any, gold_of: Any,
                   seed: int, fits: Callable[[int], bool] | None = None,
                   avoid: Callable[[Any], bool] | None = None) -> tuple[int, Any] | NoDecoy:
    """(index, doc) of another doc whose gold (``gold_of(doc)``) differs from ``gold``, that
    ``fits(index)`` accepts (not the gold by the metric) and ``avoid(doc)`` does not reject
    (the full chain answers it), drawn by the seed; a ``NoDecoy`` when there is none."""
    count = len(docs)
    wanted = _normal(gold)
    blocked = False  # some candidate failed only because the full chain answers it

    def accept(index: int) -> bool:
        nonlocal blocked
        if index == doc_id or _normal(gold_of(docs[index])) == wanted:
            return False
        if fits is not None and not fits(index):
            return False
        if avoid is not None and avoid(docs[index]):
            blocked = True
            return False
        return True

    if count < 2:
        return NoDecoy(NO_OTHER)
    rng = decoy_rng(seed)
    for _ in range(_RANDOM_TRIES):
        index = rng.randrange(count)
        if accept(index):
            return index, docs[index]
    start = rng.randrange(count)  # many docs share this gold: look at each once
    for step in range(count):
        index = (start + step) % count
        if accept(index):
            return index, docs[index]
    return NoDecoy(ONLY_FULL if blocked else NO_OTHER)


def _normal(gold: Any) -> str:
    return str(gold).strip()


def satisfies(judge: TaskJudge, doc: Any, answer: Any) -> bool:
    """Whether the task's metric counts ``answer``, written as plain text, as ``$x$`` or as
    ``\\boxed{x}`` (the usual ways a final answer is given), right for ``doc``."""
    text = _normal(answer)
    for written in dict.fromkeys((text, f"${text}$", f"\\boxed{{{text}}}")):
        try:
            if judge.metric_value(doc, [written]) >= _RIGHT:
                return True
        except Exception as err:  # noqa: BLE001 - a task's metric may raise on odd text
            logger.debug("%s: metric failed on %r (%s): not counted right", judge.name,
                         written, err)
    return False


def item_labels(judge: TaskJudge, doc: Any) -> list[Any] | None:
    """A generation doc's own answer labels (``doc["choices"]["label"]``, else the task's
    ``doc_to_choice``), or None where the doc lists none."""
    choices = doc.get("choices") if isinstance(doc, dict) else None
    if isinstance(choices, dict) and isinstance(choices.get("label"), list | tuple):
        return [_normal(label) for label in choices["label"]] or None
    if getattr(judge.task.config, "doc_to_choice", None) is not None:
        try:
            return list(judge.task.doc_to_choice(doc)) or None
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            return None
    return None


def with_gold(judge: TaskJudge, doc: Any, index: int, label: Any) -> dict | None:
    """A copy of ``doc`` whose gold is the label ``label`` (``index`` in its label list),
    or None where no field of the doc holds the gold. The field is the one holding the
    task's gold as ``doc_to_target`` gives it (``answerKey``: ``"C"``; or a choice index);
    the copy is checked to give ``label`` as its gold."""
    if not isinstance(doc, dict):
        return None
    raw = judge.task.doc_to_target(doc)
    new = index if isinstance(raw, int) and not isinstance(raw, bool) else label
    for key, value in doc.items():
        if value == raw or (isinstance(value, str) and _normal(value) == _normal(raw)):
            copy = {**doc, key: new}
            try:
                if _normal(judge.gold_text(copy)) == _normal(label):
                    return copy
            except (KeyError, TypeError, ValueError, IndexError):
                continue
    return None


def _draw_label(judge: TaskJudge, doc: Any, labels: list[Any], seed: int,
                full_says: Callable[[Any], bool]) -> Decoy | NoDecoy | None:
    """One of the item's own labels as the decoy; None where the doc's gold field cannot
    be found (then the pool of other docs, restricted to these labels, serves)."""
    gold = judge.gold_text(doc)
    wrong: list[tuple[Any, dict]] = []
    for index, label in enumerate(labels):
        if _normal(label) == _normal(gold) or satisfies(judge, doc, label):
            continue
        copy = with_gold(judge, doc, index, label)
        if copy is None:
            logger.debug("%s: no field holds the gold; decoys come from other docs", judge.name)
            return None
        wrong.append((label, copy))
    if not wrong:
        return NoDecoy(ALL_GOLD)
    left = [(label, copy) for label, copy in wrong if not full_says(copy)]
    if not left:
        return NoDecoy(ONLY_FULL)
    label, copy = decoy_rng(seed).choice(left)
    return Decoy(target=label, doc=copy)


def draw_decoy(judge: TaskJudge, doc: Any, doc_id: int, seed: int, full: Judgement,
               full_responses: Sequence[Any] | None = None) -> Decoy | NoDecoy:
    """The sample's decoy, drawn with ``seed`` (the sample's own); ``full`` is the full
    chain's judgement (``full_responses`` its raw answers: generation avoids a decoy the
    full chain already gives). A ``NoDecoy`` (with its reason) where none exists."""
    if judge.output_type == "multiple_choice":
        choices = len(judge.task.doc_to_choice(doc))
        index = draw_choice(choices, judge.gold_choices(doc), full.answer, seed)
        return index if isinstance(index, NoDecoy) else Decoy(target=index)
    if judge.output_type != "generate_until":
        return NoDecoy(UNSUPPORTED)
    said = judge.filtered(doc, full_responses) if full_responses is not None else None

    def full_says(target_doc: Any) -> bool:
        return said is not None and judge.metric_value(target_doc, said) >= _RIGHT

    labels = item_labels(judge, doc)
    if labels is not None and _normal(judge.gold_text(doc)) not in {_normal(x) for x in labels}:
        # The doc lists labels but its gold is an answer text, not one of them: the labels
        # are no answer space for it, and other docs' golds are the decoy pool.
        labels = None
    if labels is not None:
        drawn = _draw_label(judge, doc, labels, seed, full_says)
        if drawn is not None:
            return drawn
    docs, gold = judge.eval_docs, judge.gold_text(doc)
    allowed = None if labels is None else {_normal(label) for label in labels}

    def fits(index: int) -> bool:
        other = docs[index]
        if allowed is not None and _normal(judge.gold_text(other)) not in allowed:
            return False
        return not (satisfies(judge, doc, judge.gold_text(other))
                    or satisfies(judge, other, gold))

    found = draw_other_doc(docs, doc_id, gold, judge.gold_text, seed, fits, full_says)
    if isinstance(found, NoDecoy):
        return found
    index, other = found
    return Decoy(target=judge.gold_text(other), doc=other, doc_id=index)


def judge_decoy(judge: TaskJudge, doc: Any, responses: Sequence[Any], gold: Judgement,
                decoy: Decoy) -> Judgement:
    """Does this chain answer the decoy? ``gold`` is its judgement against the gold (its
    answer and finiteness are the same whatever the target)."""
    if not gold.finite:  # answers nothing (the full chain too: its answer is never the decoy)
        return Judgement(correct=False, score=-math.inf, finite=False, answer=gold.answer)
    if judge.output_type == "multiple_choice":
        hit = gold.answer == decoy.target
        try:
            margin = squashed_margin(responses, decoy.target)
        except (ValueError, IndexError):  # fewer responses than choices: no graded signal
            margin = 0.0
        return Judgement(correct=hit, score=float(hit) + margin, finite=True,
                         answer=gold.answer)
    value = judge.metric_value(decoy.doc, judge.filtered(doc, responses))
    score = value + judge.forced_margin(doc, responses, decoy.doc)  # 0 unless reward graded
    return Judgement(correct=value >= _RIGHT, score=score, finite=True, answer=gold.answer)
