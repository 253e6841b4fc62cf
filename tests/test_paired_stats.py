"""The paired test of a finding against its chance control (issue #21): exact McNemar and
Newcombe's paired difference interval against hand computations, and the summary's
per-sample pairs (with samples that have no decoy, and old records) through merge and
from_dict. Pure: no model.

Hand computations: z = 1.96, z^2 = 3.8416; Wilson(k, n) = (centre - half, centre + half)
with den = 1 + z^2/n, centre = (p + z^2/(2n)) / den, half = z sqrt(p(1-p)/n + z^2/(4n^2))
/ den. Newcombe (1998) method 10, d = p1 - p2, phi as in ``stats.paired_difference_interval``:
low = d - sqrt((p1-l1)^2 + (u2-p2)^2 - 2 phi (p1-l1)(u2-p2)),
high = d + sqrt((p2-l2)^2 + (u1-p1)^2 - 2 phi (p2-l2)(u1-p1)).
"""

from __future__ import annotations

import pytest

from lm_eval_cola.results.records import Record
from lm_eval_cola.results.stats import (
    ABOVE,
    BELOW,
    UNDECIDED,
    Paired,
    conclusion,
    mcnemar_exact,
    paired_difference_interval,
)
from lm_eval_cola.results.summary import Summary

pytestmark = pytest.mark.quick

TOL = 5e-6  # the hand values below are written to 6 decimals


@pytest.mark.parametrize(("b", "c", "p"), [
    (9, 2, 134 / 2048),  # 2 * (C(11,0) + C(11,1) + C(11,2)) / 2^11 = 2 * (1 + 11 + 55) / 2048
    (2, 9, 134 / 2048),  # two-sided: the same with the roles swapped
    (5, 1, 0.21875),  # 2 * (1 + 6) / 2^6 = 14 / 64
    (0, 7, 0.015625),  # 2 * 1 / 2^7
    (4, 3, 1.0),  # 2 * (1 + 7 + 21 + 35) / 2^7 = 128 / 128
    (0, 0, 1.0),  # no discordant pair: nothing tells gold from decoy
    (12, 1, 28 / 8192),  # 2 * (1 + 13) / 2^13
])
def test_mcnemar_exact_matches_the_binomial_tail_by_hand(b, c, p):
    assert mcnemar_exact(b, c) == pytest.approx(p, abs=1e-15)


def test_mcnemar_exact_matches_scipys_binomial_test_on_many_pairs():
    """An independent implementation (scipy's exact binomial test), where it is installed."""
    stats = pytest.importorskip("scipy.stats")
    for b in range(0, 41, 3):
        for c in range(0, 41, 4):
            if b + c:
                expected = stats.binomtest(b, b + c, 0.5).pvalue
                assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="counts >= 0"):
        mcnemar_exact(-1, 2)


def test_newcombe_interval_with_no_correlation_by_hand():
    # both 3, gold only 9, decoy only 2, neither 6: n = 20, p1 = 12/20 = 0.6, p2 = 5/20 =
    # 0.25, d = 0.35. A = 3*6 - 9*2 = 0, so phi = 0.
    # Wilson(12, 20): den = 1.19208; centre = (0.6 + 0.09604)/1.19208 = 0.583887;
    #   half = 1.96 sqrt(0.012 + 0.002401)/1.19208 = 0.197309 -> [0.386578, 0.781196]
    # Wilson(5, 20): centre = (0.25 + 0.09604)/1.19208 = 0.290283;
    #   half = 1.96 sqrt(0.009375 + 0.002401)/1.19208 = 0.178422 -> [0.111860, 0.468705]
    # low = 0.35 - sqrt(0.213422^2 + 0.218705^2) = 0.35 - sqrt(0.093381) = 0.044417
    # high = 0.35 + sqrt(0.138140^2 + 0.181196^2) = 0.35 + sqrt(0.051915) = 0.577848
    low, high = paired_difference_interval(3, 9, 2, 6)
    assert low == pytest.approx(0.044417, abs=TOL) and high == pytest.approx(0.577848, abs=TOL)
    paired = Paired(both=3, gold_only=9, decoy_only=2, neither=6)
    assert (paired.n, paired.gold, paired.decoy) == (20, 12, 5)
    assert paired.difference == pytest.approx(0.35, abs=1e-12)
    # p = 0.0654 >= 0.05 although the interval excludes 0: both must agree to conclude
    assert paired.conclusion == UNDECIDED


