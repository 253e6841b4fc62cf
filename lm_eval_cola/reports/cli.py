"""The ``leaderboard`` subcommand: ``add_arguments(parser)`` and ``run(args)`` for the
``lm-eval-cola`` command to register, ``report`` for ``compare`` to end with, and ``main``
for ``python -m lm_eval_cola.reports`` (the same command on its own).

This module must not import ``lm_eval_cola.cli``: that module registers this one.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from lm_eval_cola.errors import UserError
from lm_eval_cola.reports.board import Board, build_board
from lm_eval_cola.reports.render import to_markdown, write_board

NAME = "leaderboard"
HELP = "one table (Markdown, CSV, HTML, plots) from lm-eval results and cola records"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="folders with lm-eval results (searched recursively) or results files")
    parser.add_argument("--out", default=None,
                        help="write leaderboard.md, .csv, .html and the plots here "
                             "(default: print the Markdown table only)")
    parser.add_argument("--no_plots", action="store_true", help="skip the plots")
    parser.add_argument("--title", default="Leaderboard", help="the page's title")


def report(board: Board, out_dir: str | Path | None, plots: bool = True,
           title: str = "Leaderboard") -> int:
    """Print the errors, warnings and the Markdown tables; write the files into ``out_dir``
    when given. Returns the exit status: 0, or 1 when some input could not be read (the
    board was still built from the others)."""
    # The command's own output, not log records: one "error: ..." line per bad input, the
    # way every other lm-eval-cola error reads, and the table on stdout for piping.
    for error in board.errors:
        print(f"error: {error}", file=sys.stderr)
    for warning in board.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if board.errors:
        print(f"warning: leaderboard built from the readable inputs only "
              f"({len(board.rows)} rows)", file=sys.stderr)
    if out_dir is not None:
        paths = write_board(board, out_dir, plots=plots, title=title)
        print(to_markdown(board, None, title))
        written = [paths["markdown"], paths["csv"], paths["html"], paths["findings"],
                   *paths["tables"], *paths["plots"]]
        print(f"wrote {len(written)} files to {out_dir}: "
              + ", ".join(p.name for p in written), file=sys.stderr)
    else:
        print(to_markdown(board, None, title))
    return 1 if board.errors else 0


def run(args: argparse.Namespace) -> int:
    """The subcommand; a UserError (no usable input at all) is the caller's to print."""
    board = build_board(args.run_dirs)
    return report(board, args.out, plots=not args.no_plots, title=args.title)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lm_eval_cola.reports", description=HELP)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
