"""Oracle search over lm-eval samples: ``OracleSearch.search(kind, samples) -> records``.

One sample is one (task, doc_id) with its distinct requests. For each sample not already
on record (resume), the searcher's ask/tell run proposes chains, the chain runner answers
them (the asks of ``search_batch`` samples in flight batched into one forward by the
scheduler), the task's own metric judges each answer (``oracle.TaskJudge``), and the
sample's ``Record`` is written as soon as its search ends. With data parallel ranks each
rank searches its share into its own records file, and every rank's summary counts every
sample once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lm_eval_cola import __version__
from lm_eval_cola.chain import Chain, format_chain
from lm_eval_cola.compat.lm_eval_private import hash_doc
from lm_eval_cola.oracle import TaskJudge, TaskJudges
from lm_eval_cola.records import NullWriter, Record, RecordWriter, read_records
from lm_eval_cola.runner import ChainRunner, SampleEvaluator, evaluate_many
from lm_eval_cola.scheduler import run_searches
from lm_eval_cola.searchers import Ledger, Outcome, Searcher, SearchResult, SearchRun
from lm_eval_cola.summary import Summary

logger = logging.getLogger(__name__)


def sample_seed(seed: int, task: str, doc_id: int) -> int:
    """A sample's own seed: independent of batch size, rank and the other samples."""
    digest = hashlib.sha256(f"{seed}/{task}/{doc_id}".encode()).hexdigest()
    return int(digest[:8], 16)


def jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    return value


def records_path(explicit: Path | None, folder: str | None, searcher: str, config_hash: str,
                 rank: int = 0, world_size: int = 1) -> Path | None:
    """Where a rank keeps its records: ``records=`` (``explicit``), else
    ``<output folder>/cola-records_<searcher>_<config hash>.jsonl``; with several data
    parallel ranks each has its own ``..._rank{r}.jsonl``. None: no records are kept."""
    suffix = f"_rank{rank}" if world_size > 1 else ""
    if explicit is not None:
        return explicit.with_name(f"{explicit.stem}{suffix}{explicit.suffix}")
    if folder is None:
        return None
    return Path(folder) / f"cola-records_{searcher}_{config_hash}{suffix}.jsonl"


@dataclass
class Sample:
    """One doc of one task, with its distinct requests in request order."""

    task: str
    doc_id: int
    requests: list

    @property
    def key(self) -> tuple[str, int]:
        return (self.task, self.doc_id)

    @property
    def doc(self) -> Any:
        return self.requests[0].doc

    def request_args(self) -> list:
        return [jsonable(list(r.args)) for r in self.requests]


