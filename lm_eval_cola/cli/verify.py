"""``lm-eval-cola verify``: re-run each record's chains as fixed chains on its sample and
check the recorded correctness. A found chain that does not reproduce is a bug.

``--tolerance T``: on a GPU a sample's scores change in the last bits with what shared its
batch (docs/performance.md, GPU readiness), so a decision at a near-tie may flip on re-run.
A flipped multiple-choice decision is then a *rounding flip*, reported apart and not failing
the check, when the re-run's deciding scores are within ``T x max(1, |top score|)`` of each
other (relative, as tests/support/near_tie.py): the best gold choice's and the best other
choice's, as the oracle metric scores them (``TaskJudge.choice_scores``; the top two where
the gold cannot be read). Loglikelihood tasks (a greedy-match verdict) and generation (the
deciding logits are not kept) have no cheap deciding scores: their flips are always
mismatches. Without ``--tolerance`` every flip is a mismatch.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_eval_cola.chains.syntax import parse_chain
from lm_eval_cola.compat.lm_eval_private import parse_model_args
from lm_eval_cola.errors import UserError
from lm_eval_cola.results.records import Record, latest_per_sample, read_records

logger = logging.getLogger(__name__)


_MODELS: dict[str, Any] = {}


@dataclass(frozen=True)
class Check:
    task: str
    doc_id: int
    what: str  # "best" or "full"
    chain: str
    recorded: bool
    reproduced: bool
    # a flip whose re-run deciding scores are within the tolerance: (score gap, bound)
    near_tie: tuple[float, float] | None = None

    @property
    def ok(self) -> bool:
        """Reproduced exactly."""
        return self.recorded == self.reproduced

    @property
    def rounding(self) -> bool:
        """Flipped, at a near-tie within the tolerance (reported apart, not a failure)."""
        return not self.ok and self.near_tie is not None

    @property
    def mismatch(self) -> bool:
        return not self.ok and self.near_tie is None


def deciding_gap(judge: Any, doc: dict, responses: list) -> tuple[float, float] | None:
    """(the gap between the scores that decide correctness, the top score) of a
    multiple-choice sample's re-run: the best gold choice against the best other choice
    (the top two where the gold cannot be read); None where there are no such scores
    (loglikelihood and generation tasks, fewer than two choices, a non-finite score)."""
    if judge.output_type != "multiple_choice" or not judge.finite(responses):
        return None
    scores = judge.choice_scores(doc, responses)
    if len(scores) < 2:
        return None
    try:
        golds = {g for g in judge.gold_choices(doc) if g < len(scores)}
    except (ValueError, TypeError, IndexError, AttributeError, KeyError):
        golds = set()  # a task shaped unlike lm-eval's own: the top two decide
    if golds and len(golds) < len(scores):
        gold = max(scores[i] for i in golds)
        other = max(v for i, v in enumerate(scores) if i not in golds)
        gap = abs(gold - other)
    else:
        first, second = sorted(scores, reverse=True)[:2]
        gap = first - second
    return (gap, max(scores)) if math.isfinite(gap) else None


def near_tie(judge: Any, doc: dict, responses: list,
             tolerance: float) -> tuple[float, float] | None:
    """(gap, bound) where the re-run's deciding scores are within ``tolerance``, relative:
    ``gap <= tolerance x max(1, |top score|)``; else None."""
    found = deciding_gap(judge, doc, responses)
    if found is None:
        return None
    gap, top = found
    bound = tolerance * max(1.0, abs(top))
    return (gap, bound) if gap <= bound else None


def _instances(record: Record, doc: dict) -> list:
    from lm_eval.api.instance import Instance

    return [
        Instance(request_type=record.request_type, doc=doc, arguments=tuple(args), idx=i,
                 metadata=(record.task, record.doc_id, 1))
        for i, args in enumerate(record.requests)
    ]


class VerifyError(UserError):
    """A record that cannot be checked against the data and model at hand."""


def _doc(lm: Any, record: Record, path: str) -> dict:
    """The record's doc as the data has it now; a VerifyError where that is not the doc
    the run searched (another doc hash, or no such doc)."""
    from lm_eval_cola.compat.lm_eval_private import hash_doc

    where = f"{path}: task {record.task!r} doc {record.doc_id}"
    try:
        task = lm.judges.task(record.task)
    except (KeyError, ValueError) as err:  # lm-eval's "not a registered task" is a KeyError
        raise VerifyError(f"{where}: the task cannot be loaded here ({_first_line(err)}); "
                          "allowed: a task lm-eval knows, custom ones with --include_path"
                          ) from None
    docs = task.eval_docs
    if not 0 <= record.doc_id < len(docs):
        raise VerifyError(f"{where}: the data has no such doc (it has {len(docs)}): the data "
                          "changed since the run, or its doc ids map to other docs")
    doc = docs[record.doc_id]
    if hash_doc(doc) != record.doc_hash:
        raise VerifyError(f"{where} differs from the recorded one (doc_hash mismatch): the "
                          "data changed since the run, or its doc ids map to other docs; "
                          "verify against the data the run searched")
    return doc


def _first_line(err: BaseException) -> str:
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return (text.strip().splitlines() or [type(err).__name__])[0]


def verify_records(paths: Iterable[str | Path], model_args: dict[str, Any] | None = None,
                   include_path: str | None = None,
                   tolerance: float | None = None) -> list[Check]:
    """Every record's best and full chain, re-run and judged again (``tolerance``: flips
    at a near-tie are rounding flips, see the module's docstring). A VerifyError (one
    line) for a file that holds no record, so a check never passes having checked
    nothing, and for a record whose doc is not the one the run searched."""
    from lm_eval_cola.harness.models import ColaHFLM

    by_model: dict[str, list[tuple[str, Record]]] = defaultdict(list)
    for path in paths:
        if not Path(path).is_file():
            raise VerifyError(f"records file {str(path)!r} does not exist or is not a file; "
                              "allowed: a cola-records_*.jsonl file a search run wrote")
        records = latest_per_sample(read_records(path))  # a line not a record: one line
        if not records:
            raise VerifyError(f"records file {str(path)!r} holds no records: nothing to "
                              "verify; allowed: a cola-records_*.jsonl file a search run wrote")
        for record in records:
            by_model[json.dumps(record.load_args, sort_keys=True)].append((str(path), record))
    checks: list[Check] = []
    for load_args, records in by_model.items():
        args = {**json.loads(load_args), **(model_args or {})}
        key = json.dumps([args, include_path], sort_keys=True, default=str)
        if key not in _MODELS:  # keep loaded models: verifying many files loads each once
            _MODELS.clear()
            _MODELS[key] = ColaHFLM(include_path=include_path, **args)
        lm = _MODELS[key]
        lm.judges.expect_attached = False  # verify loads each record's task by name
        for path, record in records:
            checks.extend(_verify_one(lm, record, path, tolerance))
    return checks


def _verify_one(lm: Any, record: Record, path: str,
                tolerance: float | None = None) -> list[Check]:
    from lm_eval_cola.search.judge import TaskJudge

    doc = _doc(lm, record, path)
    judge = TaskJudge(lm.judges.task(record.task), record.oracle_metric, record.oracle_filter)
    requests = _instances(record, doc)
    checks = []
    full = f"0-{lm.num_layers - 1}"
    for what, chain_text, recorded in ((("best", record.best_chain, record.best_correct),
                                        ("full", full, record.full_correct))):
        chain = parse_chain(chain_text, lm.num_layers, lm.max_chain_length)
        responses = lm.runner.run(record.request_type, requests, chain)
        # the full chain is judged as lm-eval judges it, finite or not (as the search did)
        whole = chain == tuple(range(lm.num_layers))
        reproduced = judge.judge(doc, responses, full=whole).correct
        tie = (near_tie(judge, doc, responses, tolerance)
               if tolerance is not None and reproduced != bool(recorded) else None)
        checks.append(Check(record.task, record.doc_id, what, chain_text, bool(recorded),
                            reproduced, tie))
    return checks


# ----------------------------------------------------------------------------- command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("records", nargs="+", help="records files (cola-records_*.jsonl)")
    parser.add_argument("--model_args", default=None,
                        help="override the recorded model args, e.g. device=cuda")
    parser.add_argument("--include_path", default=None, help="folder of custom task YAMLs")
    parser.add_argument("--tolerance", type=float, default=None, metavar="T",
                        help="relative near-tie bound for runs whose scores depend on the "
                        "batch (GPU): a flipped multiple-choice decision whose re-run gold "
                        "and best other choice scores are within T x max(1, |top score|) "
                        "is reported as a rounding flip, not a mismatch; default: none "
                        "(every flip is a mismatch)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    for path in args.records:
        if not Path(path).is_file():
            raise UserError(f"records file {path!r} does not exist")
    tolerance = args.tolerance
    if tolerance is not None and not tolerance >= 0:  # NaN too
        raise UserError(f"bad --tolerance {tolerance!r}; allowed: a number >= 0 (relative, "
                        "e.g. 1e-3)")
    checks = verify_records(args.records, parse_model_args(args.model_args), args.include_path,
                            tolerance)
    for check in checks:
        if not check.ok:
            what = "MISMATCH" if check.mismatch else "ROUNDING FLIP"
            tie = (f" (re-run score gap {check.near_tie[0]:.3g} <= {check.near_tie[1]:.3g})"
                   if check.near_tie is not None else "")
            print(f"{what} {check.task} doc {check.doc_id} {check.what} chain {check.chain}: "
                  f"recorded correct={check.recorded}, re-run correct={check.reproduced}{tie}")
    samples = len({(c.task, c.doc_id) for c in checks})
    bad = sum(c.mismatch for c in checks)
    flips = (f"{sum(c.rounding for c in checks)} rounding flips (tolerance {tolerance:g}), "
             if tolerance is not None else "")
    print(f"verified {samples} samples ({len(checks)} chains): "
          f"{sum(c.ok for c in checks)} reproduced, {flips}{bad} mismatched")
    return 1 if bad else 0
