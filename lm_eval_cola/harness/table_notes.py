"""The lines printed under lm-eval's results table for a cola search run.

lm-eval's table shows a searching model's scores as plain accuracies; with an oracle
searcher each sample's chain was chosen with its gold answer, so they are upper bounds.
One line per task says so beside the numbers, and gives the findings from the run's
summary (``config["cola_summary"]``, ``summary.Summary.as_dict``): each with its
denominator and Wilson 95% interval, and with ``control=decoy`` the chance control's rates
and the paired test that compares them on the same samples. ``compat/hooks.py`` appends
them to lm-eval's ``make_table`` output, so they print wherever the table does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def table_notes(results: Mapping[str, Any]) -> list[str]:
    """One line per searched task; none for runs without a search (fixed chain, router,
    other models)."""
    config = results.get("config") or {}
    summary = config.get("cola_summary")
    if not isinstance(summary, Mapping):
        return []
    searcher = str(config.get("cola_searcher") or "the searcher")
    per_task = summary.get("per_task") or {}
    if not per_task and len(summary.get("tasks") or ()) == 1:
        per_task = {summary["tasks"][0]: summary}  # a summary written without per_task
    return [task_note(task, per_task[task], searcher) for task in sorted(per_task)]


def task_note(task: str, summary: Mapping[str, Any], searcher: str) -> str:
    n = _count(summary, "samples")
    right = _count(summary, "full_chain_right")
    if not summary.get("oracle", True):
        return (f"cola {task}: searcher {searcher} answered with the full chain (no search, "
                f"not an oracle); {n} samples, full chain right {right}/{n}")
    wrong = _count(summary, "full_chain_wrong")
    parts = [
        f"cola {task}: oracle upper bound, not a deployable score ({searcher} chose each "
        f"sample's chain with its gold answer); {n} samples: oracle right "
        f"{_count(summary, 'oracle_correct')}/{n} vs full chain {right}/{n}",
        f"shorter when right {_count(summary, 'right_with_shorter_chain')}/{right}"
        f"{_ci(summary.get('shorter_when_right_ci'))}",
        f"fixed when wrong {_count(summary, 'wrong_fixed_by_some_chain')}/{wrong}"
        f"{_ci(summary.get('fixed_when_wrong_ci'))}",
    ]
    decoy_right = _count(summary, "decoy_full_right")
    decoy_wrong = _count(summary, "decoy_full_wrong")
    if decoy_right:
        parts.append(f"decoy (chance control) shortened when right "
                     f"{_count(summary, 'decoy_right_shortened')}/{decoy_right}"
                     f"{_ci(summary.get('decoy_shortened_when_right_ci'))}"
                     f"{_vs(summary, 'shorter', 'shorter when right')}")
    if decoy_wrong:
        parts.append(f"decoy (chance control) reached when wrong "
                     f"{_count(summary, 'decoy_wrong_reached')}/{decoy_wrong}"
                     f"{_ci(summary.get('decoy_reached_when_wrong_ci'))}"
                     f"{_vs(summary, 'fixed', 'fixed when wrong')}")
    none_right, none_wrong = _count(summary, "no_decoy_right"), _count(summary, "no_decoy_wrong")
    if none_right or none_wrong:
        parts.append(f"no decoy to draw for {none_wrong} wrong and {none_right} right samples "
                     f"(left out of the decoy's rates)")
    return "; ".join(parts) + " ([95% intervals])"


def _count(summary: Mapping[str, Any], key: str) -> int:
    return int(summary.get(key) or 0)


def _ci(bounds: Any) -> str:
    if not isinstance(bounds, list | tuple) or len(bounds) != 2:
        return ""
    return f" [{float(bounds[0]):.2f}, {float(bounds[1]):.2f}]"


def _vs(summary: Mapping[str, Any], key: str, finding: str) -> str:
    """The paired test of the finding against its control on the same samples, where the
    summary has it (``fixed_vs_decoy``, ``shorter_vs_decoy``)."""
    paired = summary.get(f"{key}_vs_decoy")
    if not isinstance(paired, Mapping) or not paired.get("conclusion"):
        return ""
    ci = paired.get("difference_ci")
    diff = paired.get("difference")
    delta = (f", difference {float(diff):+.2f} [{float(ci[0]):+.2f}, {float(ci[1]):+.2f}]"
             if diff is not None and isinstance(ci, list | tuple) and len(ci) == 2 else "")
    return (f": {finding} is {paired['conclusion']} (paired on {paired.get('n')} samples, "
            f"McNemar p={paired.get('mcnemar_p')}{delta})")
