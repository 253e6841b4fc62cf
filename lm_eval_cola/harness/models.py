"""The lm-eval models: ``cola_hf`` (a fixed chain, or any searcher by name),
``cola_mcts`` / ``cola_greedy`` / ``cola_random`` (``cola_hf`` with that searcher, so each
shows as its own model in lm-eval's outputs) and ``cola_router`` (a learned router).

A thin adapter over lm-eval's ``HFLM``, in the manner of lm-eval's ``hf_steered``: a
fixed chain runs HFLM's own request methods inside ``engine.apply.chain_applied``; with a
searcher or a router, requests are grouped into samples by (task, doc_id) and each sample
answered under its chain (``requests.answer_requests``): by ``search.OracleSearch``'s
records, or by the router's pick. Our settings are parsed once into a
``config.ColaConfig``; running requests under chains is ``runner.ChainRunner``'s job, and
a runner decoding generation installs its own hook on the model (``decode_hook``, read by
``decode``). What belongs to one lm-eval evaluation call (its search and summary,
``--samples`` ids, ``--seed``, the chains for ``--log_samples``) starts fresh with each
call (``evaluation_call.EvaluationCall``), so a model object can be reused.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm

from lm_eval_cola.chains.syntax import format_chain
from lm_eval_cola.compat.lm_eval_private import hf_model_generate, override_model_generate
from lm_eval_cola.engine.apply import chain_applied, find_layers
from lm_eval_cola.engine.runner import ChainRunner, Hook
from lm_eval_cola.errors import UserError, install_excepthook
from lm_eval_cola.harness import run_info
from lm_eval_cola.harness.config import ColaConfig, search_seed, unknown_model_arg
from lm_eval_cola.harness.evaluation_call import ChosenChain, EvaluationCall, evaluation_identity
from lm_eval_cola.harness.loading import choose_model, load_errors
from lm_eval_cola.harness.ranks import adopt_launch_ranks
from lm_eval_cola.harness.requests import answer_requests, evaluate_in_batches
from lm_eval_cola.harness.router import Router, RoutingTally
from lm_eval_cola.results.identity import EvalIdentity
from lm_eval_cola.search.driver import OracleSearch, RunFacts
from lm_eval_cola.search.judge import OracleError

install_excepthook()
_HFLM_PARAMS = set(inspect.signature(HFLM.__init__).parameters)


@register_model("cola_hf")
class ColaHFLM(HFLM):
    """HFLM whose decoder layers run as a chain: fixed, or searched per sample (oracle)."""

    default_searcher: ClassVar[str | None] = None
    decode_hook: Hook | None = None  # set by a runner while it decodes (runner.decoding_by)

    def __init__(self, pretrained: Any = None, **model_args: Any) -> None:
        self.cola, kwargs = ColaConfig.from_model_args(model_args, self.default_searcher,
                                                         _HFLM_PARAMS)
        chosen = choose_model(pretrained, kwargs)
        self.model_label, self.load_args = chosen.label, chosen.load_args
        chosen.kwargs.setdefault("device", "cuda" if torch.cuda.is_available() else "cpu")
        with load_errors(chosen, lambda name: unknown_model_arg(name, self.cola.searcher)):
            super().__init__(pretrained=chosen.pretrained, **chosen.kwargs)
        adopt_launch_ranks(self)
        self.num_layers = find_layers(self.model).num_layers
        self.chain, self.max_chain_length = self.cola.resolve(self.num_layers)
        search, engine = self.cola.search, self.cola.engine
        self.searcher = search.make_searcher(self.max_chain_length) if search else None
        self.runner = ChainRunner(self, engine.fast, engine.prefix_cache_bytes,
                                  engine.generation_kv_bytes,
                                  lambda: run_info.graded_reward(self.searcher),
                                  engine.numerics, engine.share_prompts)
        self.judges = run_info.new_judges(self.cola)
        self.call = EvaluationCall()
        # lm-eval's prompt and decoding settings (attach_evaluation); default: plain prompts
        self.evaluation = EvalIdentity()
        self._search: OracleSearch | None = None

    # ------------------------------------------------------------------ lm-eval's face

    def start_evaluation(self, samples: Any = None, run_seed: int | None = None) -> None:
        """Called by the evaluator hook as each lm-eval evaluation starts: nothing of an
        earlier call (its search, summary, task objects, chosen chains) carries over."""
        self.call = EvaluationCall.start(samples, run_seed)
        self._search = None
        self.judges = run_info.new_judges(self.cola)

    def attach_evaluation(self, settings: Mapping[str, Any]) -> None:
        """Called by the evaluator hook as each evaluation starts, with lm-eval's prompt and
        decoding settings (chat template, system instruction, few-shot, gen_kwargs,
        --samples): part of the run's identity, so they name its records file."""
        evaluation = evaluation_identity(settings, self.chat_template)
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
        prepared): the hook a runner installed answers while one is set (a fast decoder
        capturing or replaying, ``runner.decoding_by``), else lm-eval's own step."""
        if self.decode_hook is not None:
            return self.decode_hook(context, max_length, stop, generation_kwargs)
        return hf_model_generate(self, context, max_length, stop, **generation_kwargs)

    def _answer_by_search(self, kind: str, requests: list, disable_tqdm: bool) -> list:
        def respond(samples: list) -> dict:
            records = self.oracle_search().search(kind, samples, progress=not disable_tqdm)
            for sample in samples:
                record = records[sample.key]
                self.call.chosen[sample.key] = ChosenChain(record.best_chain,
                                                           record.best_length, record.oracle)
            return {sample.key: records[sample.key].responses for sample in samples}

        return answer_requests(kind, requests, respond, self.call.doc_id, self.cache_hook)

    # ------------------------------------------------------------------ search and records

    def oracle_search(self) -> OracleSearch:
        """This evaluation's search driver (``run_info.make_search``, on first use)."""
        if self._search is None:
            self._search = run_info.make_search(self)
        return self._search

    def search_seed(self) -> tuple[int, str]:
        """(this evaluation's search seed, where it came from: seed=, --seed or default)."""
        return search_seed(self.cola.search and self.cola.search.seed, self.call.run_seed)

    def run_facts(self) -> RunFacts:
        return run_info.run_facts(self)

    def get_model_info(self) -> dict:
        return {**super().get_model_info(), **run_info.model_info(self)}


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
    from its prompt's hidden states (``router.Router.route``): deployable, never reads the
    gold. Each sample is answered under its chain by the chain runner (the fast batched
    paths where they apply), one chain's samples side by side."""

    def __init__(self, pretrained: Any = None, **model_args: Any) -> None:
        if not model_args.get("router"):
            raise UserError("cola_router needs router=FILE (written by lm-eval-cola "
                            "train-router)")
        super().__init__(pretrained, **model_args)
        self.router = Router.for_model(str(self.cola.router), self.num_layers,
                                       self.model.config)

    def start_evaluation(self, samples: Any = None, run_seed: int | None = None) -> None:
        super().start_evaluation(samples, run_seed)
        self.router.tally = RoutingTally()

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
        def respond(samples: list) -> dict:
            share = max(self.runner.cache_bytes // max(len(samples), 1), 1 << 20)
            asks = []
            for sample in tqdm(samples, desc="routing", unit="sample", disable=disable_tqdm):
                chain = self.router.route(self, sample.requests)
                self.call.chosen[sample.key] = ChosenChain(format_chain(chain), len(chain),
                                                           oracle=False)
                asks.append((sample.key, self.runner.evaluator(kind, sample.requests, share),
                             chain))
            asks.sort(key=lambda ask: ask[2])  # one chain's samples share batched forwards
            return evaluate_in_batches(self.model, asks, self.cola.engine.search_batch)

        return answer_requests(kind, requests, respond, self.call.doc_id, self.cache_hook)

    def get_model_info(self) -> dict:
        return {**super().get_model_info(), "cola_chain": "router",
                "cola_router": str(self.cola.router),
                **self.router.tally.model_info(self.num_layers)}
