"""``lm-eval-cola calibrate``: its arguments and its run; the search, the consensus and the
task-level evaluator are the library in ``deploy/calibrate.py`` (its docstring says how a
chain is chosen)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from lm_eval_cola.chains.files import ChainFile
from lm_eval_cola.chains.syntax import full_chain
from lm_eval_cola.deploy.calibrate import (
    TaskEvaluator,
    calibration_task,
    consensus_chain,
    load_task,
    read_calibration_records,
    score,
    search_chain,
)
from lm_eval_cola.errors import UserError

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", required=True, help="one lm-eval task, e.g. arc_challenge")
    parser.add_argument("--split", default=None,
                        help="the calibration split (e.g. train, validation); never the "
                             "task's evaluated split")
    parser.add_argument("--out", required=True, help="the chain file to write (.json)")
    parser.add_argument("--model_args", default=None,
                        help="pretrained=...,dtype=... (default: the embedded model)")
    parser.add_argument("--limit", type=int, default=200,
                        help="calibration samples: the split's first N docs (default 200)")
    parser.add_argument("--searcher", default="greedy", help="a registered searcher")
    parser.add_argument("--budget", type=int, default=60, help="chains evaluated (default 60)")
    parser.add_argument("--settings", default="",
                        help="more searcher settings, key=value;key=value")
    parser.add_argument("--length_penalty", type=float, default=0.05,
                        help="score = accuracy - this * len / L (default 0.05)")
    parser.add_argument("--tolerance", type=float, default=0.0,
                        help="chains whose accuracy is >= the full chain's minus this are "
                             "eligible (and 'correct' for the searcher); default 0")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--num_fewshot", type=int, default=None)
    parser.add_argument("--metric", default=None, help="the task metric (default acc)")
    parser.add_argument("--include_path", default=None, help="folder of custom task YAMLs")
    parser.add_argument("--from-records", dest="from_records", nargs="+", default=None,
                        help="consensus of these oracle records instead of a search")


def _settings(text: str) -> dict[str, Any]:
    from lm_eval_cola.compat.lm_eval_private import parse_model_args

    return parse_model_args(text.replace(";", ",")) if text else {}


def run(args: argparse.Namespace) -> int:
    if args.length_penalty < 0 or args.tolerance < 0:
        raise UserError("--length_penalty and --tolerance must be >= 0")
    if args.from_records:
        return _run_consensus(args)
    if args.split is None:
        raise UserError("--split is required for a search; allowed: a split of the task "
                        "other than the evaluated one (e.g. train, validation)")
    from lm_eval_cola.compat.lm_eval_private import parse_model_args
    from lm_eval_cola.search.searchers import get_searcher

    settings = {"budget": args.budget, **_settings(args.settings)}
    try:
        searcher = get_searcher(args.searcher, **settings)
    except ValueError as err:
        raise UserError(str(err)) from None
    task = calibration_task(args.tasks, args.split, args.num_fewshot, args.include_path)
    from lm_eval_cola.harness.models import ColaHFLM

    lm = ColaHFLM(**parse_model_args(args.model_args))
    evaluator = TaskEvaluator(lm, task, args.limit, args.metric)
    logger.info("calibrating on %d docs of %s/%s with %s", len(evaluator), args.tasks,
                args.split, searcher)
    chain, seen = search_chain(evaluator.accuracy, lm.num_layers, searcher, args.seed,
                               args.length_penalty, args.tolerance)
    full = full_chain(lm.num_layers)
    found = ChainFile.make(
        chain, lm.num_layers, model=lm.model_label, method=f"calibrate:{searcher.name}",
        task=args.tasks, split=args.split, samples=len(evaluator),
        settings={"searcher": searcher.settings_dict(), "seed": args.seed,
                  "length_penalty": args.length_penalty, "tolerance": args.tolerance,
                  "metric": evaluator.judge.metric, "num_fewshot": args.num_fewshot},
        score={"accuracy": seen[chain], "full_accuracy": seen[full],
               "objective": score(seen[chain], len(chain), lm.num_layers, args.length_penalty),
               "chains_evaluated": len(seen)})
    found.write(args.out)
    print(f"calibrated chain {found.chain} ({found.length}/{lm.num_layers} layers): "
          f"{evaluator.judge.metric} {seen[chain]:.4f} on {len(evaluator)} {args.split} docs "
          f"(full chain {seen[full]:.4f}; {len(seen)} chains evaluated) -> {args.out}")
    return 0


def _run_consensus(args: argparse.Namespace) -> int:
    task = load_task(args.tasks, args.include_path)
    records = read_calibration_records(args.from_records, task)
    num_layers = records[0].num_layers
    chain, share, n = consensus_chain(records, num_layers, args.length_penalty,
                                      args.tolerance)
    full_share = sum(r.full_correct for r in records) / n
    found = ChainFile.make(
        chain, num_layers, model=records[0].model, method="consensus", task=args.tasks,
        split=args.split, samples=n,
        settings={"records": list(args.from_records), "length_penalty": args.length_penalty,
                  "searcher": records[0].searcher},
        score={"correct_share": share, "full_correct_share": full_share})
    found.write(args.out)
    print(f"consensus chain {found.chain} ({found.length}/{num_layers} layers): correct on "
          f"{share:.4f} of {n} recorded samples (full chain {full_share:.4f}) -> {args.out}")
    return 0
