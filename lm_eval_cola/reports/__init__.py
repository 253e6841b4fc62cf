"""Reports: the leaderboard over lm-eval results files and the cola records behind them.

One module per stage: ``runs`` finds and reads the files, ``board`` makes the rows (model x
variant, seeds of one variant as one row), ``findings`` what a findings cell says (counts,
Wilson intervals, mean ± sd over seeds), ``tables`` the tables' cells and CSV lines,
``render`` writes Markdown, CSV and the HTML page, ``plots`` draws the PNGs, ``cli`` is the
``leaderboard`` subcommand.

Reports never run a model: they import neither torch, transformers, lm-eval nor the
engine or the models, only ``records``, ``summary``, ``stats``, ``chain`` and ``errors``
of this package, and matplotlib when plots are drawn.
"""

from lm_eval_cola.reports.board import Board, Row, build_board, combine_summaries
from lm_eval_cola.reports.cli import add_arguments, main, report, run
from lm_eval_cola.reports.findings import Findings, Rate, findings_of
from lm_eval_cola.reports.render import (
    ORACLE_NOTE,
    to_html,
    to_markdown,
    write_board,
)
from lm_eval_cola.reports.runs import (
    RunDirError,
    RunFile,
    TaskScore,
    read_run_file,
    stored_model_args,
)
from lm_eval_cola.reports.tables import fmt_score

__all__ = [
    "ORACLE_NOTE", "Board", "Findings", "Rate", "Row", "RunDirError", "RunFile", "TaskScore",
    "add_arguments", "build_board", "combine_summaries", "findings_of", "fmt_score", "main",
    "stored_model_args", "read_run_file", "report", "run", "to_html", "to_markdown",
    "write_board",
]
