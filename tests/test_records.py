"""Records schema 3 (non-finite counts, cost, every chain, the decoy) and the summary a
paper prints from them: intervals, depth ratios apart, edits, cost, decoy rates; exact
merges and round trips, older records and summaries still read."""

from __future__ import annotations

import json

import pytest

from lm_eval_cola.results.records import SCHEMA_VERSION, ChainEntry, Record, read_records
from lm_eval_cola.results.stats import interval
from lm_eval_cola.results.summary import Summary

pytestmark = pytest.mark.quick

BASE = {
    "task": "arc_challenge", "doc_id": 0, "doc_hash": "h", "model": "m", "searcher": "mcts",
    "oracle": True, "settings": {}, "seed": 1, "num_layers": 4, "full_correct": True,
    "best_chain": "0-3", "best_length": 4, "best_correct": True, "best_score": 1.0,
    "evaluations": 1, "seconds": 0.1, "responses": [[-1.0, True]],
}


def record(**changes) -> Record:
    return Record.from_json({**BASE, **changes})


def decoy(reached=False, shortened=False, evaluations=3):
    return {"target": 2, "reached": reached, "best_chain": "0-3", "best_length": 4,
            "evaluations": evaluations, "shortened": shortened}


def sample_records() -> list[Record]:
    return [
        # right, shortened by 1 layer (one skip), decoy shortened too
        record(doc_id=0, best_chain="0+2-3", best_length=3, evaluations=5, nonfinite=0,
               evaluated_layers=18, decoy=decoy(True, True)),
        # right, not shortened; one chain broke (NaN)
        record(doc_id=1, evaluations=4, nonfinite=1, evaluated_layers=14, decoy=decoy()),
        # wrong, fixed by a repeat
        record(doc_id=2, full_correct=False, best_chain="0-1+1-3", best_length=5,
               evaluations=6, nonfinite=2, evaluated_layers=25, decoy=decoy(True)),
        # wrong, not fixed; no decoy for it
        record(doc_id=3, task="gsm8k", full_correct=False, best_correct=False, evaluations=6,
               nonfinite=0, evaluated_layers=24),
        # wrong, fixed by dropping two layers; decoy not reached
        record(doc_id=4, task="gsm8k", full_correct=False, best_chain="0+3", best_length=2,
               evaluations=2, nonfinite=0, evaluated_layers=6, decoy=decoy()),
    ]


def test_schema_3_round_trip_and_older_records_read(tmp_path):
    entry = ChainEntry(chain="0-3", length=4, answer=1, correct=False, score=-0.2, finite=True)
    new = record(nonfinite=1, evaluated_layers=7, chains=[entry.to_json()], decoy=decoy())
    assert new.schema == SCHEMA_VERSION == 3
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(new.to_json()) + "\n" + json.dumps({**BASE, "schema": 2}) + "\n"
                    + json.dumps({k: v for k, v in BASE.items() if k != "oracle"}) + "\n")
    back, two, one = read_records(path)
    assert back == new and back.chains[0]["answer"] == 1 and back.decoy["target"] == 2
    for old in (two, one):  # defaults: unknown, not zero
        assert old.nonfinite is None and old.evaluated_layers is None
        assert old.chains == [] and old.decoy is None
    assert two.schema == 2
    with pytest.raises(ValueError, match="newer"):
        Record.from_json({**BASE, "schema": SCHEMA_VERSION + 1})


