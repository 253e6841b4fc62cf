"""``lm-eval-cola layers [CHAIN]``: a model's layer count (from its config alone, no weights
loaded) and a chain in canonical form."""

from __future__ import annotations

import argparse

from lm_eval_cola.compat.lm_eval_private import parse_model_args
from lm_eval_cola.errors import UserError


def _model_layer_count(model_args: dict) -> tuple[str, int]:
    """The layer count from the model's config alone (no weights loaded)."""
    from transformers import AutoConfig

    from lm_eval_cola.harness.default_model import default_model

    if "pretrained" not in model_args:
        model_args = dict(default_model().load_args())
    extra = {k: model_args[k] for k in ("gguf_file", "revision", "trust_remote_code")
             if k in model_args}
    try:
        config = AutoConfig.from_pretrained(model_args["pretrained"], **extra)
    except (OSError, ValueError) as err:  # no such folder, no model there, not in the cache
        from lm_eval_cola.deploy.export import unreadable_model

        raise unreadable_model(model_args["pretrained"], err) from None
    config = getattr(config, "text_config", None) or config
    from lm_eval_cola.engine.architectures import of_config

    arch = of_config(config)  # a one-line error listing the supported architectures
    return arch.model_type, int(getattr(config, arch.layer_count))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("chain", nargs="?", default=None,
                        help="a chain to check and print in canonical form (default: identity)")
    parser.add_argument("--model_args", default=None,
                        help="pretrained=...,gguf_file=... (default: the embedded model)")
    parser.add_argument("--num_layers", type=int, default=None,
                        help="skip reading the model; check the chain against this layer count")
    parser.add_argument("--max_chain_length", type=int, default=None,
                        help="the chain length cap (default 2 x layers)")


def run(args: argparse.Namespace) -> int:
    from lm_eval_cola.chains.syntax import format_chain, parse_chain

    if args.num_layers is not None:
        kind, total = "given", args.num_layers
        if total < 1:
            raise UserError(f"--num_layers must be >= 1, got {total}")
    else:
        kind, total = _model_layer_count(parse_model_args(args.model_args))
    chain = parse_chain(args.chain, total, args.max_chain_length)
    print(f"architecture: {kind}")
    print(f"layers: {total}")
    print(f"chain: {format_chain(chain)}")
    print(f"chain length: {len(chain)} (depth ratio {len(chain) / total:.3f})")
    return 0
