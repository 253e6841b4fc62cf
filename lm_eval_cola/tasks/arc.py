"""The paper's benchmark suite as lm-eval tasks: the Python side of ``lm_eval_cola/tasks/``.

"Skip a Layer or Loop it?" analyses ARC-Easy, ARC-Challenge and "DART-Math" levels 1-5 (the
MATH difficulty levels of MATH *train* questions), zero-shot, with *generated* answers, on 500
instances per dataset. The YAML files in ``lm_eval_cola/tasks/`` (on lm-eval's task path
automatically, see ``compat/task_path.py``) name the functions here with ``!function``:

* ``cola_arc_easy``, ``cola_arc_challenge`` (this module): the question and its choices under
  the item's own labels (A-D, but also A-C, A-E or 1-4, as ARC has them), the model asked for
  the label alone, generation after ``Answer:``. Filters: ``strict-match`` (the response must
  *start* with one of the item's labels: ``B``, ``B.``, ``(B)``, ``B) because ...``) and
  ``flexible-extract`` (also ``the answer is B``, ``(B)`` or a lone ``B`` anywhere). Metric:
  ``exact_match`` against ``answerKey``.
* ``cola_dart_1`` ... ``cola_dart_5`` (``dart.py``): MATH train questions of that
  level, all seven subjects, the final answer asked for in ``\\boxed{}``; ``math_verify``
  (the ``math-verify`` library) judges equivalence with the last ``\\boxed{}`` of the reference
  solution. Filters: ``strict-match`` (the response's last ``\\boxed{}``) and
  ``flexible-extract`` (the whole response, math-verify finds the answer).

The first filter and the task's only metric are the oracle's defaults, so an oracle search
(``cola_mcts`` ...) judges by the strict parse with no ``oracle_metric``/``oracle_filter``.

Every task evaluates the same seeded sample of :data:`SAMPLE_SIZE` docs (all of them when
fewer), in a seeded random order (:func:`seeded_sample`): a doc's place is the SHA-256 of the
seed and the doc's own key (ARC's ``id``; MATH's subject and problem text), so the sample is the
same on every machine and Python, and ``--limit n`` takes the first n of it: itself a seeded
sample of n, nested in the 500.

Instruct vs base: one task name serves both. ``--apply_chat_template`` wraps the same prompt in
the tokenizer's chat template (the instruct variant: the prompt is the user turn, and
``Answer:`` / ``Solution:`` begins the assistant turn); without it the prompt is plain text
completed after ``Answer:`` / ``Solution:`` (the base-model variant). lm-eval records the
choice in the results (``config.apply_chat_template``).

Nothing here imports lm-eval, torch or math-verify at import time.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from lm_eval_cola.compat.task_path import tasks_dir

logger = logging.getLogger(__name__)

__all__ = [
    "INVALID",
    "SAMPLE_SEED",
    "SAMPLE_SIZE",
    "arc_docs",
    "arc_doc_to_target",
    "arc_doc_to_text",
    "arc_process_results",
    "flexible_letter",
    "flexible_letter_filter",
    "sample_order",
    "seeded_sample",
    "strict_letter",
    "strict_letter_filter",
    "tasks_dir",
]

SAMPLE_SIZE = 500  # the paper's instances per dataset
SAMPLE_SEED = 1234  # the project's default seed
INVALID = "[invalid]"  # what a filter gives when it finds no answer (lm-eval's convention)


# ----------------------------------------------------------------------- the seeded sample


def sample_order(keys: Sequence[Hashable], size: int = SAMPLE_SIZE,
                 seed: int = SAMPLE_SEED) -> list[int]:
    """Indices of ``size`` of ``keys`` (all when fewer), in a seeded random order.

    A key's place is the SHA-256 of ``"<seed>:<key>"`` (ties, i.e. equal keys, by index): no
    Python hash randomisation, no RNG whose sequence could change between versions, and a doc's
    place does not depend on the other docs, so a prefix of the order is a sample of its own.
    """
    def digest(key: Hashable) -> str:
        return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()

    ranked = sorted(range(len(keys)), key=lambda i: (digest(keys[i]), i))
    return ranked[: max(0, int(size))]


def seeded_sample(dataset: Any, key: Callable[[dict], Hashable], size: int = SAMPLE_SIZE,
                  seed: int = SAMPLE_SEED) -> Any:
    """``dataset`` (a ``datasets.Dataset``, or a list of docs) cut to its seeded sample."""
    keys = [key(doc) for doc in dataset]
    order = sample_order(keys, size, seed)
    if len(order) < size:
        logger.info("seeded sample: the split has %d docs (< %d), all are used",
                    len(order), size)
    if hasattr(dataset, "select"):
        return dataset.select(order)
    return [dataset[i] for i in order]


# ----------------------------------------------------------------------- ARC


def arc_docs(dataset: Any) -> Any:
    """``process_docs`` of the ARC tasks: the seeded sample of 500, keyed by ARC's ``id``."""
    return seeded_sample(dataset, key=lambda doc: doc["id"])