def test_newcombe_interval_with_positive_correlation_by_hand():
    # both 10, gold only 5, decoy only 1, neither 4: n = 20, p1 = 0.75, p2 = 0.55, d = 0.2.
    # A = 10*4 - 5*1 = 35 > n/2 = 10: phi = (35 - 10)/sqrt(15*5*11*9) = 25/86.168440
    #   = 0.290129
    # Wilson(15, 20) = [0.531295, 0.888140] (the mirror of Wilson(5, 20) above)
    # Wilson(11, 20): centre = (0.55 + 0.09604)/1.19208 = 0.541943;
    #   half = 1.96 sqrt(0.012375 + 0.002401)/1.19208 = 0.199861 -> [0.342082, 0.741805]
    # low = 0.2 - sqrt(0.218705^2 + 0.191805^2 - 2*0.290129*0.218705*0.191805)
    #     = 0.2 - sqrt(0.047832 + 0.036789 - 0.024341) = 0.2 - 0.245520 = -0.045520
    # high = 0.2 + sqrt(0.207918^2 + 0.138140^2 - 2*0.290129*0.207918*0.138140)
    #      = 0.2 + sqrt(0.043230 + 0.019083 - 0.016665) = 0.2 + 0.213654 = 0.413654
    low, high = paired_difference_interval(10, 5, 1, 4)
    assert low == pytest.approx(-0.045520, abs=TOL)
    assert high == pytest.approx(0.413654, abs=TOL)


def test_newcombe_interval_at_the_corrections_edges_by_hand():
    # No discordant pair: both 5, neither 5, p1 = p2 = 0.5. A = 25 > 5: phi = (25 - 5)/
    # sqrt(5^4) = 0.8. Wilson(5, 10): den = 1.38416, centre 0.5, half = 1.96 sqrt(0.025 +
    # 0.009604)/1.38416 = 0.263410; low = -sqrt(2 * 0.263410^2 * (1 - 0.8)) = -0.166595.
    low, high = paired_difference_interval(5, 0, 0, 5)
    assert low == pytest.approx(-0.166595, abs=TOL) and high == pytest.approx(0.166595, abs=TOL)
    # Only discordant pairs: gold only 4, decoy only 3, n = 7. A = -12 < 0: phi = -12/
    # sqrt(4*3*3*4) = -1, so each root is the sum of the two distances. Wilson(4, 7): den =
    # 1.548800, centre = (0.571429 + 0.274400)/1.5488 = 0.546119, half = 1.96 sqrt(0.034985
    # + 0.019600)/1.5488 = 0.295664 -> [0.250454, 0.841783]; Wilson(3, 7) its mirror,
    # [0.158217, 0.749546]. d = 1/7 = 0.142857;
    # low = 0.142857 - (0.320975 + 0.320975) = -0.499092,
    # high = 0.142857 + (0.270354 + 0.270354) = 0.683566
    low, high = paired_difference_interval(0, 4, 3, 0)
    assert low == pytest.approx(-0.499092, abs=TOL) and high == pytest.approx(0.683566, abs=TOL)
    with pytest.raises(ValueError, match="n >= 1"):
        paired_difference_interval(0, 0, 0, 0)


