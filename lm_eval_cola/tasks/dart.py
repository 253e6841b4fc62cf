"""The DART tasks (``cola_dart_1`` ... ``cola_dart_5``): MATH train questions by level.

"DART levels" are the MATH difficulty levels (1-5) of MATH *train* questions (the paper's
public follow-up code filters ``hkust-nlp/dart-math-pool-math`` on ``query_metadata.level``,
whose questions are the MATH train split). A task here reads ``EleutherAI/hendrycks_math``
(lm-eval's own MATH dataset: seven subject configs), split ``train``, all subjects, keeps
``level == "Level <n>"`` (two geometry rows say ``"Level ?"``: in no level; two solutions end
in an empty ``\\boxed{}``, no gold: left out) and takes the seeded sample of 500
(``arc.seeded_sample``, keyed by subject and problem text).

Data: :func:`load_math_train` is the tasks' ``custom_dataset``. With ``COLA_DATA_DIR`` set it
reads ``<COLA_DATA_DIR>/hendrycks_math/<subject>/train.jsonl``, found exactly as every other
task's local data is (``compat.local_data.resolve_split_files``); without it, the hub, subject
by subject. Either way one ``train`` split with the subjects in alphabetical order.

Judgement: the answer is checked for mathematical equivalence with the last ``\\boxed{}`` of the
reference solution by ``math-verify`` (the library lm-eval's ``minerva_math`` uses), never by a
regex of ours: :func:`math_equal`. Only the extraction of the *last* ``\\boxed{...}`` of a
response (``strict-match``) is ours: :func:`last_boxed`, a brace matcher (nested braces kept).
``flexible-extract`` hands math-verify the whole response (its own answer extraction).
math-verify's time limits use ``signal.alarm``, which works only in the main thread: they are
on there (:data:`TIMEOUT_SECONDS` per parse and per comparison) and off elsewhere (lm-eval
threads, a server), where a pathological expression could then take long.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence
from typing import Any

from lm_eval_cola.tasks.arc import INVALID, seeded_sample

logger = logging.getLogger(__name__)

__all__ = [
    "HUB_ID",
    "SUBJECTS",
    "TIMEOUT_SECONDS",
    "boxed_filter",
    "dart_docs_1",
    "dart_docs_2",
    "dart_docs_3",
    "dart_docs_4",
    "dart_docs_5",
    "dart_doc_to_target",
    "dart_doc_to_text",
    "dart_process_results",
    "last_boxed",
    "load_math_train",
    "math_equal",
]

HUB_ID = "EleutherAI/hendrycks_math"
SUBJECTS: tuple[str, ...] = (
    "algebra", "counting_and_probability", "geometry", "intermediate_algebra",
    "number_theory", "prealgebra", "precalculus",
)
TIMEOUT_SECONDS = 5


# ----------------------------------------------------------------------- data


def load_math_train(**_ignored: Any) -> Any:
    """``custom_dataset`` of the DART tasks: MATH train, all subjects, as ``{"train": ...}``.

    lm-eval passes the task metadata and ``--metadata`` as keyword arguments; none are used.
    """
    import datasets

    from lm_eval_cola.compat.local_data import data_root, resolve_split_files

    root = data_root()
    if root is not None:
        files = [str(resolve_split_files(root, HUB_ID, subject, ["train"], "train",
                                         task="cola_dart")["train"]) for subject in SUBJECTS]
        logger.info("COLA_DATA_DIR: the DART tasks load %s", files)
        return datasets.load_dataset("json", data_files={"train": files})
    parts = [datasets.load_dataset(HUB_ID, subject, split="train") for subject in SUBJECTS]
    return datasets.DatasetDict({"train": datasets.concatenate_datasets(parts)})


def _level_docs(level: int, dataset: Any) -> Any:
    wanted = f"Level {level}"
    # Two train solutions end in an empty "\\boxed{}" (no gold to judge by): left out.
    kept = dataset.filter(lambda doc: doc["level"] == wanted and bool(last_boxed(doc["solution"])))
    return seeded_sample(kept, key=lambda doc: f"{doc['type']}\n{doc['problem']}")


def dart_docs_1(dataset: Any) -> Any:
    """``process_docs`` of ``cola_dart_1``: level-1 questions, the seeded sample of 500."""
    return _level_docs(1, dataset)


def dart_docs_2(dataset: Any) -> Any:
    """``process_docs`` of ``cola_dart_2``."""
    return _level_docs(2, dataset)


def dart_docs_3(dataset: Any) -> Any:
    """``process_docs`` of ``cola_dart_3``."""
    return _level_docs(3, dataset)


def dart_docs_4(dataset: Any) -> Any:
    """``process_docs`` of ``cola_dart_4``."""
    return _level_docs(4, dataset)


def dart_docs_5(dataset: Any) -> Any:
    """``process_docs`` of ``cola_dart_5``."""
    return _level_docs(5, dataset)


# ----------------------------------------------------------------------- prompt, gold


def dart_doc_to_text(doc: dict) -> str:
    """The zero-shot prompt; the task's ``gen_prefix`` (``Solution:``) follows."""
    return ("Solve the following math problem. Put your final answer within \\boxed{}.\n\n"
            f"Problem: {doc['problem'].strip()}")


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, nested braces
    kept (``\\boxed{\\frac{1}{2}}`` -> ``\\frac{1}{2}``); ``\\boxed 5`` -> ``5``; None when there
    is none, or when its braces never close (a response cut off inside the box)."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = start + (len("\\boxed") if text.startswith("\\boxed", start) else len("\\fbox"))
    if i < len(text) and text[i].isalpha():  # "\boxedfoo": another macro, not a box
        return None
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text):
        return None
    if text[i] != "{":  # "\boxed 5": one token, up to whitespace or "$"
        end = i
        while end < len(text) and not text[end].isspace() and text[end] != "$":
            end += 1
        return text[i:end].rstrip(".,") or None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
    return None