def _labels(doc: dict) -> list[str]:
    return [str(label).strip() for label in doc["choices"]["label"]]


def _or_list(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def arc_doc_to_text(doc: dict) -> str:
    """The zero-shot prompt: the question, one line a choice under the item's own label,
    and the instruction; the task's ``gen_prefix`` (``Answer:``) follows on its own line."""
    labels = _labels(doc)
    lines = [f"Question: {doc['question'].strip()}"]
    lines += [f"{label}. {str(text).strip()}"
              for label, text in zip(labels, doc["choices"]["text"], strict=True)]
    kind = "number" if all(label.isdigit() for label in labels) else "letter"
    lines.append(f"Answer with the {kind} of the correct choice ({_or_list(labels)}) only.")
    return "\n".join(lines)


def arc_doc_to_target(doc: dict) -> str:
    """The gold label, as the item spells it (``"C"``, or ``"3"`` for numeric labels)."""
    return str(doc["answerKey"]).strip()


def _is_article(label: str, rest: str) -> bool:
    """``A`` used as the English article ("A plant needs ..."), not as a choice label."""
    return label == "A" and re.match(r" [a-z]", rest) is not None


def strict_letter(text: str, labels: Sequence[str]) -> str:
    """The label the response *starts* with, else :data:`INVALID`.

    After optional whitespace and one opening ``(`` or ``[``, the response's first token (a run
    of letters and digits) must be one of ``labels``, exactly (case included), and be followed
    by the end or a non-alphanumeric character: ``"B"``, ``"B. Because ..."``, ``"(B)"``,
    ``" 3\\n"`` parse; ``"Bacteria"``, ``"b"``, ``"The answer is B"`` and ``"A plant ..."`` (the
    article) do not.
    """
    match = re.match(r"\s*[(\[]?\s*([A-Za-z0-9]+)", text)
    if match is None:
        return INVALID
    token, rest = match.group(1), text[match.end():]
    if token in labels and not _is_article(token, rest):
        return token
    return INVALID


def flexible_letter(text: str, labels: Sequence[str]) -> str:
    """The strict parse, else the label named in the response's text, else :data:`INVALID`.

    In order: :func:`strict_letter`; the last ``answer is X`` / ``answer: X`` (any case for
    "answer", ``X`` possibly in brackets or bold); the first ``(X)`` or ``[X]``; the first
    label standing alone (not touching a letter or digit; not the article ``A``).
    """
    strict = strict_letter(text, labels)
    if strict != INVALID:
        return strict
    alternatives = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    if not alternatives:
        return INVALID
    alone = rf"(?<![A-Za-z0-9])({alternatives})(?![A-Za-z0-9])"
    named = list(re.finditer(rf"(?i:answer)\s*(?:(?i:is)\s*)?[:\-]?\s*[(\[*]*\s*{alone}", text))
    if named:
        return named[-1].group(1)
    bracketed = re.search(rf"[(\[]\s*({alternatives})\s*[)\]]", text)
    if bracketed:
        return bracketed.group(1)
    for match in re.finditer(alone, text):
        if not _is_article(match.group(1), text[match.end():]):
            return match.group(1)
    return INVALID


def _filter_each(parse: Callable[[str, Sequence[str]], str], resps: Sequence[Sequence[str]],
                 docs: Sequence[dict]) -> list[list[str]]:
    return [[parse(str(r), _labels(doc)) for r in doc_resps]
            for doc_resps, doc in zip(resps, docs, strict=True)]


def strict_letter_filter(resps: Sequence[Sequence[str]], docs: Sequence[dict]) -> list[list[str]]:
    """lm-eval ``custom`` filter (``filter_fn``): :func:`strict_letter` on every response."""
    return _filter_each(strict_letter, resps, docs)


def flexible_letter_filter(resps: Sequence[Sequence[str]],
                           docs: Sequence[dict]) -> list[list[str]]:
    """lm-eval ``custom`` filter (``filter_fn``): :func:`flexible_letter` on every response."""
    return _filter_each(flexible_letter, resps, docs)


def arc_process_results(doc: dict, results: Sequence[str]) -> dict[str, float]:
    """``exact_match``: 1.0 when the filtered answer is the gold label (as a string: numeric
    labels stay ``"3"``, never the integer 3), else 0.0."""
    answer = str(results[0]).strip() if results else INVALID
    return {"exact_match": float(answer == arc_doc_to_target(doc))}