def test_the_conclusion_needs_both_the_test_and_the_interval():
    above = Paired(both=2, gold_only=12, decoy_only=1, neither=5)  # p = 28/8192
    below = Paired(both=2, gold_only=1, decoy_only=12, neither=5)
    assert above.conclusion == ABOVE and below.conclusion == BELOW
    # swapping gold and decoy negates the interval
    assert below.interval == pytest.approx(tuple(-x for x in reversed(above.interval)),
                                           abs=1e-12)
    assert conclusion(0.04, -0.01, 0.3) == UNDECIDED  # interval straddles 0
    assert conclusion(0.06, 0.01, 0.3) == UNDECIDED  # p not below 0.05
    assert conclusion(0.049, 0.001, 0.3) == ABOVE
    written = above.as_dict()
    assert written is not None
    assert {k: written[k] for k in ("n", "gold", "decoy", "gold_only", "decoy_only")} == {
        "n": 20, "gold": 14, "decoy": 3, "gold_only": 12, "decoy_only": 1}
    assert written["mcnemar_p"] == pytest.approx(0.003418, abs=1e-9)  # 4 significant digits
    assert written["difference"] == 0.55 and written["conclusion"] == ABOVE
    assert Paired(0, 0, 0, 0).as_dict() is None


# ---------------------------------------------------------------------------- the summary

LAYERS = 4
NO_DECOY = {"target": None, "none": "every choice is a gold answer"}


def record(doc_id: int, full: bool, best_correct: bool, best_length: int,
           decoy: dict | None, task: str = "arc_challenge") -> Record:
    return Record(task=task, doc_id=doc_id, doc_hash=f"h{doc_id}", model="m", searcher="mcts",
                  oracle=True, settings={}, seed=doc_id, num_layers=LAYERS, full_correct=full,
                  best_chain=f"0-{best_length - 1}", best_length=best_length,
                  best_correct=best_correct, best_score=0.0, evaluations=3, seconds=0.01,
                  responses=[], decoy=decoy)


def synthetic() -> list[Record]:
    """Wrong samples with a decoy: (fixed, reached) = both, gold only x2, decoy only,
    neither; right samples with a decoy: (shortened, decoy shortened) = both, gold only,
    decoy only, neither (an old record: ``shortened`` as written, no ``shortest``); and one
    right and one wrong sample without a decoy, the wrong one fixed."""
    return [
        record(0, False, True, 3, {"target": 1, "reached": True, "evaluations": 3}),
        record(1, False, True, 5, {"target": 2, "reached": False, "evaluations": 3}),
        record(2, False, True, 2, {"target": 0, "reached": False, "evaluations": 3}),
        record(3, False, False, 4, {"target": 3, "reached": True, "evaluations": 3}),
        record(4, False, False, 4, {"target": 1, "reached": False, "evaluations": 3}),
        record(5, True, True, 2, {"target": 2, "reached": True, "shortest": 3}, "gsm8k"),
        record(6, True, True, 3, {"target": "7", "reached": False, "shortest": None}, "gsm8k"),
        record(7, True, True, 4, {"target": 0, "reached": True, "shortest": 2}, "gsm8k"),
        record(8, True, True, 4, {"target": 1, "reached": False, "shortened": False}, "gsm8k"),
        record(9, False, True, 3, dict(NO_DECOY)),
        record(10, True, True, 2, dict(NO_DECOY), "gsm8k"),
    ]


