"""``lm-eval-cola compare``: the same model, samples, seed and budget under several searchers.

Each variant is one run of lm-eval's own evaluator (``simple_evaluate``, saved by its
``EvaluationTracker`` as ``lm_eval`` does), under its own lm-eval model and in its own folder:

    none           cola_hf     searcher=none    (the full chain: the baseline of the search rows)
    random         cola_random
    greedy         cola_greedy
    mcts           cola_mcts
    <other>        cola_hf     searcher=<other> (any registered searcher)
    hf             hf          (plain lm-eval: a baseline row with no cola code in the path)
    chain:<text>   cola_hf     chain=<text>     (a fixed chain)
    <searcher>:k=v;k=v         a searcher with its own settings, e.g. mcts:actions=skip
                               (Table 1's skip-only column); ';' joins settings because ','
                               separates variants, and --model_args still apply to all

    <output>/<variant>/<model name>/results_<date>.json    lm-eval's results
    <output>/<variant>/<model name>/cola-records_*.jsonl   the per-sample records

With ``--seeds N`` (N > 1) each searcher variant (not ``none``, ``hf`` or a fixed chain,
which have no randomness) runs N times, with seeds seed, seed+1, ..., each in its own folder
``<output>/<variant>/seed<k>/``; the leaderboard shows such a variant as one row, mean ± sd
over the seeds.

A variant whose complete results already sit in its folder (same lm-eval model, model_args,
limit and all the tasks, and the same evaluation: chat template, system instruction,
few-shot, gen_kwargs, dtype, see ``identity.py``; a seed's run is looked for anywhere under
``<output>/<variant>/``, so a seed run before, with or without ``--seeds``, counts) is
skipped, so a re-run after a crash does only what is missing; a variant that died half-way
resumes from its records. It ends by printing the leaderboard.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_eval_cola.compat.lm_eval_private import parse_model_args
from lm_eval_cola.errors import UserError
from lm_eval_cola.harness.conditions import RunConditions
from lm_eval_cola.results.identity import APPLIED, EvalIdentity

logger = logging.getLogger(__name__)

DEFAULT_SEARCHERS = "none,random,greedy,mcts"
# ``python -m lm_eval`` with our models registered first: works whether or not the
# package's start-up hook is installed in this interpreter (a source checkout).
LM_EVAL_COMMAND = [
    sys.executable, "-c",
    "import sys, runpy, lm_eval_cola._autoload; sys.argv[0] = 'lm_eval'; "
    "runpy.run_module('lm_eval', run_name='__main__', alter_sys=True)",
]
# searcher -> its own lm-eval model; any other searcher runs as cola_hf searcher=<name>.
SEARCHER_MODELS = {"mcts": "cola_mcts", "greedy": "cola_greedy", "random": "cola_random"}


@dataclass
class Variant:
    name: str  # as given in --searchers
    model: str  # the lm-eval model
    model_args: str  # the full model_args text
    folder: Path  # lm-eval's output_path for this variant
    seed: int | None = None  # searchers: this run's seed
    home: Path | None = None  # where its complete results are looked for (default: folder)

    def __str__(self) -> str:
        return f"{self.model} {self.model_args}".strip()

    @property
    def search_folder(self) -> Path:
        return self.home or self.folder


def _join_args(*parts: str) -> str:
    return ",".join(p for p in parts if p)


def _folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name.replace(":", "-")).strip("_") or "variant"


def _without(args: str, keys: set[str]) -> str:
    """model_args text without the ``key=value`` parts of ``keys``."""
    return ",".join(p for p in args.split(",") if p and p.partition("=")[0].strip() not in keys)


def _split_variant(name: str, searchers: Any) -> tuple[str, str]:
    """``mcts:actions=skip;block_sizes=1`` -> ("mcts", "actions=skip,block_sizes=1");
    a name without settings -> (name, ""); UserError for settings that cannot be given."""
    base, colon, spec = name.partition(":")
    if not colon or base not in searchers:
        return name, ""
    pairs = [p.strip() for p in spec.split(";") if p.strip()]
    bad = [p for p in pairs if "=" not in p or not p.partition("=")[0].strip()]
    if not pairs or bad:
        raise UserError(f"bad variant {name!r}; a searcher's own settings are "
                        f"{base}:key=value;key=value, e.g. {base}:actions=skip")
    keys = [p.partition("=")[0].strip() for p in pairs]
    fixed = sorted(set(keys) & {"searcher", "chain", "seed", "budget"})
    if fixed:
        raise UserError(f"bad variant {name!r}: {fixed[0]!r} is set by compare for every "
                        "variant (use --searchers, --seed, --budget)")
    return base, ",".join(pairs)


def plain_model_args(extra: str) -> str:
    """model_args for ``--model hf``: the embedded default model unless pretrained= is given."""
    if "pretrained" in parse_model_args(extra):
        return extra
    from lm_eval_cola.harness.default_model import default_model

    return _join_args(default_model().model_args(), extra)


def make_variants(names: list[str], output: Path, extra: str, seed: int,
                  budget: int | None, seeds: int = 1) -> list[Variant]:
    """The variants of ``--searchers`` (a searcher's once a seed of ``seeds``); UserError
    names a bad one and what is allowed."""
    from lm_eval_cola.search.searchers import SEARCHERS, searcher_names

    given = parse_model_args(extra)
    clash = sorted(set(given) & {"searcher", "chain", "seed", "budget"})
    if clash:
        raise UserError(f"--model_args must not set {clash[0]!r}; compare sets it per variant "
                        "(use --searchers, --seed, --budget)")
    variants: list[Variant] = []
    for name in names:
        base, own_settings = _split_variant(name, SEARCHERS)
        if name == "hf":
            model, args = "hf", plain_model_args(extra)
        elif name.startswith("chain:"):
            chain = name.partition(":")[2]
            if not chain or "," in chain:
                raise UserError(f"bad variant {name!r}; a fixed chain is chain:<text>, terms "
                                "joined by '+', e.g. chain:0-9+12-29")
            model, args = "cola_hf", _join_args(extra, f"chain={chain}")
        elif base in SEARCHERS:
            model = SEARCHER_MODELS.get(base, "cola_hf")
            own = _join_args("" if model != "cola_hf" else f"searcher={base}", own_settings)
            # the variant's own settings win over the same keys in --model_args
            shared = _without(extra, {p.partition("=")[0] for p in own_settings.split(",")})
            # none runs only the full chain: a budget would change nothing but its settings
            spend = f"budget={budget}" if budget is not None and base != "none" else ""
            home = output / _folder_name(name)
            if base == "none" or seeds == 1:  # none: one chain, no randomness
                args = _join_args(shared, own, f"seed={seed}", spend)
                variants.append(Variant(name, model, args, home, seed, home))
                continue
            for k in range(seed, seed + seeds):
                args = _join_args(shared, own, f"seed={k}", spend)
                variants.append(Variant(name, model, args, home / f"seed{k}", k, home))
            continue
        else:
            raise UserError(f"unknown variant {name!r}; allowed: {', '.join(searcher_names())}, "
                            "hf, chain:<text>")
        variants.append(Variant(name, model, args, output / _folder_name(name)))
    if len({(v.name, v.seed) for v in variants}) != len(variants):
        raise UserError("--searchers names a variant twice")
    return variants


def wanted_evaluation(eval_kwargs: dict[str, Any]) -> EvalIdentity:
    """The prompt and decoding settings a run with ``eval_kwargs`` gets: the template
    applied is the model's own (known once it loads), and with one simple_evaluate takes
    the few-shot examples as turns unless told otherwise."""
    applied = bool(eval_kwargs.get("apply_chat_template"))
    return EvalIdentity.make(
        chat_template=APPLIED if applied else None,
        system_instruction=eval_kwargs.get("system_instruction"),
        fewshot_as_multiturn=bool(eval_kwargs.get("fewshot_as_multiturn", True)),
        num_fewshot=eval_kwargs.get("num_fewshot"), gen_kwargs=eval_kwargs.get("gen_kwargs"))


def wanted_conditions(model_args: str, eval_kwargs: dict[str, Any]) -> RunConditions:
    """What "the same evaluation" (identity.RunConditions) asks of a run made with these
    model_args and options; what only the run resolves (dtype auto, max_len) is left open."""
    from lm_eval_cola.reports import stored_model_args as stored_args

    return RunConditions.make(stored_args(model_args), wanted_evaluation(eval_kwargs))


def complete_results(variant: Variant, tasks: list[str], limit: Any,
                     eval_kwargs: dict[str, Any] | None = None) -> Path | None:
    """A results file in the variant's folder from exactly this run with every task: the
    same lm-eval model, model_args and limit, and the same evaluation (identity.py: chat
    template, system instruction, few-shot, gen_kwargs, dtype, ...)."""
    if not variant.search_folder.is_dir():
        return None
    from lm_eval_cola.reports import RunDirError, read_run_file
    from lm_eval_cola.reports import stored_model_args as stored_args

    wanted = wanted_conditions(variant.model_args, eval_kwargs or {})
    for path in sorted(variant.search_folder.rglob("results*.json"), reverse=True):
        try:
            run = read_run_file(path)
        except RunDirError:
            continue
        config = run.data["config"]
        same = (config.get("model") == variant.model
                and run.model_args == stored_args(variant.model_args)
                and config.get("limit") == limit)
        if not same or not all(t in run.data["results"] for t in tasks):
            continue
        difference = RunConditions.from_results(run.data, run.model_args).difference(wanted)
        if difference is None:
            return path
        logger.info("%s is not this run of %s: %s", path, variant.name, difference)
    return None


def run_variant(variant: Variant, tasks: list[str], limit: Any, task_manager: Any,
                eval_kwargs: dict[str, Any]) -> None:
    """One lm-eval run, saved the way the ``lm_eval`` command saves it."""
    from lm_eval import evaluator
    from lm_eval.loggers import EvaluationTracker

    tracker = EvaluationTracker(output_path=str(variant.folder))
    results = evaluator.simple_evaluate(
        model=variant.model, model_args=variant.model_args, tasks=tasks, limit=limit,
        evaluation_tracker=tracker, task_manager=task_manager, log_samples=False, **eval_kwargs,
    )
    if results is None:  # not rank 0
        return
    results.pop("samples", None)
    tracker.save_results_aggregated(results=results, samples=None)


def run_variant_processes(variant: Variant, tasks: list[str], limit: Any, processes: int,
                          eval_kwargs: dict[str, Any], include_path: str | None) -> None:
    """One lm-eval run over ``processes`` data parallel processes: the ``lm_eval`` command
    under torch's launcher (what ``accelerate launch`` starts), each rank searching its
    share of the samples into its own records file."""
    import os
    import subprocess

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", str(processes), "--no_python", *LM_EVAL_COMMAND,
               "--model", variant.model, "--model_args", variant.model_args,
               "--tasks", ",".join(tasks), "--output_path", str(variant.folder)]
    if limit is not None:
        command += ["--limit", str(limit)]
    for key, value in eval_kwargs.items():
        # a flag (apply_chat_template) goes bare: lm_eval reads a value after it as a name
        command += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    if include_path:
        command += ["--include_path", include_path]
    env = dict(os.environ)
    if not _cuda_wanted(eval_kwargs):
        # accelerate splits CPU processes into ranks only with this set (see models.py).
        env["ACCELERATE_USE_CPU"] = "true"
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    done = subprocess.run(command, env=env, check=False)
    if done.returncode != 0:
        raise UserError(f"variant {variant.name!r} failed over {processes} processes "
                        f"(exit status {done.returncode}); its finished samples are kept in "
                        f"{variant.folder}, so running the same command again resumes it")


def _cuda_wanted(eval_kwargs: dict[str, Any]) -> bool:
    import torch

    device = str(eval_kwargs.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    return device.startswith("cuda")


def ensure_hooks() -> None:
    # The .pth start-up hook installs these when lm_eval is imported; without the package
    # installed (a source checkout) do it here. All three are idempotent.
    from lm_eval_cola.compat import hooks, local_data

    hooks.install_evaluator_hook()
    local_data.install()
    import lm_eval_cola.harness.models  # noqa: F401  registers the cola_* models


def _say(text: str) -> None:
    print(f"[compare] {text}", file=sys.stderr, flush=True)


def compare(searchers: list[str], tasks: list[str], output: str | Path, limit: Any = None,
            budget: int | None = None, seed: int = 1234, model_args: str = "",
            include_path: str | None = None, task_manager: Any = None,
            eval_kwargs: dict[str, Any] | None = None,
            processes: int = 1, seeds: int = 1) -> list[tuple[Variant, str]]:
    """Run the variants that are not complete yet (a searcher's once a seed, ``seeds``
    seeds from ``seed``); returns (variant, "ran"|"skipped")."""
    if not tasks:
        raise UserError("--tasks is empty; give e.g. --tasks arc_challenge,gsm8k")
    if processes < 1:
        raise UserError(f"--processes must be >= 1, got {processes}")
    if seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    output = Path(output)
    variants = make_variants(searchers, output, model_args or "", seed, budget, seeds)
    ensure_hooks()
    done: list[tuple[Variant, str]] = []
    started = time.perf_counter()
    for number, variant in enumerate(variants, start=1):
        head = f"variant {number}/{len(variants)}: {variant.name} ({variant})"
        found = complete_results(variant, tasks, limit, eval_kwargs)
        if found is not None:
            _say(f"{head}: complete results in {found}, skipped")
            done.append((variant, "skipped"))
            continue
        _say(f"{head}: running" + (f" over {processes} processes" if processes > 1 else ""))
        begin = time.perf_counter()
        if processes > 1:
            run_variant_processes(variant, tasks, limit, processes, eval_kwargs or {},
                                  include_path)
        else:
            if task_manager is None:
                from lm_eval.tasks import TaskManager

                task_manager = TaskManager(include_path=include_path)
            run_variant(variant, tasks, limit, task_manager, eval_kwargs or {})
        _say(f"{head}: done in {time.perf_counter() - begin:.1f} s "
             f"(all variants so far {time.perf_counter() - started:.1f} s)")
        done.append((variant, "ran"))
    return done


def add_run_arguments(parser: argparse.ArgumentParser, each: str) -> None:
    """The options passed through to every run (``each``: what one run is called), shared
    by ``compare`` and ``table1``."""
    parser.add_argument("--model_args", default="",
                        help=f"passed to every {each}, e.g. pretrained=...,dtype=bfloat16 "
                             "(default: the embedded model)")
    parser.add_argument("--num_fewshot", type=int, default=None)
    parser.add_argument("--gen_kwargs", default=None,
                        help="as lm-eval's --gen_kwargs, e.g. max_gen_toks=128")
    parser.add_argument("--batch_size", default=None, help="as lm-eval's --batch_size")
    parser.add_argument("--device", default=None)
    parser.add_argument("--apply_chat_template", action="store_true",
                        help="as lm-eval's --apply_chat_template (instruct models)")
    parser.add_argument("--system_instruction", default=None,
                        help="as lm-eval's --system_instruction")
    parser.add_argument("--fewshot_as_multiturn", default=None, choices=("true", "false"),
                        help="as lm-eval's: with --apply_chat_template, few-shot examples as "
                             "turns (default true)")
    parser.add_argument("--include_path", default=None, help="folder of custom task YAMLs")
    parser.add_argument("--processes", type=int, default=1,
                        help=f"data parallel processes per {each} (CPU: gloo; GPUs: one each)")


def run_options(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """(limit, eval_kwargs) from the parsed options, checked: UserError names a bad one."""
    limit: Any = args.limit
    if limit is not None:
        if limit <= 0:
            raise UserError(f"--limit must be > 0, got {args.limit:g}")
        limit = int(limit) if limit >= 1 else limit
    if args.budget is not None and args.budget < 1:
        raise UserError(f"--budget must be >= 1, got {args.budget}")
    eval_kwargs: dict[str, Any] = {key: getattr(args, key) for key in
                                   ("num_fewshot", "gen_kwargs", "batch_size", "device",
                                    "system_instruction")
                                   if getattr(args, key, None) is not None}
    if getattr(args, "apply_chat_template", False):
        eval_kwargs["apply_chat_template"] = True
    if getattr(args, "fewshot_as_multiturn", None) is not None:
        eval_kwargs["fewshot_as_multiturn"] = args.fewshot_as_multiturn == "true"
    return limit, eval_kwargs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--searchers", default=DEFAULT_SEARCHERS,
                        help=f"variants, comma-separated (default {DEFAULT_SEARCHERS}); also "
                             "any registered searcher, hf (plain lm-eval), chain:<text> and "
                             "<searcher>:key=value;key=value (a searcher with its own "
                             "settings, e.g. mcts:actions=skip)")
    parser.add_argument("--tasks", required=True, help="lm-eval tasks, comma-separated")
    parser.add_argument("--limit", type=float, default=None,
                        help="samples per task (as lm-eval's --limit; below 1: a fraction)")
    parser.add_argument("--budget", type=int, default=None,
                        help="chain evaluations per sample for the searchers (default: theirs)")
    parser.add_argument("--seed", type=int, default=1234, help="the searchers' seed")
    parser.add_argument("--seeds", type=int, default=1,
                        help="runs per searcher variant, with seeds seed, seed+1, ... (default 1);"
                             " the leaderboard shows their mean ± sd")
    parser.add_argument("--output", required=True, help="folder for all variants' outputs")
    add_run_arguments(parser, "variant")
    parser.add_argument("--board", default=None,
                        help="also write the leaderboard files (md, csv, html, plots) here")


def run(args: argparse.Namespace, task_manager: Any = None) -> int:
    """The ``compare`` subcommand (``task_manager``: lm-eval's, made here when None)."""
    from lm_eval_cola.reports import build_board, report

    limit, eval_kwargs = run_options(args)
    searchers = [s.strip() for s in args.searchers.split(",") if s.strip()]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    done = compare(searchers, tasks, args.output, limit=limit, budget=args.budget,
                   seed=args.seed, model_args=args.model_args, include_path=args.include_path,
                   eval_kwargs=eval_kwargs, processes=args.processes, seeds=args.seeds,
                   task_manager=task_manager)
    # the table of exactly this comparison's results (a folder may hold other budgets too)
    files = [complete_results(v, tasks, limit, eval_kwargs) for v, _ in done]
    board = build_board([f for f in files if f is not None])
    _say(f"{sum(s == 'ran' for _, s in done)} ran, {sum(s == 'skipped' for _, s in done)} "
         "skipped; leaderboard:")
    return report(board, args.board, title="Comparison")

