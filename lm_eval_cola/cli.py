"""The ``lm-eval-cola`` command: an explicit table of subcommands (``COMMANDS``); ``layers``
and ``verify`` live here, ``compare`` in compare.py, ``leaderboard`` in reports/cli.py."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from lm_eval_cola import __version__
from lm_eval_cola.compat.lm_eval_private import parse_model_args
from lm_eval_cola.errors import UserError

logger = logging.getLogger("lm_eval_cola")



def _model_layer_count(model_args: dict) -> tuple[str, int]:
    """The layer count from the model's config alone (no weights loaded)."""
    from transformers import AutoConfig

    from lm_eval_cola.default_model import default_model

    if "pretrained" not in model_args:
        model_args = dict(default_model().load_args())
    extra = {k: model_args[k] for k in ("gguf_file", "revision", "trust_remote_code")
             if k in model_args}
    try:
        config = AutoConfig.from_pretrained(model_args["pretrained"], **extra)
    except (OSError, ValueError) as err:  # no such folder, no model there, not in the cache
        from lm_eval_cola.export import unreadable_model

        raise unreadable_model(model_args["pretrained"], err) from None
    config = getattr(config, "text_config", None) or config
    from lm_eval_cola.architectures import of_config

    arch = of_config(config)  # a one-line error listing the supported architectures
    return arch.model_type, int(getattr(config, arch.layer_count))


def _layers_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("chain", nargs="?", default=None,
                        help="a chain to check and print in canonical form (default: identity)")
    parser.add_argument("--model_args", default=None,
                        help="pretrained=...,gguf_file=... (default: the embedded model)")
    parser.add_argument("--num_layers", type=int, default=None,
                        help="skip reading the model; check the chain against this layer count")
    parser.add_argument("--max_chain_length", type=int, default=None,
                        help="the chain length cap (default 2 x layers)")


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


# The subcommands: name -> (module, help). Each module has ``add_arguments(parser)`` and
# ``run(args) -> int``; it is imported only when the parser is built, and none of them
# imports this module (no cycles).
COMMANDS: dict[str, tuple[str, str]] = {
    "layers": ("lm_eval_cola.cli", "a model's layer count, and a chain in canonical form"),
    "verify": ("lm_eval_cola.cli", "re-run every recorded best and full chain; exit 1 on a "
               "mismatch"),
    "compare": ("lm_eval_cola.compare", "run lm-eval once per searcher on the same model, "
                "samples and budget, then print the leaderboard"),
    "table1": ("lm_eval_cola.table1", "the paper's Table 1 (original / skip-only / "
               "recurrence-only / CoLa) for a model, with findings and chance control"),
    "leaderboard": ("lm_eval_cola.reports.cli", "one table (Markdown, CSV, HTML, plots) from "
                    "lm-eval results and cola records"),
    "calibrate": ("lm_eval_cola.calibrate", "search one chain for a whole task on a "
                  "calibration split (or take the consensus of oracle records); write a chain "
                  "file"),
    "search": ("lm_eval_cola.split_search", "oracle search on a calibration split (train, "
               "validation): records for calibrate --from-records and train-router"),
    "train-router": ("lm_eval_cola.router_train", "fit a router (cola_router) on oracle "
                     "records of a calibration split; write a router file"),
    "prune": ("lm_eval_cola.pruning", "static pruning baselines (block influence, SLEB) to a "
              "target depth; write a chain file"),
    "export": ("lm_eval_cola.export", "write a chain as a standalone Hugging Face checkpoint "
               "(plain lm_eval --model hf loads it)"),
}


def _command(name: str) -> tuple[Callable, Callable]:
    """(add_arguments, run) of a subcommand."""
    import importlib

    module = importlib.import_module(COMMANDS[name][0])
    if module.__name__ == __name__:
        return globals()[f"_{name}_args"], globals()[f"run_{name}"]
    return module.add_arguments, module.run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lm-eval-cola",
        description="Chains of layers (CoLa) for lm-evaluation-harness.",
    )
    parser.add_argument("--version", action="version", version=f"lm-eval-cola {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        _command(name)[0](commands.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _command(args.command)[1](args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if args.verbose:  # -v: the traceback, for a bug report
            raise
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        return 2


def describe_os_error(err: OSError) -> str:
    """One line for a file system error a subcommand did not foresee (a file where a folder
    is needed, a folder that cannot be made, ...): a bad path is the user's to fix, not a
    traceback."""
    if not err.filename:
        return (str(err).strip().splitlines() or [type(err).__name__])[0]
    name = repr(str(err.filename))
    if isinstance(err, FileExistsError | NotADirectoryError):
        return (f"{name} is a file where a folder is needed ({err.strerror}); allowed: a "
                "folder, or a path whose parents are folders")
    if isinstance(err, IsADirectoryError):
        return f"{name} is a folder where a file is needed; allowed: a file path"
    if isinstance(err, FileNotFoundError):
        return f"{name} does not exist ({err.strerror})"
    return f"cannot use {name}: {err.strerror or err}"


if __name__ == "__main__":
    sys.exit(main())
