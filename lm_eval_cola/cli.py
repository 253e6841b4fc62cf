"""The ``lm-eval-cola`` command: model facts, chain text, record verification, and
(see compare.py / leaderboard.py) searcher comparisons."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from lm_eval_cola import __version__
from lm_eval_cola.errors import UserError

logger = logging.getLogger("lm_eval_cola")

# name -> (help, add_arguments, run); later modules add theirs with `subcommand`.
SUBCOMMANDS: dict[str, tuple[str, Callable, Callable]] = {}


def subcommand(name: str, help_text: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    def register(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        SUBCOMMANDS[name] = (help_text, add_arguments, run)
        return run

    return register


def parse_model_args(text: str | None) -> dict:
    """``key=value,key=value`` the way lm-eval's CLI reads --model_args."""
    if not text:
        return {}
    from lm_eval._cli.utils import key_val_to_dict

    try:
        return key_val_to_dict(text)
    except ValueError as err:
        raise UserError(f"bad --model_args {text!r}: {err}") from None


def _model_layer_count(model_args: dict) -> tuple[str, int]:
    """The layer count from the model's config alone (no weights loaded)."""
    from transformers import AutoConfig

    from lm_eval_cola.default_model import default_model

    if "pretrained" not in model_args:
        model_args = dict(default_model().load_args())
    extra = {k: model_args[k] for k in ("gguf_file", "revision", "trust_remote_code")
             if k in model_args}
    config = AutoConfig.from_pretrained(model_args["pretrained"], **extra)
    config = getattr(config, "text_config", None) or config
    from lm_eval_cola.engine import (
        SUPPORTED_ARCHITECTURES,
        UnsupportedArchitectureError,
    )

    if config.model_type not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"unsupported architecture {config.model_type!r}; supported: "
            f"{', '.join(sorted(SUPPORTED_ARCHITECTURES))}"
        )
    return config.model_type, int(config.num_hidden_layers)


def _layers_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("chain", nargs="?", default=None,
                        help="a chain to check and print in canonical form (default: identity)")
    parser.add_argument("--model_args", default=None,
                        help="pretrained=...,gguf_file=... (default: the embedded model)")
    parser.add_argument("--num_layers", type=int, default=None,
                        help="skip reading the model; check the chain against this layer count")
    parser.add_argument("--max_chain_length", type=int, default=None,
                        help="the chain length cap (default 2 x layers)")


@subcommand("layers", "print a model's layer count and a chain's canonical form", _layers_args)
def run_layers(args: argparse.Namespace) -> int:
    from lm_eval_cola.chain import format_chain, parse_chain

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


def _verify_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("records", nargs="+", help="records files (cola-records_*.jsonl)")
    parser.add_argument("--model_args", default=None,
                        help="override the recorded model args, e.g. device=cuda")
    parser.add_argument("--include_path", default=None, help="folder of custom task YAMLs")


@subcommand("verify", "re-run each record's chain on its sample and check its correctness",
            _verify_args)
def run_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lm_eval_cola.verify import verify_records

    for path in args.records:
        if not Path(path).is_file():
            raise UserError(f"records file {path!r} does not exist")
    checks = verify_records(args.records, parse_model_args(args.model_args), args.include_path)
    bad = [c for c in checks if not c.ok]
    for check in bad:
        print(f"MISMATCH {check.task} doc {check.doc_id} {check.what} chain {check.chain}: "
              f"recorded correct={check.recorded}, re-run correct={check.reproduced}")
    samples = len({(c.task, c.doc_id) for c in checks})
    print(f"verified {samples} samples ({len(checks)} chains): "
          f"{len(checks) - len(bad)} reproduced, {len(bad)} mismatched")
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    _load_optional_subcommands()
    parser = argparse.ArgumentParser(
        prog="lm-eval-cola",
        description="Chains of layers (CoLa) for lm-evaluation-harness.",
    )
    parser.add_argument("--version", action="version", version=f"lm-eval-cola {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, _) in SUBCOMMANDS.items():
        add_arguments(commands.add_parser(name, help=help_text, description=help_text))
    return parser


def _load_optional_subcommands() -> None:
    # compare and leaderboard register themselves with @subcommand when imported.
    import importlib

    for module in ("lm_eval_cola.compare", "lm_eval_cola.leaderboard"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return SUBCOMMANDS[args.command][2](args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Run the imported module's main: compare/leaderboard register into its SUBCOMMANDS.
    from lm_eval_cola.cli import main as _main

    sys.exit(_main())
