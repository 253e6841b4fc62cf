"""The lines under lm-eval's results table for a cola search run (no model: summaries as
``Summary.as_dict`` writes them, and lm-eval's own ``make_table``)."""

from __future__ import annotations

import pytest

from lm_eval_cola.harness.table_notes import table_notes
from lm_eval_cola.results.records import Record
from lm_eval_cola.results.summary import Summary

pytestmark = pytest.mark.quick


def record(task: str, doc_id: int, full: bool, best: bool, length: int,
           decoy: dict | None = None) -> Record:
    return Record(task=task, doc_id=doc_id, doc_hash="h", model="m", searcher="mcts",
                  oracle=True, settings={}, seed=1, full_correct=full,
                  best_chain=f"0-{length - 1}", best_length=length, best_correct=best,
                  best_score=0.0, num_layers=4, evaluations=3, seconds=0.1, responses=[],
                  decoy=decoy)


def results_of(records: list[Record], searcher: str = "mcts", oracle: bool = True) -> dict:
    summary = Summary(num_layers=4, oracle=oracle)
    for r in records:
        summary.add(r)
    return {"config": {"cola_searcher": searcher, "cola_summary": summary.as_dict()},
            "results": {t: {"alias": t, "acc,none": 0.5, "acc_stderr,none": 0.1}
                        for t in summary.tasks},
            "versions": {t: 1 for t in summary.tasks}, "n-shot": {t: 0 for t in summary.tasks}}


def test_one_line_per_task_with_the_caveat_counts_and_intervals():
    results = results_of([record("arc_easy", 0, True, True, 3),
                          record("arc_easy", 1, False, True, 4),
                          record("arc_easy", 2, False, False, 4),
                          record("arc_challenge", 0, True, True, 4)])
    notes = table_notes(results)
    assert [n.split(":")[0] for n in notes] == ["cola arc_challenge", "cola arc_easy"]
    easy = notes[1]
    assert "oracle upper bound, not a deployable score (mcts chose each" in easy
    assert "3 samples: oracle right 2/3 vs full chain 1/3" in easy
    assert "shorter when right 1/1 [0.21, 1.00]" in easy  # Wilson 95%, two decimals
    assert "fixed when wrong 1/2 [0.09, 0.91]" in easy
    assert "decoy" not in easy  # no control ran


def test_the_decoy_rates_where_the_control_ran():
    decoy = {"target": 1, "reached": True, "shortest": 2, "evaluations": 3}
    results = results_of([record("arc_easy", 0, True, True, 3, decoy),
                          record("arc_easy", 1, False, False, 4, decoy)])
    (note,) = table_notes(results)
    assert "decoy (chance control) shortened when right 1/1 [0.21, 1.00]" in note
    assert "decoy (chance control) reached when wrong 1/1 [0.21, 1.00]" in note
    # the paired test, as the summary gives it
    summary = results["config"]["cola_summary"]["per_task"]["arc_easy"]
    summary["fixed_vs_decoy"] = {"conclusion": "below chance", "mcnemar_p": 0.03125, "n": 6,
                                 "difference": -0.8333, "difference_ci": [-0.95, -0.3]}
    (note,) = table_notes(results)
    assert ("reached when wrong 1/1 [0.21, 1.00]: fixed when wrong is below chance (paired on "
            "6 samples, McNemar p=0.03125, difference -0.83 [-0.95, -0.30])") in note
    assert "no decoy" not in note


def test_samples_without_a_decoy_are_counted_in_the_line():
    none = {"target": None, "none": "only_wrong_answer_is_full_chains", "reached": False,
            "evaluations": 0}
    decoy = {"target": 1, "reached": False, "shortest": None, "evaluations": 3}
    results = results_of([record("piqa", 0, True, True, 3, decoy),
                          record("piqa", 1, False, False, 4, none),
                          record("piqa", 2, False, False, 4, none)])
    (note,) = table_notes(results)
    assert ("no decoy to draw for 2 wrong and 0 right samples (left out of the decoy's rates)"
            in note)
    assert "reached when wrong" not in note  # no wrong sample had a decoy


def test_searcher_none_is_not_called_an_oracle_and_fixed_chains_get_no_line():
    results = results_of([record("arc_easy", 0, True, True, 4)], searcher="none", oracle=False)
    (note,) = table_notes(results)
    assert "not an oracle" in note and "upper bound" not in note
    assert "full chain right 1/1" in note
    assert table_notes({"config": {"cola_chain": "0-3"}}) == []


def test_lm_evals_make_table_prints_them_under_its_last_table():
    from lm_eval_cola.compat import hooks

    hooks.install_evaluator_hook()
    from lm_eval.utils import make_table

    results = results_of([record("arc_easy", 0, True, True, 3)])
    lines = make_table(results).rstrip("\n").splitlines()
    assert lines[-2].startswith("|arc_easy") and lines[-1].startswith("cola arc_easy: oracle")
    grouped = {**results, "groups": {"arc": {"alias": "arc", "acc,none": 0.5}},
               "versions": {**results["versions"], "arc": 1}}
    assert "cola arc_easy" not in make_table(grouped)  # the groups table comes last
    assert make_table(grouped, "groups").rstrip("\n").splitlines()[-1].startswith(
        "cola arc_easy: oracle")
    plain = {**results, "config": {}}
    assert "cola" not in make_table(plain)
