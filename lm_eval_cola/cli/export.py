"""``lm-eval-cola export CHAIN --out DIR [--mergekit FILE]``: its arguments and its run; how
a chain becomes a standalone Hugging Face checkpoint or a mergekit passthrough config is the
library in ``deploy/export.py``."""

from __future__ import annotations

import argparse
from pathlib import Path

from lm_eval_cola.chains.syntax import format_chain
from lm_eval_cola.deploy.export import (
    check_out,
    export_chain,
    export_mergekit,
    load_source,
    resolve_chain,
)
from lm_eval_cola.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("chain", help="chain text (e.g. 0-9+9*2+12-29) or a chain file")
    parser.add_argument("--out", default=None, help="a new folder for the checkpoint")
    parser.add_argument("--mergekit", default=None, metavar="FILE",
                        help="also (or only) write a mergekit passthrough config (.yaml) that "
                             "builds the same model: mergekit-yaml FILE OUT")
    parser.add_argument("--model_args", default=None,
                        help="pretrained=...,dtype=... (default: the embedded model)")


def run(args: argparse.Namespace) -> int:
    from lm_eval_cola.compat.lm_eval_private import parse_model_args

    if args.out is None and args.mergekit is None:
        raise UserError("export needs --out DIR, --mergekit FILE or both; allowed: a new "
                        "folder for the checkpoint, a .yaml file for mergekit")
    model_args = parse_model_args(args.model_args)
    if args.mergekit is not None:
        mergekit_path = Path(args.mergekit)
        if mergekit_path.suffix not in (".yaml", ".yml") or mergekit_path.is_dir():
            raise UserError(f"--mergekit {args.mergekit!r} is not a .yaml file path; allowed: "
                            "a file ending in .yaml or .yml")
    if args.out is not None:
        check_out(Path(args.out))
    if args.mergekit is not None:  # first: it needs no weights, and a bad chain stops here
        chain, source = export_mergekit(args.chain, args.mergekit, model_args)
        print(f"wrote mergekit passthrough config for {format_chain(chain)} ({len(chain)} of "
              f"{source.num_layers} layers) to {args.mergekit}; build it with: "
              f"mergekit-yaml {args.mergekit} OUT")
        if args.out is None:
            return 0
    out = Path(args.out)
    model, tokenizer, label = load_source(model_args)
    from lm_eval_cola.engine.apply import find_layers

    chain, found = resolve_chain(args.chain, find_layers(model).num_layers,
                                 model_args.get("pretrained"))
    report = export_chain(model, tokenizer, chain, out, label, found)
    print(f"exported {report.chain} ({report.layers} of {report.source_layers} layers, "
          f"{report.parameters:,} parameters) to {report.out}")
    if report.duplicated_parameters:
        print(f"looped layers written once per visit: {report.duplicated_parameters:,} "
              f"duplicated parameters ({report.duplicated_bytes / 2**20:.1f} MiB)")
    return 0
