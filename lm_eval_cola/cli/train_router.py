"""``lm-eval-cola train-router``: fit a router (``router.py``) on a calibration split.

Reads oracle records of that split (``lm-eval-cola search --split train``; records of the
evaluated split's docs are refused by doc hash), takes their most often correct chains as
candidates, labels every candidate on every training doc with the task's own metric
(``calibrate.TaskEvaluator``, the fast batched scorer), computes each doc's prompt
features (``features.py``), fits, and writes the router file. The training docs are the
records' docs; ``--limit`` caps them.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from tqdm import tqdm

from lm_eval_cola.chains.syntax import format_chain
from lm_eval_cola.errors import UserError

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", required=True, help="one lm-eval task, e.g. arc_challenge")
    parser.add_argument("--split", required=True,
                        help="the records' calibration split (e.g. train); never the task's "
                             "evaluated split")
    parser.add_argument("--records", nargs="+", required=True,
                        help="oracle records of that split (lm-eval-cola search)")
    parser.add_argument("--out", required=True, help="the router file to write (.json)")
    parser.add_argument("--model_args", default=None,
                        help="pretrained=...,dtype=... (default: the embedded model)")
    parser.add_argument("--limit", type=int, default=None,
                        help="train on the recorded docs among the split's first N "
                             "(default: every recorded doc)")
    parser.add_argument("--candidates", type=int, default=8,
                        help="chains besides the full chain the router picks from (default 8)")
    parser.add_argument("--feature_layers", type=int, default=2,
                        help="features: hidden states after the first N layers (default 2)")
    parser.add_argument("--length_penalty", type=float, default=0.05,
                        help="pick argmax p - this * len / L (default 0.05)")
    parser.add_argument("--labels", choices=("evaluate", "records"), default="evaluate",
                        help="evaluate: run every candidate on every doc (default); records: "
                             "only what the searches evaluated (the rest masked out)")
    parser.add_argument("--seed", type=int, default=0, help="cross-validation folds' seed")
    parser.add_argument("--num_fewshot", type=int, default=None)
    parser.add_argument("--apply_chat_template", action="store_true",
                        help="as the records' run (the prompts must match)")
    parser.add_argument("--metric", default=None, help="the task metric (default acc)")
    parser.add_argument("--include_path", default=None, help="folder of custom task YAMLs")


def run(args: argparse.Namespace) -> int:
    from lm_eval_cola.compat.lm_eval_private import parse_model_args
    from lm_eval_cola.deploy.calibrate import (
        TaskEvaluator,
        calibration_task,
        load_task,
        read_calibration_records,
    )
    from lm_eval_cola.harness.models import ColaHFLM
    from lm_eval_cola.harness.router import candidates_from_records, fit, labels_from_records

    if args.candidates < 1 or args.feature_layers < 1 or args.length_penalty < 0:
        raise UserError("--candidates and --feature_layers must be >= 1, --length_penalty "
                        f">= 0 (got {args.candidates}, {args.feature_layers}, "
                        f"{args.length_penalty})")
    # the records are checked against the evaluated split's docs, then the split swapped
    records = read_calibration_records(args.records, load_task(args.tasks, args.include_path))
    task = calibration_task(args.tasks, args.split, args.num_fewshot, args.include_path)
    lm = ColaHFLM(**parse_model_args(args.model_args))
    if args.feature_layers > lm.num_layers:
        raise UserError(f"--feature_layers {args.feature_layers} exceeds the model's "
                        f"{lm.num_layers} layers")
    evaluator = TaskEvaluator(lm, task, args.limit, args.metric,
                              apply_chat_template=args.apply_chat_template,
                              doc_ids=[r.doc_id for r in records])
    by_hash = {r.doc_hash: r for r in records}
    samples, kept = _recorded_samples(evaluator, by_hash)
    if len(kept) < 2:
        raise UserError(f"only {len(kept)} of the {len(evaluator)} {args.split} docs have "
                        "records; allowed: records of the same task, split and prompts")
    candidates = candidates_from_records(kept, lm.num_layers, args.candidates)
    logger.info("router candidates: %s", ", ".join(format_chain(c) for c in candidates))
    if args.labels == "evaluate":
        rows = evaluator.correct(candidates, progress=True)
        labels = [[float(bool(rows[c] and rows[c][k])) for c in range(len(candidates))]
                  for k in samples]
        known = None
    else:
        labels, known = labels_from_records(kept, candidates, lm.num_layers)
    from lm_eval_cola.engine.features import hidden_features, prompt_tokens

    features = [hidden_features(lm, prompt_tokens(lm, evaluator.samples[k].requests),
                                args.feature_layers)
                for k in tqdm(samples, desc="router features", unit="doc")]
    fitted = fit(features, labels, known, seed=args.seed)
    spec = _router_file(args, lm, candidates, fitted, len(samples))
    spec.score.update(_training_scores(spec, fitted, labels, known))
    spec.write(args.out)
    score = spec.score
    print(f"router: {len(candidates)} candidates, {len(samples)} {args.split} docs, l2 "
          f"{fitted.l2:g}; on its training docs, cross-validated: router accuracy "
          f"{score['cv_router_accuracy']:.4f} at executed depth {score['cv_router_depth']:.4f}"
          f", full chain "
          f"{score['full_accuracy']:.4f}, best candidate per doc (oracle over candidates) "
          f"{score['candidate_oracle_accuracy']:.4f} -> {args.out}")
    return 0


def _recorded_samples(evaluator: Any, by_hash: dict[str, Any]) -> tuple[list[int], list]:
    """Indexes of the evaluator's docs that have records, and those records."""
    from lm_eval_cola.compat.lm_eval_private import hash_doc

    samples, kept = [], []
    for k, sample in enumerate(evaluator.samples):
        record = by_hash.get(hash_doc(sample.doc))
        if record is not None:
            samples.append(k)
            kept.append(record)
    return samples, kept


