"""The lm-eval models: ``cola_hf`` (a fixed chain, or any searcher by name) and
``cola_mcts`` / ``cola_greedy`` / ``cola_random`` (``cola_hf`` with that searcher, so
each shows as its own model in lm-eval's outputs).

A fixed chain runs lm-eval's ``HFLM`` code paths unchanged inside ``chain_applied``.
Oracle search needs each request's doc, which HFLM's batching no longer knows, so
requests are grouped by (task, doc_id) here and each group is searched on its own
(loglikelihood groups ``search_batch`` side by side, their evaluations batched).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm

from lm_eval_cola import __version__, hooks
from lm_eval_cola.chain import Chain, format_chain, parse_chain
from lm_eval_cola.default_model import default_model
from lm_eval_cola.default_model import prepare as prepare_default_model
from lm_eval_cola.engine import chain_applied, find_layers
from lm_eval_cola.errors import UserError, install_excepthook
from lm_eval_cola.fast import DEFAULT_CACHE_BYTES, SampleScorer, pack, score_many
from lm_eval_cola.fast_generate import PromptCache, SampleGenerator
from lm_eval_cola.lockstep import run_in_lockstep
from lm_eval_cola.oracle import OracleError, TaskJudge, flatten_tasks
from lm_eval_cola.records import RecordWriter, read_records, sample_key
from lm_eval_cola.searchers import SEARCHERS, Outcome, get_searcher, searcher_names
from lm_eval_cola.summary import Summary

logger = logging.getLogger(__name__)
install_excepthook()
_UNSET: Any = object()
# The record fields the summary needs; what data parallel ranks exchange.
_SUMMARY_FIELDS = ("task", "doc_id", "num_layers", "full_correct", "best_correct", "best_length",
                   "evaluations", "seconds")

# Model args of ours, beside HFLM's own and the searchers' settings.
COLA_ARGS = (
    "chain", "max_chain_length", "searcher", "seed", "oracle_metric", "oracle_filter",
    "records", "keep_correct", "include_path", "fast", "prefix_cache_bytes", "search_batch",
)
DEFAULT_SEARCH_BATCH = 16


def _setting_names(searcher: str) -> set[str]:
    return {f.name for f in fields(SEARCHERS[searcher].Settings)}


def _all_setting_names() -> set[str]:
    return set().union(*(_setting_names(name) for name in SEARCHERS))


def _foreign_setting_names() -> set[str]:
    """Searcher settings that are not also HFLM arguments: lm-eval's CLI always passes
    batch_size (also the random searcher's setting), which must not count as misplaced."""
    import inspect

    return _all_setting_names() - set(inspect.signature(HFLM.__init__).parameters)


def _coerce_setting(name: str, value: Any, default: Any) -> Any:
    # model_args arrive as text, ints or floats; tuples come as "1+2" (commas would split).
    if isinstance(default, tuple):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (int(value),)
        if isinstance(value, str):
            try:
                return tuple(int(v) for v in value.replace(",", "+").split("+") if v)
            except ValueError:
                raise UserError(
                    f"bad value for setting '{name}': {value!r} (allowed: e.g. 1+2)"
                ) from None
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def sample_seed(seed: int, task: str, doc_id: int) -> int:
    """A sample's own seed: independent of batch size, rank and the other samples."""
    digest = hashlib.sha256(f"{seed}/{task}/{doc_id}".encode()).hexdigest()
    return int(digest[:8], 16)


def doc_hash(doc: Any) -> str:
    """lm-eval's own doc hash, as in its --log_samples output."""
    from lm_eval.utils import handle_non_serializable, hash_string

    text = json.dumps(doc, indent=2, default=handle_non_serializable, ensure_ascii=False)
    return hash_string(text)


@functools.cache
def task_manager(include_path: str | None = None) -> Any:
    """One lm-eval TaskManager per include path: building one indexes every task (slow)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path)


@register_model("cola_hf")
class ColaHFLM(HFLM):
    """HFLM whose decoder layers run as a chain: fixed, or searched per sample (oracle)."""

    default_searcher: ClassVar[str | None] = None

    def __init__(
        self,
        pretrained: Any = None,
        chain: Any = None,
        max_chain_length: int | None = None,
        searcher: Any = _UNSET,
        seed: int = 1234,
        oracle_metric: str | None = None,
        oracle_filter: str | None = None,
        records: str | None = None,
        keep_correct: int = 5,
        include_path: str | None = None,
        fast: bool = True,
        prefix_cache_bytes: int = DEFAULT_CACHE_BYTES,
        search_batch: int = DEFAULT_SEARCH_BATCH,
        **kwargs: Any,
    ) -> None:
        searcher_name, settings, kwargs = self._split_searcher_args(searcher, kwargs)
        if pretrained is None:
            model = default_model()
            logger.info("no pretrained= given: using the embedded default model %s (%s)",
                        model.name, model.gguf_path)
            load = prepare_default_model(model)
            pretrained = load["pretrained"]
            if "gguf_file" in load:
                kwargs.setdefault("gguf_file", load["gguf_file"])
            self.pretrained_label = model.name
            self.load_args = {}  # verify loads the embedded default model again
        else:
            self.pretrained_label = str(getattr(pretrained, "name_or_path", pretrained))
            self.load_args = {"pretrained": self.pretrained_label}
            self.load_args.update({k: kwargs[k] for k in ("gguf_file", "revision") if k in kwargs})
        if "dtype" in kwargs:
            self.load_args["dtype"] = str(kwargs["dtype"])
        kwargs.setdefault("device", "cpu" if not _cuda_available() else "cuda")
        try:
            super().__init__(pretrained=pretrained, **kwargs)
        except TypeError as err:  # a misspelt model_arg reaches the model's constructor
            _unknown_model_arg(err, kwargs, searcher_name)
            raise
        self._adopt_cpu_ranks()
        self.num_layers = find_layers(self.model).num_layers
        self.max_chain_length = int(max_chain_length or 2 * self.num_layers)
        self.chain: Chain = parse_chain(chain, self.num_layers, self.max_chain_length)
        self.searcher_name = searcher_name
        self.searcher = None
        if searcher_name is not None:
            settings.setdefault("max_len", self.max_chain_length)
            try:
                self.searcher = get_searcher(searcher_name, **settings)
            except ValueError as err:
                raise UserError(str(err)) from None
            if self.chain != tuple(range(self.num_layers)):
                raise UserError(
                    f"chain={format_chain(self.chain)!r} cannot be combined with "
                    f"searcher={searcher_name!r}; searches start from the full chain"
                )
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise UserError(f"bad seed {seed!r}; allowed: an integer")
        self.seed = seed
        self.oracle_metric = oracle_metric
        self.oracle_filter = oracle_filter
        self.records_path = records
        self.keep_correct = int(keep_correct)
        self.include_path = include_path
        self.fast = bool(fast)
        if not isinstance(prefix_cache_bytes, int) or prefix_cache_bytes < 0:
            raise UserError(f"bad prefix_cache_bytes {prefix_cache_bytes!r}; allowed: bytes >= 0")
        self.prefix_cache_bytes = prefix_cache_bytes
        if not isinstance(search_batch, int) or isinstance(search_batch, bool) or search_batch < 1:
            raise UserError(f"bad search_batch {search_batch!r}; allowed: an integer >= 1 "
                            "(samples searched side by side)")
        self.search_batch = search_batch
        self._tasks: dict[str, Any] = {}
        self._judges: dict[str, TaskJudge] = {}
        self._writer: RecordWriter | None = None
        # Fast generation: the generator of the sample being searched (read by
        # _model_generate), and whole prompts' caches kept across samples.
        self._generator: SampleGenerator | None = None
        self._prompt_cache = PromptCache(self.prefix_cache_bytes)
        self.summary = Summary(num_layers=self.num_layers)

    # ------------------------------------------------------------------ model args

    def _split_searcher_args(self, searcher, kwargs):
        """Pick the searcher's name and settings out of model_args."""
        # lm-eval's Python API parses "searcher=none" into None.
        name = self.default_searcher if searcher is _UNSET else str(searcher or "none")
        if name is not None and name not in SEARCHERS:
            raise UserError(f"unknown searcher {name!r}; allowed: {', '.join(searcher_names())}")
        settings: dict[str, Any] = {}
        if name is None:
            misplaced = sorted(set(kwargs) & _foreign_setting_names())
            if misplaced:
                raise UserError(
                    f"setting {misplaced[0]!r} needs a searcher; add searcher=<"
                    f"{'|'.join(searcher_names())}> or drop it"
                )
            return None, settings, kwargs
        own = _setting_names(name)
        defaults = {f.name: f.default for f in fields(SEARCHERS[name].Settings)}
        rest = {}
        for key, value in kwargs.items():
            if key in own:
                settings[key] = _coerce_setting(key, value, defaults[key])
            elif key in _foreign_setting_names():
                raise UserError(
                    f"setting {key!r} does not apply to searcher {name!r}; "
                    f"its settings: {', '.join(sorted(own))}"
                )
            else:
                rest[key] = value
        return name, settings, rest

    # ------------------------------------------------------------------ lm-eval hooks

    def attach_tasks(self, task_dict: Any) -> None:
        """Called by the evaluator hook with lm-eval's task objects before requests run."""
        self._tasks.update(flatten_tasks(task_dict))

    def _task(self, name: str) -> Any:
        if name not in self._tasks:
            # Not run through lm-eval's evaluator: load the task ourselves.
            from lm_eval.tasks import get_task_dict

            manager = task_manager(self.include_path)
            self._tasks.update(flatten_tasks(get_task_dict([name], manager)))
        if name not in self._tasks:
            raise UserError(f"task {name!r} not found; custom tasks need include_path=<dir>")
        return self._tasks[name]

    def _judge(self, task_name: str) -> TaskJudge:
        if task_name not in self._judges:
            self._judges[task_name] = TaskJudge(
                self._task(task_name), self.oracle_metric, self.oracle_filter
            )
        return self._judges[task_name]

    # ------------------------------------------------------------------ requests

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        if self.searcher is None:
            with chain_applied(self.model, self.chain):
                return super().loglikelihood(requests, disable_tqdm=disable_tqdm)
        return self._search_all(requests, "loglikelihood", disable_tqdm)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        if self.searcher is not None:
            names = sorted({r.task_name for r in requests})
            raise OracleError(
                f"task {names[0]!r} is a perplexity task with no gold answer; oracle search "
                "needs a task with a gold (multiple_choice, loglikelihood or generate_until)"
            )
        with chain_applied(self.model, self.chain):
            return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)

    def generate_until(self, requests, disable_tqdm: bool = False):
        if self.searcher is None:
            with chain_applied(self.model, self.chain):
                return super().generate_until(requests, disable_tqdm=disable_tqdm)
        return self._search_all(requests, "generate_until", disable_tqdm)

    # ------------------------------------------------------------------ search

    def _run_chain(self, kind: str, requests: list, chain: Chain) -> list:
        """Raw responses of ``requests`` (one doc's unique requests) under ``chain``."""
        with chain_applied(self.model, chain):
            if kind == "generate_until":
                return HFLM.generate_until(self, requests, disable_tqdm=True)
            saved = self.batch_size_per_gpu
            if isinstance(saved, int):  # all choices of a question in one batch
                self.batch_size_per_gpu = max(saved, min(len(requests), self.max_batch_size))
            try:
                return HFLM.loglikelihood(self, requests, disable_tqdm=True)
            finally:
                self.batch_size_per_gpu = saved

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Tokens of one loglikelihood request, exactly as lm-eval's TemplateLM makes them."""
        if context == "":
            continuation_enc = self.tok_encode(continuation, add_special_tokens=False)
            if self.prefix_token_id != continuation_enc[0]:
                return [self.prefix_token_id], continuation_enc
            return continuation_enc[:1], continuation_enc[1:]
        return self._encode_pair(context, continuation)

    def chain_runner(self, kind: str, requests: list, cache_bytes: int | None = None):
        """chain -> raw responses for one sample's requests: with fast=True the fast
        scorer (loglikelihood; a SampleScorer, which score_many can also batch with other
        samples' scorers) or lm-eval's generation path with fast greedy decoding plugged
        in (generate_until), else lm-eval's own path under the chain."""
        cache_bytes = self.prefix_cache_bytes if cache_bytes is None else cache_bytes
        if kind == "loglikelihood" and self.fast:
            sample = pack([self.encode_pair(*r.args) for r in requests], self.max_length)
            if SampleScorer.usable(self.model, sample):
                return SampleScorer(self.model, sample, self.device, cache_bytes)
        if kind == "generate_until" and self.fast and self.mixed_precision_dtype is None:
            generator = SampleGenerator(self.model, self.tokenizer, cache_bytes,
                                        self._prompt_cache)

            def generate(chain: Chain) -> list:
                generator.chain, self._generator = chain, generator
                try:
                    return self._run_chain(kind, requests, chain)
                finally:
                    self._generator = None

            return generate
        return functools.partial(self._run_chain, kind, requests)

    def _model_generate(self, context, max_length: int, stop: list[str], **generation_kwargs):
        # During a search, lm-eval's generate_until calls this with the tokens it
        # prepared; fast greedy decoding answers when it gives exactly what generate would.
        generator = self._generator
        if generator is not None and generator.usable(context, max_length, generation_kwargs):
            return generator.generate(context, max_length, stop)
        return super()._model_generate(context, max_length, stop, **generation_kwargs)

    def _search_all(self, requests: list, kind: str, disable_tqdm: bool) -> list:
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for position, request in enumerate(requests):
            groups[(request.task_name, request.doc_id)].append(position)
        done = self._resume_records()
        # Keys already in the summary: a sample counts once, even if lm-eval's padding of
        # ranks or a second request type brings it back.
        summarized: set = self.__dict__.setdefault("_summarized", set())
        records: dict[tuple[str, int], dict] = {}
        todo: list[tuple[str, int, list]] = []
        uniques: dict[tuple[str, int], list] = {}  # each sample's distinct requests
        for (task_name, doc_id), positions in groups.items():
            unique = list({id(requests[p]): requests[p] for p in positions}.values())
            uniques[(task_name, doc_id)] = unique
            record = done.get((task_name, doc_id))
            if record is not None and not _same_sample(record, unique):
                logger.warning("%s doc %d changed since its record was written (doc or "
                               "requests differ): searching it again; the new record "
                               "supersedes the old", task_name, doc_id)
                record = None
            if record is None:
                todo.append((task_name, doc_id, unique))
                continue
            records[(task_name, doc_id)] = record
            if (task_name, doc_id) not in summarized:
                self.summary.add(record)
        bar = tqdm(total=len(groups), initial=len(records), unit="sample",
                   desc=f"oracle search ({self.searcher_name})",
                   disable=disable_tqdm or self.rank != 0)

        def finished(record: dict) -> None:
            records[sample_key(record)] = record
            bar.update(1)
            bar.set_postfix_str(self.summary.progress_line(), refresh=False)

        self._search_samples(kind, todo, finished)
        bar.close()
        summarized.update(groups)
        self._gather_ranks([records[key] for key in groups], summarized)
        results: list[Any] = [None] * len(requests)
        for key, positions in groups.items():
            responses = {id(r): _restore(kind, resp)
                         for r, resp in zip(uniques[key], records[key]["responses"], strict=True)}
            for p in positions:
                results[p] = responses[id(requests[p])]
        for request, result in zip(requests, results, strict=True):
            self.cache_hook.add_partial(kind, request.args, result)
        return results

    def _search_samples(self, kind: str, todo: list[tuple[str, int, list]],
                        finished: Any = None) -> list[dict]:
        """Search each (task, doc_id, requests) sample, writing its record as it finishes.
        Loglikelihood samples with fast=True are searched ``search_batch`` side by side, so
        their chain evaluations run as one batch (fast.score_many); the rest one at a time."""
        width = self.search_batch if kind == "loglikelihood" and self.fast else 1
        # prefix_cache_bytes bounds all samples in flight together.
        cache_bytes = self.prefix_cache_bytes // width
        records: list[dict] = []

        def factory(task_name: str, doc_id: int, unique: list):
            # Here, not in a search thread: loading a task, and failing early on no gold.
            self._judge(task_name).check_gold(unique[0].doc)
            run = self.chain_runner(kind, unique, cache_bytes)
            cost = _Cost()

            def evaluate(submit, chain: Chain) -> list:
                # A scorer's evaluations batch (score_many); any other is a call that
                # the calling thread makes.
                job = (_Evaluation(cost, scorer=run, chain=chain) if isinstance(run, SampleScorer)
                       else _Evaluation(cost, call=functools.partial(run, chain)))
                started = time.perf_counter()
                try:
                    return submit(job)
                finally:
                    cost.waiting += time.perf_counter() - started

            def search(submit) -> dict:
                record = self._search_sample(kind, task_name, doc_id, unique,
                                             functools.partial(evaluate, submit))
                # Side by side, a sample's wall time overlaps the others': count its own
                # work (searching, judging) and its share of each batch it was in.
                record["seconds"] = round(max(record["seconds"] - cost.waiting, 0.0)
                                          + cost.evaluating, 4)
                return record

            return search

        def done(index: int, record: dict) -> None:
            self._records_writer().write(record)
            self.summary.add(record)
            records.append(record)
            if finished is not None:
                finished(record)

        run_in_lockstep([functools.partial(factory, *item) for item in todo],
                        self._evaluate_many, done, width)
        return records

    def _evaluate_many(self, jobs: list[_Evaluation]) -> list:
        """Answers to the waiting evaluations: every scorer's in one batch."""
        answers: list[Any] = [None] * len(jobs)
        batched = [k for k, job in enumerate(jobs) if job.scorer is not None]
        if batched:
            started = time.perf_counter()
            scores = score_many(self.model, [(jobs[k].scorer, jobs[k].chain) for k in batched])
            share = (time.perf_counter() - started) / len(batched)
            for k, answer in zip(batched, scores, strict=True):
                answers[k] = answer
                jobs[k].cost.evaluating += share
        for k, job in enumerate(jobs):
            if job.call is not None:
                started = time.perf_counter()
                answers[k] = job.call()
                job.cost.evaluating += time.perf_counter() - started
        return answers

    def _adopt_cpu_ranks(self) -> None:
        """HFLM turns data parallel on only with several GPUs; launched over N CPU processes
        (accelerate launch / torchrun, gloo) every process would run the whole eval and
        write the same records. Take the launcher's ranks so each searches its share."""
        import os

        accelerator = getattr(self, "accelerator", None)
        launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if accelerator is None and launched > 1 and self.device.type == "cpu":
            raise UserError(
                f"launched as {launched} processes (WORLD_SIZE={launched}) but accelerate does "
                "not split them on CPU, so each would search every sample into the same "
                "records; set ACCELERATE_USE_CPU=true (allowed: that, or one process)"
            )
        if (accelerator is None or self._world_size != 1 or accelerator.num_processes <= 1
                or accelerator.device.type != "cpu"):
            return
        self._rank = accelerator.process_index
        self._world_size = accelerator.num_processes

    def _gather_ranks(self, searched: list[dict], summarized: set) -> None:
        """With data parallel ranks, add every other rank's samples of this call to this
        rank's summary (each sample once), so rank 0's get_model_info counts them all.
        Every rank calls this once per request type, as lm-eval pads ranks to equal work."""
        if self.world_size <= 1:
            return
        import torch.distributed as dist

        light = [{k: r[k] for k in _SUMMARY_FIELDS} for r in searched]
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, light)
        for part in parts:
            for record in part:
                key = sample_key(record)
                if key not in summarized:
                    summarized.add(key)
                    self.summary.add(record)

    def _search_sample(self, kind: str, task_name: str, doc_id: int, unique: list,
                       run: Any) -> dict:
        """One sample's search and its record (not yet written); ``run`` maps a chain to
        the raw responses of the sample's requests. The caller has checked the gold."""
        judge = self._judge(task_name)
        doc = unique[0].doc
        memo: dict[Chain, list] = {}

        def evaluate(chain: Chain) -> Outcome:
            memo[chain] = run(chain)
            verdict = judge.judge(doc, memo[chain])
            return Outcome(correct=verdict.correct, score=verdict.score)

        seed = sample_seed(self.seed, task_name, doc_id)
        started = time.perf_counter()
        evaluator = self.searcher.make_evaluator(evaluate, self.num_layers)
        result = self.searcher.search(evaluator, seed=seed, keep_correct=self.keep_correct)
        seconds = time.perf_counter() - started
        best = result.best_chain
        record = {
            "task": task_name,
            "doc_id": doc_id,
            "doc_hash": doc_hash(doc),
            "model": self.pretrained_label,
            "searcher": self.searcher_name,
            "settings": _jsonable(self.searcher.settings),
            "oracle_metric": judge.metric,
            "oracle_filter": judge.filter_name,
            "seed": seed,
            "num_layers": self.num_layers,
            "full_correct": result.full_correct,
            "best_chain": format_chain(best),
            "best_length": len(best),
            "best_correct": result.best_outcome.correct,
            "best_score": result.best_outcome.score,
            "evaluations": result.evaluations,
            "stopped_early": result.stopped_early,
            "seconds": round(seconds, 4),
            "correct_chains": [format_chain(c) for c in result.correct_chains],
            "responses": [_jsonable(r) for r in memo[best]],
            "request_type": kind,
            "requests": [_jsonable(list(r.args)) for r in unique],
            "load_args": self.load_args,
            "version": __version__,
        }
        return record

    # ------------------------------------------------------------------ records

    def records_file(self, rank: int | None = None) -> Path | None:
        """This rank's records file (or ``rank``'s). With several data parallel ranks each
        writes its own ``..._rank{r}.jsonl``, also under an explicit ``records=`` path."""
        rank = self.rank if rank is None else rank
        suffix = f"_rank{rank}" if self.world_size > 1 else ""
        if self.records_path:
            path = Path(self.records_path)
            return path.with_name(f"{path.stem}{suffix}{path.suffix}") if suffix else path
        folder = hooks.output_folder()
        if folder is None:
            return None
        label = f"{self.searcher_name}_{self.config_hash()}{suffix}"
        return Path(folder) / f"cola-records_{label}.jsonl"

    def config_hash(self) -> str:
        """Identifies what a record depends on, so a resume never mixes configurations."""
        identity = {
            "model": self.pretrained_label,
            "dtype": str(self._model.dtype),
            "searcher": self.searcher_name,
            "settings": _jsonable(self.searcher.settings) if self.searcher else None,
            "seed": self.seed,
            "oracle_metric": self.oracle_metric,
            "oracle_filter": self.oracle_filter,
            "max_chain_length": self.max_chain_length,
        }
        text = json.dumps(identity, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def _resume_records(self) -> dict[tuple[str, int], dict]:
        path = self.records_file()
        if path is None or not path.exists():
            return {}
        records = read_records(path, repair=True)
        if records:
            logger.info("resuming: %d finished samples in %s", len(records), path)
        return {sample_key(r): r for r in records}

    def _records_writer(self) -> RecordWriter:
        if self._writer is None:
            path = self.records_file()
            if path is None:
                self._writer = _NullWriter()
                logger.warning("no --output_path and no records=: per-sample records are not kept")
            else:
                self._writer = RecordWriter(path)
                logger.info("writing per-sample records to %s", path)
        return self._writer

    # ------------------------------------------------------------------ run facts

    def get_model_info(self) -> dict:
        info = super().get_model_info()
        info.update({
            "cola_version": __version__,
            "cola_model": self.pretrained_label,
            "cola_num_layers": self.num_layers,
            "cola_chain": format_chain(self.chain),
            "cola_chain_length": len(self.chain),
            "cola_depth_ratio": round(len(self.chain) / self.num_layers, 4),
        })
        if self.searcher is not None:
            info["cola_searcher"] = self.searcher_name
            info["cola_oracle"] = True
            info["cola_settings"] = _jsonable(self.searcher.settings)
            info["cola_seed"] = self.seed
            info["cola_records"] = str(self.records_file()) if self.records_file() else None
            if self.world_size > 1 and self.records_file() is not None:
                # get_model_info runs on rank 0 only: name every rank's file.
                info["cola_records_files"] = [str(self.records_file(rank))
                                              for rank in range(self.world_size)]
            info["cola_summary"] = self.summary.as_dict()
        return info


@register_model("cola_mcts")
class ColaMCTS(ColaHFLM):
    default_searcher = "mcts"


@register_model("cola_greedy")
class ColaGreedy(ColaHFLM):
    default_searcher = "greedy"


@register_model("cola_random")
class ColaRandom(ColaHFLM):
    default_searcher = "random"


@dataclass
class _Cost:
    """Seconds one sample's search spent waiting on evaluations, and its share of them."""

    waiting: float = 0.0
    evaluating: float = 0.0


@dataclass
class _Evaluation:
    """One chain evaluation a search waits on: a scorer's (batched) or a call."""

    cost: _Cost
    scorer: SampleScorer | None = None
    chain: Chain = ()
    call: Any = None


class _NullWriter:
    def write(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


def _unknown_model_arg(err: TypeError, kwargs: dict, searcher: str | None) -> None:
    """Raise a one-line UserError when ``err`` is a model_arg that nothing accepted."""
    import difflib
    import re

    found = re.search(r"unexpected keyword argument '(\w+)'", str(err))
    if found is None or found.group(1) not in kwargs:
        return
    name = found.group(1)
    known = sorted(set(COLA_ARGS) | (_setting_names(searcher) if searcher else set()))
    close = difflib.get_close_matches(name, known, n=1)
    raise UserError(
        f"unknown model argument {name!r}{f' (did you mean {close[0]!r}?)' if close else ''}; "
        f"allowed: {', '.join(known)}, or lm-eval's hf model arguments"
    ) from None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def _same_sample(record: dict, requests: list) -> bool:
    """Whether a stored record answers these requests (same doc, same request texts)."""
    return (record.get("doc_hash") == doc_hash(requests[0].doc)
            and record.get("requests") == [_jsonable(list(r.args)) for r in requests])


def _restore(kind: str, response: Any) -> Any:
    # JSON turns (loglikelihood, is_greedy) tuples into lists; lm-eval expects tuples.
    if kind == "loglikelihood" and isinstance(response, list):
        return (float(response[0]), bool(response[1]))
    return response
