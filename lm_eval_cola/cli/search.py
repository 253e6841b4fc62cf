"""``lm-eval-cola search``: oracle search on a calibration split, for training data.

``lm_eval --model cola_mcts`` searches the split lm-eval evaluates a task on (its test
split). What is learned from oracle records (a consensus chain, ``calibrate
--from-records``; a router, ``train-router``) must come from another split, or the
deployable number it gives on the test split would have seen the test answers. This
command runs the same oracle search, through lm-eval's own request building, metric and
filter, on ``--split`` (never the evaluated split: refused in one line), and writes the
records (``record_chains=all`` by default: every evaluated chain with its correctness).
Resumable: run the same command again and finished samples are kept.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lm_eval_cola.errors import UserError

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", required=True, help="one lm-eval task, e.g. arc_challenge")
    parser.add_argument("--split", required=True,
                        help="the split to search (e.g. train, validation); never the task's "
                             "evaluated split")
    parser.add_argument("--records", required=True,
                        help="the records file to write (.jsonl); an existing one resumes")
    parser.add_argument("--searcher", default="mcts", help="a registered searcher (mcts)")
    parser.add_argument("--model_args", default="",
                        help="pretrained=...,budget=...,protocol=... (default: the embedded "
                             "model, record_chains=all)")
    parser.add_argument("--limit", type=int, default=None,
                        help="the split's first N docs (default: all)")
    parser.add_argument("--num_fewshot", type=int, default=None)
    parser.add_argument("--apply_chat_template", action="store_true")
    parser.add_argument("--include_path", default=None, help="folder of custom task YAMLs")


def model_args_for(args: argparse.Namespace) -> str:
    """The cola_hf model_args: the user's, with the searcher, the records file and (unless
    given) record_chains=all; a records= or searcher= of the user's is refused."""
    from lm_eval_cola.compat.lm_eval_private import parse_model_args

    given = parse_model_args(args.model_args or "")
    for key in ("records", "searcher", "chain"):
        if key in given:
            raise UserError(f"--model_args {key}= is set by this command; allowed: "
                            f"--records / --searcher (and no fixed chain)")
    parts = [args.model_args] if args.model_args else []
    parts += [f"searcher={args.searcher}", f"records={args.records}"]
    if "record_chains" not in given:
        parts.append("record_chains=all")
    return ",".join(parts)


def run(args: argparse.Namespace) -> int:
    from lm_eval import evaluator

    from lm_eval_cola.cli.compare import ensure_hooks
    from lm_eval_cola.deploy.calibrate import calibration_task
    from lm_eval_cola.results.records import read_records
    from lm_eval_cola.search.judge import task_manager

    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    Path(args.records).parent.mkdir(parents=True, exist_ok=True)
    model_args = model_args_for(args)
    ensure_hooks()
    task = calibration_task(args.tasks, args.split, args.num_fewshot, args.include_path)
    logger.info("oracle search on %s/%s (%s docs) -> %s", args.tasks, args.split,
                args.limit or "all", args.records)
    results = evaluator.simple_evaluate(
        model="cola_hf", model_args=model_args, tasks=[task], limit=args.limit,
        apply_chat_template=args.apply_chat_template, log_samples=False,
        task_manager=task_manager(args.include_path))
    records = read_records(args.records)
    if results is not None:
        summary = results["config"].get("cola_summary", {})
        print(f"searched {len(records)} {args.split} samples of {args.tasks} -> {args.records} "
              f"(this run: full chain accuracy {summary.get('full_chain_accuracy')}, oracle "
              f"accuracy {summary.get('oracle_accuracy')})")
    return 0
