"""The ``lm-eval-cola`` command: an explicit table of subcommands (``COMMANDS``), one module
each in this folder (``leaderboard``'s is ``reports/cli.py``, so that ``python -m
lm_eval_cola.reports`` runs where no model package can be imported). Nothing outside ``cli/``
imports this package: it is the top layer."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from lm_eval_cola import __version__
from lm_eval_cola.errors import UserError

logger = logging.getLogger("lm_eval_cola")


# The subcommands: name -> (module, help). Each module has ``add_arguments(parser)`` and
# ``run(args) -> int``; it is imported only when the parser is built, and none of them
# imports this module (no cycles).
COMMANDS: dict[str, tuple[str, str]] = {
    "layers": ("lm_eval_cola.cli.layers", "a model's layer count, and a chain in canonical "
               "form"),
    "verify": ("lm_eval_cola.cli.verify", "re-run every recorded best and full chain; exit 1 "
               "on a mismatch"),
    "compare": ("lm_eval_cola.cli.compare", "run lm-eval once per searcher on the same model, "
                "samples and budget, then print the leaderboard"),
    "table1": ("lm_eval_cola.cli.table1", "the paper's Table 1 (original / skip-only / "
               "recurrence-only / CoLa) for a model, with findings and chance control"),
    "leaderboard": ("lm_eval_cola.reports.cli", "one table (Markdown, CSV, HTML, plots) from "
                    "lm-eval results and cola records"),
    "calibrate": ("lm_eval_cola.cli.calibrate", "search one chain for a whole task on a "
                  "calibration split (or take the consensus of oracle records); write a chain "
                  "file"),
    "search": ("lm_eval_cola.cli.search", "oracle search on a calibration split (train, "
               "validation): records for calibrate --from-records and train-router"),
    "train-router": ("lm_eval_cola.cli.train_router", "fit a router (cola_router) on oracle "
                     "records of a calibration split; write a router file"),
    "prune": ("lm_eval_cola.cli.prune", "static pruning baselines (block influence, SLEB) to "
              "a target depth; write a chain file"),
    "export": ("lm_eval_cola.cli.export", "write a chain as a standalone Hugging Face "
               "checkpoint (plain lm_eval --model hf loads it)"),
}


def _command(name: str) -> tuple[Callable, Callable]:
    """(add_arguments, run) of a subcommand."""
    import importlib

    module = importlib.import_module(COMMANDS[name][0])
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