def dart_doc_to_target(doc: dict) -> str:
    """The gold answer: the content of the reference solution's last ``\\boxed{}``."""
    return last_boxed(doc["solution"]) or ""


# ----------------------------------------------------------------------- judgement


def _timeout() -> int | None:
    """math-verify's signal-based time limit: only the main thread may set an alarm."""
    return TIMEOUT_SECONDS if threading.current_thread() is threading.main_thread() else None


def _parse(text: str) -> list[Any]:
    from math_verify import parse

    return parse(text, parsing_timeout=_timeout())


@functools.lru_cache(maxsize=4096)
def _parsed_gold(gold: str) -> tuple[Any, ...]:
    # The oracle judges one doc's gold against many chains' answers: parse it once.
    return tuple(_parse(f"\\boxed{{{gold}}}"))


def math_equal(gold: str, answer: str) -> bool:
    """Whether ``answer`` (any text: math-verify extracts its final answer, a ``\\boxed{}``
    first) is mathematically equivalent to ``gold`` (a boxed content, e.g. ``\\frac{1}{2}``).
    :data:`INVALID`, an empty answer or gold, and anything math-verify cannot parse: False."""
    if not gold or not answer or answer.strip() == INVALID:
        return False
    from math_verify import verify

    golds = list(_parsed_gold(gold))
    answers = _parse(answer)
    if not golds or not answers:
        return False
    return bool(verify(golds, answers, timeout_seconds=_timeout()))


def boxed_filter(resps: Sequence[Sequence[str]], docs: Sequence[dict]) -> list[list[str]]:
    """lm-eval ``custom`` filter (``strict-match``): each response's last ``\\boxed{...}``,
    whole (``\\boxed{...}``, so math-verify reads exactly it), else :data:`INVALID`."""
    def strict(text: str) -> str:
        content = last_boxed(str(text))
        return INVALID if content is None else f"\\boxed{{{content}}}"

    return [[strict(r) for r in doc_resps] for doc_resps in resps]


def dart_process_results(doc: dict, results: Sequence[str]) -> dict[str, float]:
    """``math_verify``: 1.0 when the filtered answer equals the gold (:func:`math_equal`)."""
    answer = str(results[0]) if results else ""
    return {"math_verify": float(math_equal(dart_doc_to_target(doc), answer))}