def test_summary_findings_intervals_and_control():
    s = Summary.from_records(sample_records()).as_dict()
    assert (s["full_chain_right"], s["right_with_shorter_chain"]) == (2, 1)
    assert (s["full_chain_wrong"], s["wrong_fixed_by_some_chain"]) == (3, 2)
    assert s["shorter_when_right_ci"] == interval(1, 2)
    assert s["fixed_when_wrong_ci"] == interval(2, 3)
    assert s["oracle_accuracy_ci"] == interval(4, 5)
    assert s["depth_ratio_shortened"] == 0.75  # 3 / 4
    assert s["depth_ratio_fixed"] == round((5 + 2) / (2 * 4), 4)
    assert s["mean_edits"] == round((1 + 0 + 1 + 0 + 2) / 5, 3)
    assert s["total_evaluated_layers"] == 87 and s["mean_evaluated_layers"] == 17.4
    assert (s["nonfinite_chains"], s["nonfinite_samples"]) == (3, 2)
    assert (s["decoy_full_right"], s["decoy_right_shortened"]) == (2, 1)
    assert (s["decoy_full_wrong"], s["decoy_wrong_reached"]) == (2, 1)
    assert s["decoy_reached_when_wrong"] == 0.5 and s["decoy_shortened_when_right"] == 0.5
    assert s["decoy_reached_when_wrong_ci"] == interval(1, 2)
    assert s["total_decoy_evaluations"] == 12
    # the one right sample the decoy shortened kept no length (``shortened`` only)
    assert s["decoy_shortened_measured"] == 0 and s["decoy_depth_ratio_shortened"] is None
    per_task = s["per_task"]
    assert sorted(per_task) == ["arc_challenge", "gsm8k"]
    assert per_task["gsm8k"]["samples"] == 2 and per_task["gsm8k"]["fixed_when_wrong"] == 0.5
    assert "per_task" not in per_task["gsm8k"]
    assert "total_search_seconds" not in per_task["gsm8k"]  # timing only for the whole run
    # the keys every report reads are all still there
    for key in ("shorter_when_right", "fixed_when_wrong", "oracle_accuracy",
                "full_chain_accuracy", "mean_depth_ratio", "mean_evaluations",
                "total_search_seconds", "seconds_per_sample", "total_best_length"):
        assert key in s


def test_decoy_depth_is_the_decoy_shortest_chains_over_its_own_samples():
    """Right samples only, and only those the decoy shortened: 2 and 3 of 4 layers, by
    ``shortest`` and by the decoy's chains; a full-length decoy hit and a wrong sample's
    decoy do not count."""
    rows = [
        record(doc_id=0, decoy={**decoy(True), "shortest": 2}),
        record(doc_id=1, decoy={**decoy(True), "chains": [
            {"correct": True, "length": 5}, {"correct": True, "length": 3},
            {"correct": False, "length": 1}]}),
        record(doc_id=2, decoy={**decoy(True), "shortest": 4}),  # as long as the full chain
        record(doc_id=3, full_correct=False, best_correct=False,
               decoy={**decoy(True), "shortest": 1}),
    ]
    s = Summary.from_records(rows).as_dict()
    assert (s["decoy_full_right"], s["decoy_right_shortened"]) == (3, 2)
    assert (s["decoy_shortened_measured"], s["total_decoy_shortened_length"]) == (2, 5)
    assert s["decoy_depth_ratio_shortened"] == 0.625  # (2 + 3) / (2 * 4)


def test_merge_and_round_trip_are_exact():
    rows = sample_records()
    whole = Summary.from_records(rows)
    merged = Summary.from_records(rows[:2]).merge(Summary.from_records(rows[2:]))
    assert merged.as_dict() == whole.as_dict()
    back = Summary.from_dict(json.loads(json.dumps(whole.as_dict())))
    assert back is not None and back.as_dict() == whole.as_dict()
    # a summary written before schema 3 still reads, its new counts as zero
    old = {k: v for k, v in whole.as_dict().items() if k in (
        "oracle", "num_layers", "samples", "tasks", "full_chain_right",
        "right_with_shorter_chain", "full_chain_wrong", "wrong_fixed_by_some_chain",
        "total_search_seconds", "total_best_length", "total_evaluations", "oracle_correct")}
    read = Summary.from_dict(old)
    assert read is not None and read.samples == 5 and read.total_evaluated_layers == 0
    assert read.as_dict()["mean_evaluated_layers"] is None
    assert read.as_dict()["decoy_reached_when_wrong"] is None


def test_records_without_the_new_fields_count_as_unknown():
    s = Summary.from_records([record(), record(doc_id=1, nonfinite=2, evaluated_layers=9)])
    d = s.as_dict()
    assert d["cost_samples"] == 1 and d["mean_evaluated_layers"] == 9.0
    assert d["nonfinite_chains"] == 2 and d["decoy_full_right"] == 0
    assert d["decoy_shortened_when_right_ci"] is None
    assert Summary.from_records([record(best_chain="not a chain")]).edit_samples == 0