@dataclass
class RunFacts:
    """What every record of a run shares."""

    model: str  # display name
    load_args: dict[str, Any]
    num_layers: int
    searcher: Searcher
    seed: int
    keep_correct: int
    dtype: str
    oracle_metric: str | None = None
    oracle_filter: str | None = None
    max_chain_length: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def config_hash(self) -> str:
        """Identifies what a record depends on, so a resume never mixes configurations."""
        identity = {
            "model": self.model, "dtype": self.dtype, "searcher": self.searcher.name,
            "settings": jsonable(self.searcher.settings), "seed": self.seed,
            "oracle_metric": self.oracle_metric, "oracle_filter": self.oracle_filter,
            "max_chain_length": self.max_chain_length,
        }
        text = json.dumps(identity, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


class SampleSearch:
    """One sample's search as the scheduler sees it: asks are (evaluator, chain) pairs,
    answers are raw responses, which it judges and tells its searcher."""

    def __init__(self, sample: Sample, kind: str, judge: TaskJudge, facts: RunFacts,
                 evaluator: SampleEvaluator):
        self.sample, self.kind, self.judge, self.facts = sample, kind, judge, facts
        self.evaluator = evaluator
        self.seed = sample_seed(facts.seed, sample.task, sample.doc_id)
        self.responses: dict[Chain, list] = {}  # every evaluated chain's raw responses
        self.result: SearchResult | None = None
        self._asked: list[Chain] = []
        self._ledger: Ledger | None = None
        self._run: SearchRun | None = None

    def advance(self, answers: list | None) -> list | None:
        try:
            if answers is None:
                self._ledger, self._run = self.facts.searcher.start(
                    self.facts.num_layers, self.seed, self.facts.keep_correct)
                asked = next(self._run)
            else:
                assert self._run is not None
                asked = self._run.send([self._tell(c, a)
                                        for c, a in zip(self._asked, answers, strict=True)])
        except StopIteration as stop:
            self.result = stop.value
            return None
        self._asked = list(asked)
        return [(self.evaluator, chain) for chain in self._asked]

    def _tell(self, chain: Chain, responses: list) -> Outcome:
        self.responses[chain] = responses
        verdict = self.judge.judge(self.sample.doc, responses)
        return Outcome(correct=verdict.correct, score=verdict.score)

    def record(self, seconds: float) -> Record:
        result, facts, sample = self.result, self.facts, self.sample
        assert result is not None
        best = result.best_chain
        return Record(
            task=sample.task, doc_id=sample.doc_id, doc_hash=hash_doc(sample.doc),
            model=facts.model, searcher=facts.searcher.name, oracle=facts.searcher.oracle,
            settings=jsonable(facts.searcher.settings), oracle_metric=self.judge.metric,
            oracle_filter=self.judge.filter_name, seed=self.seed,
            num_layers=facts.num_layers, full_correct=result.full_correct,
            best_chain=format_chain(best), best_length=len(best),
            best_correct=result.best_outcome.correct, best_score=result.best_outcome.score,
            evaluations=result.evaluations, stopped_early=result.stopped_early,
            seconds=round(seconds, 4),
            correct_chains=[format_chain(c) for c in result.correct_chains],
            responses=[jsonable(r) for r in self.responses[best]], request_type=self.kind,
            requests=sample.request_args(), load_args=facts.load_args, version=__version__,
        )


class OracleSearch:
    """Searches samples, keeps their records, and counts them in ``summary``."""

    def __init__(self, runner: ChainRunner, judges: TaskJudges, facts: RunFacts,
                 search_batch: int, records_file: Path | None, rank: int = 0,
                 world_size: int = 1):
        self.runner, self.judges, self.facts = runner, judges, facts
        self.search_batch = search_batch
        self.records_file = records_file
        self.rank, self.world_size = rank, world_size
        self.summary = Summary(num_layers=facts.num_layers, oracle=facts.searcher.oracle)
        self._summarized: set[tuple[str, int]] = set()
        self._writer: RecordWriter | NullWriter | None = None

    def search(self, kind: str, samples: list[Sample], progress: bool = True
               ) -> dict[tuple[str, int], Record]:
        """Every sample's record: from the records file when one is there for the same
        doc and requests (resume), else searched now and written at once."""
        done = self._resume()
        records: dict[tuple[str, int], Record] = {}
        todo: list[Sample] = []
        for sample in samples:
            record = done.get(sample.key)
            if record is not None and not self._same_sample(record, sample):
                logger.warning("%s doc %d changed since its record was written (doc or "
                               "requests differ): searching it again; the new record "
                               "supersedes the old", sample.task, sample.doc_id)
                record = None
            if record is None:
                todo.append(sample)
                continue
            records[sample.key] = record
            self._count(record)
        bar = tqdm(total=len(samples), initial=len(records), unit="sample",
                   desc=f"oracle search ({self.facts.searcher.name})",
                   disable=not progress or self.rank != 0)

        def finished(record: Record) -> None:
            records[record.key] = record
            bar.update(1)
            bar.set_postfix_str(self.summary.progress_line(), refresh=False)

        self.run(kind, todo, finished)
        bar.close()
        self._gather_ranks([records[s.key] for s in samples])
        return records

    def run(self, kind: str, samples: list[Sample], finished: Any = None) -> list[Record]:
        """Search ``samples`` (no resume), writing each record as it finishes. Fast
        loglikelihood samples are searched ``search_batch`` side by side, so their chain
        evaluations run as one batch; the others one at a time."""
        width = self.search_batch if kind == "loglikelihood" and self.runner.fast else 1
        cache_bytes = self.runner.cache_bytes // width  # a bound for all samples in flight
        out: list[Record] = []

        def start(sample: Sample):
            def make() -> SampleSearch:
                judge = self.judges.judge(sample.task)
                judge.check_gold(sample.doc)  # fail early, with one line
                evaluator = self.runner.evaluator(kind, sample.requests, cache_bytes)
                return SampleSearch(sample, kind, judge, self.facts, evaluator)
            return make

        def done(index: int, search: Any, seconds: float) -> None:
            record = search.record(seconds)
            self._writer_for().write(record)
            self._count(record)
            out.append(record)
            if finished is not None:
                finished(record)

        run_searches([start(s) for s in samples],
                     lambda asks: evaluate_many(self.runner.lm.model, asks), done, width)
        return out

    def _count(self, record: Record) -> None:
        if record.key not in self._summarized:  # a sample counts once, whatever comes back
            self._summarized.add(record.key)
            self.summary.add(record)

    def _same_sample(self, record: Record, sample: Sample) -> bool:
        return (record.doc_hash == hash_doc(sample.doc)
                and record.requests == sample.request_args())

    def _resume(self) -> dict[tuple[str, int], Record]:
        path = self.records_file
        if path is None or not path.exists():
            return {}
        records = read_records(path, repair=True)
        if records:
            logger.info("resuming: %d finished samples in %s", len(records), path)
        return {r.key: r for r in records}

    def _writer_for(self) -> RecordWriter | NullWriter:
        if self._writer is None:
            if self.records_file is None:
                self._writer = NullWriter()
                logger.warning("no --output_path and no records=: per-sample records are not kept")
            else:
                self._writer = RecordWriter(self.records_file)
                logger.info("writing per-sample records to %s", self.records_file)
        return self._writer

    def _gather_ranks(self, searched: list[Record]) -> None:
        """With data parallel ranks, count every other rank's samples of this call in
        this rank's summary too, so rank 0's results cover them all. Every rank calls
        this once per request type, as lm-eval pads ranks to equal work."""
        if self.world_size <= 1:
            return
        import torch.distributed as dist

        light = [{**r.to_json(), "responses": [], "requests": []} for r in searched]
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, light)
        for part in parts:
            for data in part:
                self._count(Record.from_json(data))
