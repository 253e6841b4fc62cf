"""``Summary``'s counters are declared once (issue #23): the merge, ``as_dict`` and
``from_dict`` follow from the declaration, and write and read exactly what the hand-kept
lists did. Pure: no model.

``tests/data/summary_counters.json`` holds what the hand-kept implementation (commit
ffa8f47, before the declaration) wrote for the cases below; it was written by running this
file as a script (``python tests/test_summary_counters.py``) on that commit. Do not rewrite
it to make a failing test pass: a difference is a change in what results files hold.
Its floats are shares, Wilson and Newcombe intervals and McNemar p-values rounded by
``as_dict``, computed with + - * / and sqrt only (correctly rounded in IEEE 754), so they
are the same on every machine and compared exactly.
"""

from __future__ import annotations

import dataclasses
import json
from itertools import product
from pathlib import Path
from typing import Any

import pytest

from lm_eval_cola.results.records import Record
from lm_eval_cola.results.summary import _COUNTERS, Summary
from tests.support.approx import differences

pytestmark = pytest.mark.quick

FIXTURE = Path(__file__).parent / "data" / "summary_counters.json"
LAYERS = 6
TASKS = ("arc_challenge", "gsm8k", "hellaswag")
# Keys of a summary written before records schema 3 (no cost, edits, non-finite chains or
# chance control) and of one written before the control's per-sample pairs.
SCHEMA3_KEYS = ("total_shortened_length", "total_fixed_length", "total_edits",
                "edit_samples", "total_evaluated_layers", "cost_samples", "nonfinite_chains",
                "nonfinite_samples", "decoy_full_right", "decoy_right_shortened",
                "decoy_full_wrong", "decoy_wrong_reached", "total_decoy_evaluations")
PAIR_KEYS = ("decoy_wrong_fixed", "decoy_wrong_both", "decoy_right_shorter",
             "decoy_right_both", "no_decoy_right", "no_decoy_wrong", "decoy_unpaired")
DERIVED_DECOY_KEYS = ("fixed_vs_decoy", "shorter_vs_decoy")
# Keys added after the fixture was written (issue #21: how short the decoy's chains are).
# The fixture stays as the hand-kept lists wrote it; these are compared without it, below
# and in tests/test_records.py.
ADDED_KEYS = ("total_decoy_shortened_length", "decoy_shortened_measured",
              "decoy_depth_ratio_shortened")


def decoy_entry(kind: int, i: int) -> dict[str, Any] | None:
    """Every shape a record's decoy entry has had: none (no control), no decoy to draw, a
    decoy with ``shortest``, an old one with ``shortened`` as written, one with chains."""
    reached = i % 3 != 0
    if kind == 0:
        return None
    if kind == 1:
        return {"target": None, "none": "every choice is a gold answer", "reached": False,
                "evaluations": 0}
    if kind == 2:
        return {"target": i % 4, "reached": reached, "evaluations": 2 + i % 5,
                "shortest": (None, 2, 4, LAYERS)[i % 4]}
    if kind == 3:
        return {"target": str(i), "reached": reached, "shortened": i % 2 == 0}
    return {"target": 1, "reached": reached, "evaluations": 3,
            "chains": [{"correct": i % 2 == 1, "length": 3 + i % 4}]}


def records(oracle: bool = True) -> list[Record]:
    """Every combination of the full chain's and the best chain's verdicts, best lengths
    (shorter than, and as long as, the full chain) and decoy shapes, with the cost,
    non-finite counts, times and chain text varied (some chains do not parse)."""
    out = []
    combos = product((True, False), (True, False), (2, 4, LAYERS), range(5))
    for i, (full, best, length, kind) in enumerate(combos):
        out.append(Record(
            task=TASKS[i % 3], doc_id=i, doc_hash=f"h{i}", model="m", searcher="mcts",
            oracle=oracle, settings={}, seed=i, num_layers=LAYERS, full_correct=full,
            best_chain="x?" if i % 7 == 0 else ("1-" if i % 2 else "0-")
            + str(length - 1 + i % 2),
            best_length=length, best_correct=best, best_score=0.0,
            evaluations=1 + i % 6, seconds=round(0.0137 * (i + 1), 4), responses=[],
            evaluated_layers=None if i % 4 == 0 else 5 + i, nonfinite=(None, 0, 2)[i % 3],
            decoy=decoy_entry(kind, i)))
    return out