def _router_file(args: argparse.Namespace, lm: Any, candidates: list, fitted: Any,
                 samples: int) -> Any:
    from lm_eval_cola.harness.router import RouterFile

    return RouterFile(
        candidates=[format_chain(c) for c in candidates], num_layers=lm.num_layers,
        hidden_size=len(fitted.mean) // 2, feature_layers=args.feature_layers,
        weights=fitted.weights.tolist(), bias=fitted.bias.tolist(),
        mean=fitted.mean.tolist(), scale=fitted.scale.tolist(),
        length_penalty=args.length_penalty, model=lm.model_label, task=args.tasks,
        split=args.split, samples=samples,
        settings={"records": list(args.records), "labels": args.labels, "l2": fitted.l2,
                  "cv_log_loss": {str(k): round(v, 6) for k, v in fitted.cv_loss.items()},
                  "num_fewshot": args.num_fewshot,
                  "apply_chat_template": args.apply_chat_template, "seed": args.seed})


def _training_scores(spec: Any, fitted: Any, labels: list, known: Any) -> dict[str, Any]:
    """Figures on the training docs, each doc routed by the cross-validation fold that did
    not train on it (labels unknown under ``--labels records`` count as wrong)."""
    from lm_eval_cola.harness.router import choose, executed_length, sigmoid

    chains = spec.chains
    picks = [choose([sigmoid(v) for v in row], chains, spec.num_layers,
                    spec.length_penalty) for row in fitted.held_out_logits.tolist()]
    n = len(picks)
    right = sum(labels[k][c] for k, c in enumerate(picks))
    executed = sum(executed_length(chains[c], spec.feature_layers) for c in picks)
    return {"cv_router_accuracy": right / n,
            "cv_router_depth": executed / n / spec.num_layers,
            "full_accuracy": sum(row[0] for row in labels) / n,
            "candidate_oracle_accuracy": sum(max(row) for row in labels) / n,
            "labels_known": None if known is None else
            sum(map(sum, known)) / (n * len(spec.candidates))}
