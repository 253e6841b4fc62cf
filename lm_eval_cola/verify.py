"""Re-run each record's chains as fixed chains on its sample and check the recorded
correctness. A found chain that does not reproduce is a bug."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_eval_cola.chain import parse_chain
from lm_eval_cola.records import Record, latest_per_sample, read_records

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

    @property
    def ok(self) -> bool:
        return self.recorded == self.reproduced


def _instances(record: Record, doc: dict) -> list:
    from lm_eval.api.instance import Instance

    return [
        Instance(request_type=record.request_type, doc=doc, arguments=tuple(args), idx=i,
                 metadata=(record.task, record.doc_id, 1))
        for i, args in enumerate(record.requests)
    ]


def _doc(lm: Any, record: Record) -> dict:
    from lm_eval_cola.compat.lm_eval_private import hash_doc

    doc = lm.judges.task(record.task).eval_docs[record.doc_id]
    if hash_doc(doc) != record.doc_hash:
        raise ValueError(
            f"doc {record.doc_id} of task {record.task!r} differs from the recorded one "
            "(doc_hash mismatch): the data changed since the run"
        )
    return doc


def verify_records(paths: Iterable[str | Path], model_args: dict[str, Any] | None = None,
                   include_path: str | None = None) -> list[Check]:
    """Every record's best and full chain, re-run and judged again."""
    from lm_eval_cola.models import ColaHFLM

    by_model: dict[str, list[Record]] = defaultdict(list)
    for path in paths:
        for record in latest_per_sample(read_records(path)):
            by_model[json.dumps(record.load_args, sort_keys=True)].append(record)
    checks: list[Check] = []
    for load_args, records in by_model.items():
        args = {**json.loads(load_args), **(model_args or {})}
        key = json.dumps([args, include_path], sort_keys=True, default=str)
        if key not in _MODELS:  # keep loaded models: verifying many files loads each once
            _MODELS.clear()
            _MODELS[key] = ColaHFLM(include_path=include_path, **args)
        lm = _MODELS[key]
        lm.judges.expect_attached = False  # verify loads each record's task by name
        for record in records:
            checks.extend(_verify_one(lm, record))
    return checks


def _verify_one(lm: Any, record: Record) -> list[Check]:
    from lm_eval_cola.oracle import TaskJudge

    judge = TaskJudge(lm.judges.task(record.task), record.oracle_metric, record.oracle_filter)
    doc = _doc(lm, record)
    requests = _instances(record, doc)
    checks = []
    full = f"0-{lm.num_layers - 1}"
    for what, chain_text, recorded in ((("best", record.best_chain, record.best_correct),
                                        ("full", full, record.full_correct))):
        chain = parse_chain(chain_text, lm.num_layers, lm.max_chain_length)
        responses = lm.runner.run(record.request_type, requests, chain)
        reproduced = judge.judge(doc, responses).correct
        checks.append(Check(record.task, record.doc_id, what, chain_text, bool(recorded),
                            reproduced))
    return checks