def test_the_summary_pairs_each_sample_with_a_decoy():
    summary = Summary.from_records(synthetic())
    out = summary.as_dict()
    # the findings over all samples: 4 of 6 wrong fixed (the no-decoy one too), 3 of 5 right
    # shortened
    assert (out["wrong_fixed_by_some_chain"], out["full_chain_wrong"]) == (4, 6)
    assert (out["right_with_shorter_chain"], out["full_chain_right"]) == (3, 5)
    # the decoy's rates over the samples with a decoy only
    assert (out["decoy_wrong_reached"], out["decoy_full_wrong"]) == (2, 5)
    assert (out["decoy_right_shortened"], out["decoy_full_right"]) == (2, 4)
    assert (out["no_decoy_right"], out["no_decoy_wrong"]) == (1, 1)
    fixed = out["fixed_vs_decoy"]
    assert {k: fixed[k] for k in ("n", "gold", "decoy", "both", "gold_only", "decoy_only",
                                  "neither")} == {"n": 5, "gold": 3, "decoy": 2, "both": 1,
                                                  "gold_only": 2, "decoy_only": 1, "neither": 1}
    assert fixed["mcnemar_p"] == 1.0  # 2 * (1 + 3) / 2^3, capped at 1
    assert fixed["difference"] == 0.2  # (2 - 1) / 5
    low, high = paired_difference_interval(1, 2, 1, 1)
    assert fixed["difference_ci"] == [round(low, 4), round(high, 4)]
    assert fixed["conclusion"] == UNDECIDED
    shorter = out["shorter_vs_decoy"]
    assert {k: shorter[k] for k in ("n", "gold", "decoy", "both", "gold_only", "decoy_only",
                                    "neither")} == {"n": 4, "gold": 2, "decoy": 2, "both": 1,
                                                    "gold_only": 1, "decoy_only": 1,
                                                    "neither": 1}
    assert shorter["difference"] == 0.0 and shorter["mcnemar_p"] == 1.0
    # per task: arc_challenge holds the wrong samples, gsm8k the right ones
    assert out["per_task"]["arc_challenge"]["shorter_vs_decoy"] is None
    assert out["per_task"]["arc_challenge"]["fixed_vs_decoy"] == fixed
    assert out["per_task"]["gsm8k"]["shorter_vs_decoy"] == shorter
    assert "fixed vs decoy only 2:1" in summary.progress_line()


def test_pair_counts_merge_and_read_back_exactly():
    records = synthetic()
    whole = Summary.from_records(records)
    parts = Summary.from_records(records[::2]).merge(Summary.from_records(records[1::2]))
    assert parts == whole
    assert parts.as_dict(timing=False) == whole.as_dict(timing=False)
    again = Summary.from_dict(whole.as_dict())
    assert again == whole and again is not None
    # a task's part is written without its time: compare the rest
    assert again.by_task["gsm8k"].as_dict(timing=False) == \
        whole.by_task["gsm8k"].as_dict(timing=False)
    assert again.by_task["gsm8k"].decoy_right_both == 1
    assert again.as_dict()["fixed_vs_decoy"] == whole.as_dict()["fixed_vs_decoy"]


def test_no_control_and_old_summaries_give_no_paired_test():
    plain = Summary.from_records([record(0, False, True, 3, None), record(1, True, True, 2, None)])
    out = plain.as_dict()
    assert out["fixed_vs_decoy"] is None and out["shorter_vs_decoy"] is None
    assert (out["no_decoy_right"], out["no_decoy_wrong"], out["decoy_full_wrong"]) == (0, 0, 0)
    # a summary written before the pairs were counted: its decoy samples' pairs are unknown
    old = Summary.from_records(synthetic()).as_dict()
    for key in ("decoy_wrong_fixed", "decoy_wrong_both", "decoy_right_shorter",
                "decoy_right_both", "no_decoy_right", "no_decoy_wrong", "decoy_unpaired",
                "fixed_vs_decoy", "shorter_vs_decoy", "per_task"):
        del old[key]
    read = Summary.from_dict(old)
    assert read is not None and read.decoy_unpaired == 9
    assert read.paired_fixed() is None and read.paired_shorter() is None
    merged = read.merge(Summary.from_records(synthetic()))
    assert merged.as_dict()["fixed_vs_decoy"] is None  # unknown pairs poison the test
    assert Summary.from_dict(merged.as_dict()) == merged


def test_from_pairs_counts_each_kind_of_pair():
    pairs = [(True, True)] * 3 + [(True, False)] * 2 + [(False, True)] + [(False, False)] * 4
    assert Paired.from_pairs(pairs) == Paired(both=3, gold_only=2, decoy_only=1, neither=4)
    assert Paired.from_pairs([]) == Paired(0, 0, 0, 0)
