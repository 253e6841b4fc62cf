"""benchmarks/parallel_quality.py: runs differing only in ``parallel`` are paired sample by
sample on the samples all of them searched, and runs differing otherwise are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lm_eval_cola.errors import UserError
from tests.support.record_rows import RECORD
from tests.support.scripts import load_script

pytestmark = pytest.mark.quick

quality = load_script("benchmarks/parallel_quality.py")


def _write(path: Path, outcomes: list[tuple[bool, bool, int]], **settings) -> str:
    """One record a sample: (full chain right, best chain right, best length of 4)."""
    with path.open("w") as handle:
        for doc_id, (full, best, length) in enumerate(outcomes):
            row = dict(RECORD, doc_id=doc_id, full_correct=full, best_correct=best,
                       best_length=length, settings={"budget": 8, **settings})
            handle.write(json.dumps(row) + "\n")
    return str(path)


def test_pairs_are_counted_per_sample_on_the_common_samples(tmp_path):
    reference = _write(tmp_path / "w1.jsonl", [(True, True, 3), (False, True, 4),
                                               (False, False, 4), (False, True, 4)],
                       parallel=1)
    # W=4: loses sample 1, gains sample 2, has no sample 3 (left out of every pair)
    other = _write(tmp_path / "w4.jsonl", [(True, True, 4), (False, False, 4),
                                           (False, True, 4)], parallel=4)
    lines = quality.report([reference, other], None)
    assert lines[0].startswith("3 samples in every run")
    table = "\n".join(lines)
    # oracle accuracy: reference 2/3 (samples 0, 1), W=4 2/3 (0, 2): one discordant each way
    assert "| w4.jsonl | oracle accuracy | 3 | 1 | 1 | +0.0 points" in table
    # fixed when wrong over samples 1 and 2 (wrong full chain in both runs)
    assert "| w4.jsonl | fixed when wrong | 2 | 1 | 1 |" in table
    # shorter when right: the reference shortened sample 0 (3 < 4), W=4 did not
    assert "| w4.jsonl | shorter when right | 1 | 0 | 1 | -100.0 points" in table


def test_limit_takes_the_reference_s_first_doc_ids(tmp_path):
    rows = [(True, True, 4)] * 5
    reference = _write(tmp_path / "a.jsonl", rows, parallel=1)
    other = _write(tmp_path / "b.jsonl", rows, parallel=8)
    assert quality.report([reference, other], 2)[0].startswith("2 samples in every run")


def test_a_run_with_another_search_setting_is_refused(tmp_path):
    reference = _write(tmp_path / "a.jsonl", [(True, True, 4)], parallel=1)
    other = _write(tmp_path / "b.jsonl", [(True, True, 4)], parallel=4, budget=16)
    with pytest.raises(UserError, match="budget=16 differs from the reference's 8"):
        quality.report([reference, other], None)
