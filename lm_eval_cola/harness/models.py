"""The lm-eval models: ``cola_hf`` (a fixed chain, or any searcher by name) and
``cola_mcts`` / ``cola_greedy`` / ``cola_random`` (``cola_hf`` with that searcher, so each
shows as its own model in lm-eval's outputs).

A thin adapter over lm-eval's ``HFLM``, in the manner of lm-eval's ``hf_steered``: a
fixed chain runs HFLM's own request methods inside ``engine.apply.chain_applied``; with a
searcher, requests are grouped into samples by (task, doc_id) and handed to
``search.OracleSearch``, whose records give each request its answer. Our settings are
parsed once into a ``config.ColaConfig``; running requests under chains is
``runner.ChainRunner``'s job. What belongs to one lm-eval evaluation call (its search and
summary, ``--samples`` ids, ``--seed``, the chains for ``--log_samples``) starts fresh with
each call (``evaluation_call.EvaluationCall``), so a model object can be reused.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from lm_eval_cola import __version__
from lm_eval_cola.chains.files import provenance
from lm_eval_cola.chains.syntax import format_chain
from lm_eval_cola.compat import hooks
from lm_eval_cola.compat.lm_eval_private import (
    hf_model_generate,
    override_model_generate,
    set_data_parallel,
)
from lm_eval_cola.engine.apply import chain_applied, find_layers
from lm_eval_cola.engine.runner import ChainRunner
from lm_eval_cola.errors import UserError, install_excepthook
from lm_eval_cola.harness.config import ColaConfig, search_seed, unknown_model_arg
from lm_eval_cola.harness.evaluation_call import ChosenChain, EvaluationCall
from lm_eval_cola.harness.ranks import launch_ranks
from lm_eval_cola.results.identity import EvalIdentity
from lm_eval_cola.search.driver import OracleSearch, RunFacts, Sample, jsonable, records_path
from lm_eval_cola.search.judge import OracleError, TaskJudges

logger = logging.getLogger(__name__)
install_excepthook()
_HFLM_PARAMS = set(inspect.signature(HFLM.__init__).parameters)


@register_model("cola_hf")
class ColaHFLM(HFLM):
    """HFLM whose decoder layers run as a chain: fixed, or searched per sample (oracle)."""

    default_searcher: ClassVar[str | None] = None

    def __init__(self, pretrained: Any = None, **model_args: Any) -> None:
        self.cola, kwargs = ColaConfig.from_model_args(model_args, self.default_searcher,
                                                         _HFLM_PARAMS)
        pretrained, kwargs = self._choose_model(pretrained, kwargs)
        kwargs.setdefault("device", "cuda" if torch.cuda.is_available() else "cpu")
        try:
            super().__init__(pretrained=pretrained, **kwargs)
        except TypeError as err:  # a misspelt model_arg reaches the model's constructor
            found = re.search(r"unexpected keyword argument '(\w+)'", str(err))
            if found is not None and found.group(1) in kwargs:
                raise unknown_model_arg(found.group(1), self.cola.searcher) from None
            raise
        except OSError as err:  # transformers' "not a folder, not a Hub id it can reach"
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"cannot load pretrained={self.model_label!r} ({first}); allowed: "
                            "a local model folder or a Hub id in the local cache") from None
        self._adopt_launch_ranks()
        self.num_layers = find_layers(self.model).num_layers
        self.chain, self.max_chain_length = self.cola.resolve(self.num_layers)
        self.searcher = (self.cola.make_searcher(self.max_chain_length)
                         if self.cola.searcher else None)
        self.runner = ChainRunner(self, self.cola.fast, self.cola.prefix_cache_bytes)
        self.judges = TaskJudges(self.cola.oracle_metric, self.cola.oracle_filter,
                                 self.cola.include_path)
        self.call = EvaluationCall()
        # lm-eval's prompt and decoding settings (attach_evaluation); default: plain prompts
        self.evaluation = EvalIdentity()
        self._search: OracleSearch | None = None

    def _choose_model(self, pretrained: Any, kwargs: dict) -> tuple[Any, dict]:
        """The model to load, its display name and how verify reloads it."""
        if pretrained is None:
            from lm_eval_cola.harness.default_model import default_model, prepare

            model = default_model()
            logger.info("no pretrained= given: using the embedded default model %s (%s)",
                        model.name, model.gguf_path)
            load = prepare(model)
            pretrained = load["pretrained"]
            if "gguf_file" in load:
                kwargs.setdefault("gguf_file", load["gguf_file"])
            self.model_label, self.load_args = model.name, {}
        else:
            self.model_label = str(getattr(pretrained, "name_or_path", pretrained))
            if (isinstance(pretrained, str) and pretrained.startswith(("/", ".", "~"))
                    and not Path(pretrained).expanduser().exists()):  # a path, not a Hub id
                raise UserError(f"pretrained={pretrained!r} does not exist; allowed: a local "
                                "model folder or a Hub id in the local cache")
            self.load_args = {"pretrained": self.model_label}
            self.load_args.update({k: kwargs[k] for k in ("gguf_file", "revision") if k in kwargs})
        if "dtype" in kwargs:
            self.load_args["dtype"] = str(kwargs["dtype"])
        return pretrained, kwargs

    def _adopt_launch_ranks(self) -> None:
        """HFLM turns data parallel on only with several visible GPUs and numbers ranks by
        the node-local index: one GPU per process, CPU processes (gloo) and several nodes
        would search samples twice into colliding records files. Take the launch's global
        rank and world size (``ranks.launch_ranks``) so each rank searches its share."""
        accelerator = getattr(self, "accelerator", None)
        launched = launch_ranks(accelerator)
        if accelerator is None and launched.world_size > 1 and self.device.type == "cpu":
            raise UserError(
                f"launched as {launched.world_size} processes (WORLD_SIZE="
                f"{launched.world_size}) but accelerate does not split them on CPU, so each "
                "would search every sample into the same records; set ACCELERATE_USE_CPU=true "
                "(allowed: that, or one process)")
        if accelerator is None or launched.world_size <= 1:
            return  # one process, or no accelerate to gather through (tp_plan: all ranks alike)
        if (self.rank, self.world_size) != (launched.rank, launched.world_size):
            logger.info("data parallel rank %d of %d (from %s)", launched.rank,
                        launched.world_size, launched.source)
            set_data_parallel(self, launched.rank, launched.world_size)

    # ------------------------------------------------------------------ lm-eval's face

    def start_evaluation(self, samples: Any = None, run_seed: int | None = None) -> None:
        """Called by the evaluator hook as each lm-eval evaluation starts: nothing of an
        earlier call (its search, summary, task objects, chosen chains) carries over."""
        self.call = EvaluationCall.start(samples, run_seed)
        self._search = None
        self.judges = TaskJudges(self.cola.oracle_metric, self.cola.oracle_filter,
                                 self.cola.include_path)

    def attach_evaluation(self, settings: Mapping[str, Any]) -> None:
        """Called by the evaluator hook as each evaluation starts, with lm-eval's prompt and
        decoding settings (chat template, system instruction, few-shot, gen_kwargs,
        --samples): part of the run's identity, so they name its records file."""
        applied = settings.get("apply_chat_template")
        # the template lm-eval applies and stores (its sha) in the results: lm.chat_template
        template = (self.chat_template(applied) or "") if applied else None
        evaluation = EvalIdentity.make(
            chat_template=template, system_instruction=settings.get("system_instruction"),
            fewshot_as_multiturn=bool(settings.get("fewshot_as_multiturn")),
            num_fewshot=settings.get("num_fewshot"), gen_kwargs=settings.get("gen_kwargs"),
            samples=settings.get("samples") or None)
        if evaluation != self.evaluation:
            self._search = None  # another records file
        self.evaluation = evaluation

    def attach_tasks(self, task_dict: Any) -> None:
        """Called by the evaluator hook with lm-eval's task objects before requests run;
        a searching model checks its oracle metric and filter against them now."""
        self.judges.attach(task_dict, check=self.searcher is not None)

    def finish_evaluation(self, results: dict | None, log_samples: bool) -> None:
        """Called by the evaluator hook on every rank as the evaluation ends: each of
        lm-eval's logged samples gets the chain that answered it."""
        if not log_samples:
            return
        fixed = None if self.searcher is not None else self.fixed_chain()
        if fixed is None and self.world_size > 1:  # rank 0 logs every rank's samples
            parts = self.gather_object(self.call.chosen)
            if parts is not None:
                self.call.chosen = {k: v for part in parts for k, v in part.items()}
        if results is not None and isinstance(results.get("samples"), dict):
            self.call.annotate(results["samples"], fixed)

    def fixed_chain(self) -> ChosenChain | None:
        """The chain every sample runs under (None where each sample has its own)."""
        return ChosenChain(format_chain(self.chain), len(self.chain), oracle=False)

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        if self.searcher is None:
            with chain_applied(self.model, self.chain):
                return super().loglikelihood(requests, disable_tqdm=disable_tqdm)
        return self._answer_by_search("loglikelihood", requests, disable_tqdm)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        if self.searcher is not None:
            names = sorted({r.task_name for r in requests})
            raise OracleError(
                f"task {names[0]!r} is a perplexity task with no gold answer; oracle search "
                "needs a task with a gold (multiple_choice, loglikelihood or generate_until)")
        with chain_applied(self.model, self.chain):
            return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)

    def generate_until(self, requests, disable_tqdm: bool = False):
        if self.searcher is None:
            with chain_applied(self.model, self.chain):
                return super().generate_until(requests, disable_tqdm=disable_tqdm)
        return self._answer_by_search("generate_until", requests, disable_tqdm)

    def decode(self, context, max_length: int, stop: list[str], **generation_kwargs):
        """HFLM's decoding step (lm-eval's generate_until calls it with the tokens it
        prepared): a search's fast decoder answers while one is active (see
        runner.ChainRunner.decoding), else lm-eval's own step."""
        return self.runner.model_generate(context, max_length, stop, generation_kwargs,
                                          functools.partial(hf_model_generate, self))

    def _answer_by_search(self, kind: str, requests: list, disable_tqdm: bool) -> list:
        samples: dict[tuple[str, int], Sample] = {}
        for request in requests:
            # lm-eval's own document id (with --samples, doc_id is the place among them)
            key = (request.task_name, self.call.doc_id(request.task_name, request.doc_id))
            sample = samples.setdefault(key, Sample(key[0], key[1], []))
            if all(r is not request for r in sample.requests):
                sample.requests.append(request)
        records = self.oracle_search().search(kind, list(samples.values()),
                                              progress=not disable_tqdm)
        answers: dict[int, Any] = {}
        for key, sample in samples.items():
            record = records[key]
            self.call.chosen[key] = ChosenChain(record.best_chain, record.best_length,
                                                record.oracle)
            for request, response in zip(sample.requests, record.responses, strict=True):
                answers[id(request)] = _restore(kind, response)
        results = [answers[id(r)] for r in requests]
        for request, result in zip(requests, results, strict=True):
            self.cache_hook.add_partial(kind, request.args, result)
        return results

    # ------------------------------------------------------------------ search and records

    def oracle_search(self) -> OracleSearch:
        """The run's search driver (made on first use: the records file's folder is only
        known once lm-eval's tracker exists)."""
        if self._search is None:
            if self.searcher is None:
                raise UserError("no searcher: add searcher=<mcts|greedy|random|none>")
            logger.info("search seed %d (from %s)", *self.search_seed())
            self._search = OracleSearch(self.runner, self.judges, self.run_facts(),
                                        self.cola.search_batch, self.records_file(),
                                        self.rank, self.world_size)
        return self._search

    def search_seed(self) -> tuple[int, str]:
        """(this evaluation's search seed, where it came from: seed=, --seed or default)."""
        return search_seed(self.cola.seed, self.call.run_seed)

    def run_facts(self) -> RunFacts:
        assert self.searcher is not None
        return RunFacts(model=self.model_label, load_args=self.load_args,
                        num_layers=self.num_layers, searcher=self.searcher,
                        seed=self.search_seed()[0], keep_correct=self.cola.keep_correct,
                        dtype=str(self.model.dtype), oracle_metric=self.cola.oracle_metric,
                        oracle_filter=self.cola.oracle_filter,
                        max_chain_length=self.max_chain_length, control=self.cola.control,
                        record_chains=self.cola.record_chains, evaluation=self.evaluation)

    def records_file(self, rank: int | None = None) -> Path | None:
        """This rank's records file (or ``rank``'s); None when there is nowhere to keep it."""
        if self.searcher is None:
            return None
        return records_path(self.cola.records, hooks.output_folder(), self.searcher.name,
                            self.run_facts().config_hash(),
                            self.rank if rank is None else rank, self.world_size)

    def get_model_info(self) -> dict:
        info = super().get_model_info()
        info.update({
            "cola_version": __version__,
            "cola_model": self.model_label,
            "cola_num_layers": self.num_layers,
            "cola_chain": format_chain(self.chain),
            "cola_chain_length": len(self.chain),
            "cola_depth_ratio": round(len(self.chain) / self.num_layers, 4),
            "cola_oracle": self.cola.oracle,
        })
        source = provenance(self.cola.chain)
        if source:
            info["cola_chain_source"] = source
        if self.searcher is not None:
            search = self.oracle_search()
            seed, source = self.search_seed()
            info.update(cola_searcher=self.searcher.name, cola_control=self.cola.control,
                        cola_settings=jsonable(self.searcher.settings), cola_seed=seed,
                        cola_seed_source=source)
            info["cola_records"] = str(search.records_file) if search.records_file else None
            if self.world_size > 1 and search.records_file is not None:
                # get_model_info runs on rank 0 only: name every rank's file.
                info["cola_records_files"] = [str(self.records_file(rank))
                                              for rank in range(self.world_size)]
            info["cola_summary"] = search.summary.as_dict()
            if self.cola.share_prompts:  # tokens may then differ at float rounding
                info["cola_share_prompts"] = True
        return info


