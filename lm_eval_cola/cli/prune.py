"""``lm-eval-cola prune``: its arguments and its run; the methods (block influence, SLEB)
are the library in ``deploy/pruning.py`` (its docstring describes them)."""

from __future__ import annotations

import argparse
from typing import Any

from lm_eval_cola.chains.files import ChainFile
from lm_eval_cola.chains.syntax import format_chain
from lm_eval_cola.deploy.pruning import (
    METHODS,
    Perplexity,
    block_influence,
    calibration_texts,
    drop_lowest,
    sleb,
    target_layers,
    tokenize,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default="block_influence", choices=METHODS)
    parser.add_argument("--tasks", required=True, help="one lm-eval task (calibration text)")
    parser.add_argument("--split", required=True,
                        help="the calibration split (never the task's evaluated split)")
    parser.add_argument("--out", required=True, help="the chain file to write (.json)")
    depth = parser.add_mutually_exclusive_group(required=True)
    depth.add_argument("--layers", type=int, default=None, help="layers to keep")
    depth.add_argument("--depth", type=float, default=None,
                       help="fraction of the layers to keep, e.g. 0.75")
    parser.add_argument("--model_args", default=None,
                        help="pretrained=...,dtype=... (default: the embedded model)")
    parser.add_argument("--limit", type=int, default=128,
                        help="calibration docs: the split's first N (default 128)")
    parser.add_argument("--max_tokens", type=int, default=256,
                        help="tokens per calibration text (default 256)")
    parser.add_argument("--num_fewshot", type=int, default=None)
    parser.add_argument("--include_path", default=None, help="folder of custom task YAMLs")


def run(args: argparse.Namespace) -> int:
    from lm_eval_cola.compat.lm_eval_private import parse_model_args
    from lm_eval_cola.deploy.calibrate import calibration_task
    from lm_eval_cola.deploy.export import load_source
    from lm_eval_cola.engine.apply import find_layers

    task = calibration_task(args.tasks, args.split, args.num_fewshot, args.include_path)
    texts = calibration_texts(task, args.limit)
    model, tokenizer, label = load_source(parse_model_args(args.model_args))
    num_layers = find_layers(model).num_layers
    keep = target_layers(num_layers, args.layers, args.depth)
    ids = tokenize(tokenizer, texts, args.max_tokens)
    settings: dict[str, Any] = {"max_tokens": args.max_tokens, "tokens": sum(map(len, ids))}
    if args.method == "block_influence":
        influence = block_influence(model, ids)
        chain = drop_lowest(influence, keep)
        score = {"block_influence": [round(v, 6) for v in influence]}
    else:
        perplexity = Perplexity(model, ids)
        chain, steps = sleb(perplexity, num_layers, keep, args.method == "sleb_oneshot")
        (nll,) = perplexity([chain])
        score = {"nll_per_token": nll, "full_nll_per_token": steps[0]["nll"], "steps": steps,
                 "chains_evaluated": perplexity.evaluations}
    found = ChainFile.make(chain, num_layers, model=label, method=args.method, task=args.tasks,
                           split=args.split, samples=len(ids), settings=settings, score=score)
    found.write(args.out)
    dropped = sorted(set(range(num_layers)) - set(chain))
    print(f"{args.method}: kept {len(chain)} of {num_layers} layers, chain {format_chain(chain)}"
          f" (dropped {', '.join(map(str, dropped)) or 'none'}) -> {args.out}")
    return 0
