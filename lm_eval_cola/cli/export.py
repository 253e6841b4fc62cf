"""``lm-eval-cola export CHAIN --out DIR``: its arguments and its run; how a chain becomes
a standalone Hugging Face checkpoint is the library in ``deploy/export.py``."""

from __future__ import annotations

import argparse
from pathlib import Path

from lm_eval_cola.deploy.export import check_out, export_chain, load_source, resolve_chain


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("chain", help="chain text (e.g. 0-9+9*2+12-29) or a chain file")
    parser.add_argument("--out", required=True, help="a new folder for the checkpoint")
    parser.add_argument("--model_args", default=None,
                        help="pretrained=...,dtype=... (default: the embedded model)")


def run(args: argparse.Namespace) -> int:
    from lm_eval_cola.compat.lm_eval_private import parse_model_args

    out = Path(args.out)
    check_out(out)
    model, tokenizer, label = load_source(parse_model_args(args.model_args))
    from lm_eval_cola.engine.apply import find_layers

    chain, found = resolve_chain(args.chain, find_layers(model).num_layers)
    report = export_chain(model, tokenizer, chain, out, label, found)
    print(f"exported {report.chain} ({report.layers} of {report.source_layers} layers, "
          f"{report.parameters:,} parameters) to {report.out}")
    if report.duplicated_parameters:
        print(f"looped layers written once per visit: {report.duplicated_parameters:,} "
              f"duplicated parameters ({report.duplicated_bytes / 2**20:.1f} MiB)")
    return 0
