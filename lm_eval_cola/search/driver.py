"""Oracle search over lm-eval samples: ``OracleSearch.search(kind, samples) -> records``.

One sample is one (task, doc_id) with its distinct requests. For each sample not already
on record (resume), the searcher's ask/tell run proposes chains, the chain runner answers
them (the asks of ``search_batch`` samples in flight batched into one forward by the
scheduler), the task's own metric judges each answer (``judge.TaskJudge``), and the
sample's ``Record`` is written as soon as its search ends. With data parallel ranks each
rank searches its share into its own records file, and every rank's summary counts every
sample once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lm_eval_cola import __version__
from lm_eval_cola.chains.syntax import Chain, format_chain, full_chain
from lm_eval_cola.compat.lm_eval_private import hash_doc
from lm_eval_cola.engine.runner import ChainRunner, Evaluations, SampleEvaluator
from lm_eval_cola.results.identity import EvalIdentity, numerics_key
from lm_eval_cola.results.records import ChainEntry, NullWriter, Record, RecordWriter, read_records
from lm_eval_cola.results.summary import Summary
from lm_eval_cola.search.decoy import Decoy, NoDecoy, draw_decoy, judge_decoy
from lm_eval_cola.search.judge import Judgement, TaskJudge, TaskJudges
from lm_eval_cola.search.progress import EvaluationProgress
from lm_eval_cola.search.scheduler import run_searches
from lm_eval_cola.search.searchers import Ledger, Outcome, Searcher, SearchResult, SearchRun

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


# The judging rules' version. Version 2 (issue #21) changed what a record says for some
# samples: decoys never the full chain's answer and drawn fairly, the decoy search under the
# gold's stop rule, a non-finite full chain judged as lm-eval judges it, and the graded
# reward on generation tasks. Runs these touch (decoy control, graded reward) hash it, so a
# resume never mixes records judged under two rules; other runs keep their records names.
JUDGING_RULES = 2

# Searcher settings that came after records existed, with the values that mean "as before":
# `parallel` (1, or greedy's None: today's exact sequence of asks).
NEUTRAL_SETTINGS: dict[str, tuple[Any, ...]] = {"parallel": (1, None)}


def without_neutral_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` less those at a value of ``NEUTRAL_SETTINGS`` (hashed, and compared
    across versions, only away from their default, so older records and runs still match)."""
    return {k: v for k, v in settings.items()
            if not (k in NEUTRAL_SETTINGS and v in NEUTRAL_SETTINGS[k])}


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
    control: str | None = None  # "decoy": each sample searched toward a decoy too
    record_chains: str = "best"  # "all": records list every evaluated chain
    extra: dict[str, Any] = field(default_factory=dict)
    # the prompt and decoding settings lm-eval ran with (chat template, few-shot, ...)
    evaluation: EvalIdentity = field(default_factory=EvalIdentity)
    numerics: str = "exact"  # the engine's numerics= (fast may change a decision)

    def config_hash(self) -> str:
        """Identifies what a record depends on, so a resume never mixes configurations."""
        settings = without_neutral_settings(jsonable(self.searcher.settings))
        identity = {
            "model": self.model, "dtype": self.dtype, "searcher": self.searcher.name,
            "settings": settings, "seed": self.seed,
            "oracle_metric": self.oracle_metric, "oracle_filter": self.oracle_filter,
            "max_chain_length": self.max_chain_length,
        }
        if self.control == "decoy" or settings.get("reward") == "graded":
            identity["rules"] = JUDGING_RULES
        # Only where set, so the records files of runs without them keep their names.
        identity.update({k: v for k, v in (("control", self.control),
                                           ("record_chains", self.record_chains))
                         if v not in (None, "best")})
        # Likewise only where not the default (plain prompts, the task's few-shot, ...):
        # runs under other prompts keep other records; older default runs keep their names.
        identity.update(numerics_key(self.numerics))  # nothing for exact: names as before
        evaluation = self.evaluation.hash_fields()
        if evaluation:
            identity["evaluation"] = evaluation
        text = json.dumps(identity, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass(eq=False)
class _Run:
    """One ask/tell search over a sample, toward the gold or toward the decoy. ``verdict``
    judges an answered chain for this run's target."""

    ledger: Ledger
    run: SearchRun
    verdict: Callable[[Chain], Judgement]
    asked: list[Chain] = field(default_factory=list)
    verdicts: dict[Chain, Judgement] = field(default_factory=dict)
    result: SearchResult | None = None
    started: bool = False

    def step(self, known: Mapping[Chain, Any]) -> None:
        """Go on while everything the run waits for is ``known`` (answered for either run
        of the sample): stop where it asks for an unknown chain, or at its end."""
        while self.result is None:
            told: list[Outcome] | None = None
            if self.started:
                if any(chain not in known for chain in self.asked):
                    return
                told = []
                for chain in self.asked:
                    verdict = self.verdicts[chain] = self.verdict(chain)
                    told.append(Outcome(correct=verdict.correct, score=verdict.score))
            self.started = True
            try:
                self.asked = list(self.run.send(told))  # type: ignore[arg-type]
            except StopIteration as stop:
                self.result, self.asked = stop.value, []

    def entries(self) -> list[dict[str, Any]]:
        """Every chain this run evaluated, in evaluation order, as ``Record.chains`` lists
        them (correct and score as the searcher was told them)."""
        return [ChainEntry(chain=format_chain(chain), length=len(chain),
                           answer=jsonable(self.verdicts[chain].answer),
                           correct=outcome.correct, score=outcome.score,
                           finite=self.verdicts[chain].finite).to_json()
                for chain, outcome in self.ledger.seen.items()]


class SampleSearch:
    """One sample's search as the scheduler sees it: asks are (evaluator, chain) pairs,
    answers are raw responses, which it judges and tells its searcher.

    With ``control=decoy`` a second run of the same searcher (same settings, budget and
    seed) searches toward the sample's decoy (``decoy.py``), drawn once the full chain is
    judged, and stops early under the real run's rule (the sample counts as right for it
    where the full chain gets the gold right). Both runs ask through this object: a chain
    either asks is evaluated once, and the real run is told exactly what it would be told
    alone, so its result, record and the answers lm-eval scores do not change."""

    def __init__(self, sample: Sample, kind: str, judge: TaskJudge, facts: RunFacts,
                 evaluator: SampleEvaluator):
        self.sample, self.kind, self.judge, self.facts = sample, kind, judge, facts
        self.evaluator = evaluator
        self.seed = sample_seed(facts.seed, sample.task, sample.doc_id)
        self.responses: dict[Chain, list] = {}  # every evaluated chain's raw responses
        self.judged: dict[Chain, Judgement] = {}  # against the gold, whichever run asked
        self.result: SearchResult | None = None
        self.decoy: Decoy | NoDecoy | None = None  # None: not drawn (yet), or no control
        self._main: _Run | None = None
        self._decoy_run: _Run | None = None
        self._decoy_drawn = False
        self._pending: list[Chain] = []

    def advance(self, answers: list | None) -> list | None:
        if answers is None:
            self._main = self._start(self._gold)
        else:
            self.responses.update(zip(self._pending, answers, strict=True))
        assert self._main is not None
        self._main.step(self.responses)
        full = full_chain(self.facts.num_layers)
        if self.facts.control == "decoy" and not self._decoy_drawn and full in self.judged:
            self._decoy_drawn = True
            self.decoy = draw_decoy(self.judge, self.sample.doc, self.sample.doc_id, self.seed,
                                    self.judged[full], self.responses[full])
            if isinstance(self.decoy, Decoy):
                self._decoy_run = self._start(self._toward_decoy, self.judged[full].correct)
        runs = [r for r in (self._main, self._decoy_run) if r is not None]
        for run in runs[1:]:
            run.step(self.responses)
        # The real run's asks first, in its order: its batches are what they were alone.
        self._pending = list(dict.fromkeys(chain for run in runs for chain in run.asked
                                           if chain not in self.responses))
        if not self._pending:
            assert all(run.result is not None for run in runs)
            self.result = self._main.result
            return None
        return [(self.evaluator, chain) for chain in self._pending]

    def _start(self, verdict: Callable[[Chain], Judgement],
               stop_as_right: bool | None = None) -> _Run:
        ledger, run = self.facts.searcher.start(self.facts.num_layers, self.seed,
                                                self.facts.keep_correct, stop_as_right)
        return _Run(ledger, run, verdict)

    def _gold(self, chain: Chain) -> Judgement:
        if chain not in self.judged:
            # the full chain: lm-eval's own verdict, finite or not (see judge.py)
            full = chain == full_chain(self.facts.num_layers)
            self.judged[chain] = self.judge.judge(self.sample.doc, self.responses[chain],
                                                  full=full)
        return self.judged[chain]

    def _toward_decoy(self, chain: Chain) -> Judgement:
        assert isinstance(self.decoy, Decoy)
        return judge_decoy(self.judge, self.sample.doc, self.responses[chain],
                           self._gold(chain), self.decoy)

    def record(self, seconds: float) -> Record:
        result, facts, sample, main = self.result, self.facts, self.sample, self._main
        assert result is not None and main is not None
        best = result.best_chain
        seen = list(main.ledger.seen)
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
            pareto=[format_chain(c) for c in result.pareto],
            search_notes=jsonable(result.notes),
            responses=[jsonable(r) for r in self.responses[best]], request_type=self.kind,
            requests=sample.request_args(), load_args=facts.load_args, version=__version__,
            nonfinite=sum(not main.verdicts[c].finite for c in seen),
            full_finite=main.verdicts[full_chain(facts.num_layers)].finite,
            evaluated_layers=sum(len(c) for c in seen),
            chains=main.entries() if facts.record_chains == "all" else [],
            decoy=self._decoy_record(result.full_correct),
        )

    def _decoy_record(self, full_correct: bool) -> dict[str, Any] | None:
        """The decoy search's findings: ``reached``, some chain answers the decoy;
        ``shortest``, the shortest chain that does (None: none); ``shortened`` (samples
        the full chain gets right), a chain shorter than the full one answers it -- the
        same rule as the finding it controls ("shorter when right": best chain shorter
        than the full chain), so the two rates compare like with like. A sample with no
        decoy says why (``NoDecoy.describe``); None: the run has no control."""
        run, decoy = self._decoy_run, self.decoy
        if self.facts.control != "decoy":
            return None
        if isinstance(decoy, NoDecoy):
            return decoy.describe()
        assert isinstance(decoy, Decoy) and run is not None and run.result is not None
        layers = self.facts.num_layers
        seen = run.ledger.seen
        full = full_chain(layers)  # never counts as reaching the decoy
        lengths = [len(c) for c, o in seen.items() if o.correct and c != full]
        shortest = min(lengths) if lengths else None
        out = {
            **jsonable(decoy.describe()),
            "reached": shortest is not None,
            "best_chain": format_chain(run.result.best_chain),
            "best_length": len(run.result.best_chain),
            "evaluations": run.result.evaluations,
            "shortest": shortest,
            "shortened": full_correct and shortest is not None and shortest < layers,
            "evaluated_layers": sum(len(c) for c in seen),
        }
        if self.facts.record_chains == "all":
            out["chains"] = run.entries()
        return out


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
        # Counted in chain evaluations, so it moves while samples side by side are searched
        bar = EvaluationProgress(self.facts.searcher.settings.budget, len(samples),
                                 len(records), f"oracle search ({self.facts.searcher.name})",
                                 not progress or self.rank != 0, self.summary.progress_line)

        def finished(record: Record) -> None:
            records[record.key] = record
            bar.finished(record.key)

        self.run(kind, todo, finished, bar.evaluated)
        bar.close()
        self._gather_ranks([records[s.key] for s in samples])
        return records

    def run(self, kind: str, samples: list[Sample], finished: Any = None,
            evaluated: Callable[[tuple[str, int], int], None] | None = None) -> list[Record]:
        """Search ``samples`` (no resume), writing each record as it finishes (then
        ``finished(record)``; ``evaluated(sample key, count)`` as chains are answered). Fast
        loglikelihood and generation samples are searched ``search_batch`` side by side, so
        their chain evaluations run as one batch; the others one at a time."""
        width = self.search_batch if self.runner.batches(kind) else 1
        # a bound for all samples in flight: an equal share each
        cache_bytes = self.runner.cache_bytes // max(1, min(width, len(samples)))
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

        def answered(index: int, count: int) -> None:
            if evaluated is not None:
                evaluated(samples[index].key, count)

        run_searches([start(s) for s in samples], Evaluations(self.runner.lm.model), done,
                     width, answered)
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

        # What the summary counts, without the bulky lists (responses, chains)
        light = [{**r.to_json(), "responses": [], "requests": [], "chains": [],
                  "decoy": None if r.decoy is None else {**r.decoy, "chains": []}}
                 for r in searched]
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, light)
        for part in parts:
            for data in part:
                self._count(Record.from_json(data))
