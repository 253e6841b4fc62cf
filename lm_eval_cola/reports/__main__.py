"""``python -m lm_eval_cola.reports RUN_DIR ... --out board/``: the leaderboard subcommand on
its own, without the ``lm-eval-cola`` command's other subcommands."""

import sys

from lm_eval_cola.reports.cli import main

sys.exit(main())