def without(data: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """A summary as an older version wrote it: ``keys`` missing, its parts' too."""
    out = {k: v for k, v in data.items() if k not in keys}
    if "per_task" in out:
        out["per_task"] = {t: without(p, keys) for t, p in out["per_task"].items()}
    return out


def written(summary: Summary | None, timing: bool = True) -> Any:
    """``as_dict``'s output as a results file holds it (tuples as lists)."""
    return None if summary is None else json.loads(json.dumps(summary.as_dict(timing)))


def cases() -> dict[str, Any]:
    every = records()
    whole = Summary.from_records(every)
    parts = Summary.from_records(every[::2]).merge(Summary.from_records(every[1::2]))
    plain = Summary.from_records([r for r in every if r.decoy is None])
    old = without(written(whole), SCHEMA3_KEYS + PAIR_KEYS + DERIVED_DECOY_KEYS + ADDED_KEYS)
    unpaired = without(written(whole), PAIR_KEYS + DERIVED_DECOY_KEYS + ADDED_KEYS)
    read_unpaired = Summary.from_dict(unpaired)
    assert read_unpaired is not None
    return {
        "whole": written(whole),
        "whole_no_timing": written(whole, timing=False),
        "merged_halves": written(parts),
        "not_oracle": written(Summary.from_records(records(oracle=False)[::3])),
        "no_control": written(plain),
        "empty": written(Summary(num_layers=LAYERS)),
        "read_back": written(Summary.from_dict(written(whole))),
        "read_before_schema3": written(Summary.from_dict(old)),
        "read_before_pairs": written(read_unpaired),
        "before_pairs_merged_with_new": written(read_unpaired.merge(plain)),
        "read_without_exact_sums": written(Summary.from_dict(
            {k: v for k, v in written(whole).items() if k != "oracle_correct"})),
    }


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def key_order(value: Any) -> Any:
    """The nested keys in written order (results files are read by people too)."""
    if isinstance(value, dict):
        return [(k, key_order(v)) for k, v in value.items()]
    return None


def test_as_dict_and_from_dict_write_what_the_hand_kept_lists_wrote(expected):
    got = {name: None if case is None else without(case, ADDED_KEYS)
           for name, case in cases().items()}
    assert sorted(got) == sorted(expected)
    for name in expected:
        # Counts compare exactly; shares and intervals are floats, compared to a stated
        # tolerance (1e-9) rather than to the last bit of the machine that wrote the file.
        assert not differences(got[name], expected[name], name, rtol=1e-9, atol=1e-12)
        assert key_order(got[name]) == key_order(expected[name]), name


def test_the_cases_cover_every_counter(expected):
    """Each counter is non-zero in the whole summary and in the one before the pairs, so a
    counter left out of the merge, the output or the reading shows in the test above."""
    counters = [f for f in dataclasses.fields(Summary) if f.type in ("int", int)
                and f.name != "num_layers"]
    whole = Summary.from_records(records())
    assert len(counters) >= 29
    # every count is a declared counter: a plain ``int = 0`` field would be left out of the
    # merge, the output and the reading
    assert [name for name, _ in _COUNTERS] == [f.name for f in counters]
    assert [f.name for f in counters if not getattr(whole, f.name)] == ["decoy_unpaired"]
    assert expected["read_before_pairs"]["decoy_unpaired"] > 0
    assert expected["read_without_exact_sums"] is None


def test_added_keys_are_written_read_back_and_absent_from_older_summaries():
    """The keys added after the fixture: written beside the others, read back exactly, and
    read as 0 (depth None) from a summary written before them."""
    whole = Summary.from_records(records())
    data = written(whole)
    assert all(key in data for key in ADDED_KEYS)
    # from the records: right samples with a decoy entry of kind 2 (``shortest``) or 4
    # (chains) whose decoy has a chain shorter than the full chain
    lengths = []
    for r in records():
        if r.full_correct and r.decoy is not None and "none" not in r.decoy:
            if "shortest" in r.decoy and r.decoy["shortest"] not in (None, LAYERS):
                lengths.append(r.decoy["shortest"])
            elif "chains" in r.decoy:
                short = [c["length"] for c in r.decoy["chains"]
                         if c["correct"] and c["length"] < LAYERS]
                lengths += [min(short)] if short else []
    assert data["decoy_shortened_measured"] == len(lengths) > 0
    assert data["total_decoy_shortened_length"] == sum(lengths)
    assert data["decoy_depth_ratio_shortened"] == round(sum(lengths) / (len(lengths) * LAYERS), 4)
    older = Summary.from_dict(without(data, ADDED_KEYS))
    assert older is not None and older.decoy_shortened_measured == 0
    assert older.as_dict()["decoy_depth_ratio_shortened"] is None


def test_merge_and_read_back_are_exact():
    every = records()
    whole = Summary.from_records(every)
    thirds = [Summary.from_records(every[k::3]) for k in range(3)]
    merged = thirds[0].merge(thirds[1]).merge(thirds[2])
    assert merged == whole
    assert merged.by_task == whole.by_task
    read = Summary.from_dict(whole.as_dict())
    assert read is not None
    # the time is written to 3 decimals, the records keep 4: everything else is exact
    assert read.total_ticks == round(round(whole.total_ticks / 10_000, 3) * 10_000)
    assert dataclasses.replace(read, total_ticks=whole.total_ticks) == whole
    with pytest.raises(ValueError, match="cannot merge summaries of 6 and 4 layers"):
        whole.merge(Summary(num_layers=4))


if __name__ == "__main__":
    FIXTURE.write_text(json.dumps(cases(), indent=1) + "\n", encoding="utf-8")