override_model_generate(ColaHFLM, "decode")


@register_model("cola_mcts")
class ColaMCTS(ColaHFLM):
    default_searcher = "mcts"


@register_model("cola_greedy")
class ColaGreedy(ColaHFLM):
    default_searcher = "greedy"


@register_model("cola_random")
class ColaRandom(ColaHFLM):
    default_searcher = "random"


@register_model("cola_router")
class ColaRouter(ColaHFLM):
    """A learned router (``router=FILE`` from ``train-router``) picks each sample's chain
    from its prompt's hidden states (``features.py``): deployable, never reads the gold.
    Samples are the requests grouped by (task, doc_id); each is answered under its chain
    by the chain runner (the fast batched scorer where it applies)."""

    def __init__(self, pretrained: Any = None, **model_args: Any) -> None:
        from lm_eval_cola.harness.router import Router, RouterFile

        if not model_args.get("router"):
            raise UserError("cola_router needs router=FILE (written by lm-eval-cola "
                            "train-router)")
        super().__init__(pretrained, **model_args)
        spec = RouterFile.read(str(self.cola.router))
        if spec.num_layers != self.num_layers:
            raise UserError(f"router {self.cola.router} was trained for a {spec.num_layers}-"
                            f"layer model; this model has {self.num_layers} layers")
        config = getattr(self.model.config, "text_config", None) or self.model.config
        if spec.hidden_size != getattr(config, "hidden_size", spec.hidden_size):
            raise UserError(f"router {self.cola.router} was trained on hidden size "
                            f"{spec.hidden_size}; this model's is {config.hidden_size}")
        self.router = Router(spec)
        self._reset_counts()

    def _reset_counts(self) -> None:
        self.picks: dict[str, int] = {}  # chain text -> samples routed to it
        self.chain_layers = 0  # the routed chains' lengths, summed over samples
        self.executed_layers = 0

    def start_evaluation(self, samples: Any = None, run_seed: int | None = None) -> None:
        super().start_evaluation(samples, run_seed)
        self._reset_counts()

    def fixed_chain(self) -> ChosenChain | None:
        return None  # each sample its routed chain

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return self._answer_routed("loglikelihood", requests, disable_tqdm)

    def generate_until(self, requests, disable_tqdm: bool = False):
        return self._answer_routed("generate_until", requests, disable_tqdm)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        names = sorted({r.task_name for r in requests})
        raise UserError(f"task {names[0]!r} is a perplexity task: a whole text, no prompt "
                        "to route; cola_router allows multiple_choice, loglikelihood and "
                        "generate_until tasks")

    def _answer_routed(self, kind: str, requests: list, disable_tqdm: bool) -> list:
        from tqdm import tqdm

        from lm_eval_cola.engine.features import hidden_features, prompt_tokens
        from lm_eval_cola.engine.runner import evaluate_many
        from lm_eval_cola.harness.router import executed_length

        groups: dict[tuple[str, int], list] = {}
        for request in requests:
            key = (request.task_name, self.call.doc_id(request.task_name, request.doc_id))
            group = groups.setdefault(key, [])
            if all(r.args != request.args for r in group):
                group.append(request)
        spec = self.router.spec
        share = max(self.cola.prefix_cache_bytes // max(len(groups), 1), 1 << 20)
        asks = []
        for key, group in tqdm(groups.items(), desc="routing", unit="sample",
                               disable=disable_tqdm):
            features = hidden_features(self, prompt_tokens(self, group), spec.feature_layers)
            chain = self.router.chains[self.router.pick(features)[0]]
            text = format_chain(chain)
            self.call.chosen[key] = ChosenChain(text, len(chain), oracle=False)
            self.picks[text] = self.picks.get(text, 0) + 1
            self.chain_layers += len(chain)
            self.executed_layers += executed_length(chain, spec.feature_layers)
            asks.append((self.runner.evaluator(kind, group, share), chain, group))
        asks.sort(key=lambda ask: ask[1])  # one chain's samples share batched forwards
        answers: dict[int, list] = {}  # id(group) -> its responses
        for start in range(0, len(asks), self.cola.search_batch):
            part = asks[start:start + self.cola.search_batch]
            done = evaluate_many(self.model, [(e, c) for e, c, _ in part])
            for (_, _, group), responses in zip(part, done, strict=True):
                answers[id(group)] = [_restore(kind, r) for r in responses]
        results = []
        for request in requests:
            group = groups[(request.task_name,
                            self.call.doc_id(request.task_name, request.doc_id))]
            at = next(j for j, r in enumerate(group) if r.args == request.args)
            results.append(answers[id(group)][at])
        for request, result in zip(requests, results, strict=True):
            self.cache_hook.add_partial(kind, request.args, result)
        return results

    def get_model_info(self) -> dict:
        info = super().get_model_info()
        samples = sum(self.picks.values())
        lengths = self.chain_layers
        info.update({
            "cola_chain": "router", "cola_router": str(self.cola.router),
            "cola_router_picks": dict(sorted(self.picks.items(), key=lambda kv: -kv[1])),
            "cola_chain_length": round(lengths / samples, 4) if samples else None,
            "cola_depth_ratio": round(lengths / samples / self.num_layers, 4)
            if samples else None,
            "cola_executed_depth_ratio": round(self.executed_layers / samples
                                               / self.num_layers, 4) if samples else None,
        })
        return info


def _restore(kind: str, response: Any) -> Any:
    # JSON turns (loglikelihood, is_greedy) tuples into lists; lm-eval expects tuples.
    if kind == "loglikelihood" and isinstance(response, list):
        return (float(response[0]), bool(response[1]))
    return response
