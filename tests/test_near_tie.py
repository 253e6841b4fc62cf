"""The near-tie rule of tests/support/near_tie.py: a token difference between two paths is
accepted only where the reference's two logits are within float rounding."""

from __future__ import annotations

import pytest
import torch

from tests.support.near_tie import NEAR_TIE_RTOL, assert_same_tokens, first_difference

pytestmark = pytest.mark.quick


def logits_with(values: dict[int, float], vocab: int = 8):
    def next_logits(prefix: list[int]) -> torch.Tensor:
        out = torch.full((vocab,), -5.0)
        for token, value in values.items():
            out[token] = value
        return out
    return next_logits


def test_equal_sequences_pass_without_asking_for_logits():
    def never(prefix):
        raise AssertionError("no logits needed")
    assert_same_tokens([1, 2, 3], [1, 2, 3], never)


def test_a_difference_at_a_near_tie_is_accepted_and_reported():
    tie = logits_with({3: 6.74, 4: 6.74 + 0.5 * NEAR_TIE_RTOL * 6.74})
    with pytest.warns(UserWarning, match="near-tie at token 2"):
        assert_same_tokens([1, 2, 3, 7], [1, 2, 4, 5], tie, "case")


def test_a_difference_at_a_real_decision_fails():
    clear = logits_with({3: 6.0, 4: 6.5})
    with pytest.raises(AssertionError, match="logit margin of 0.5"):
        assert_same_tokens([1, 2, 3], [1, 2, 4], clear, "case")


def test_a_sequence_that_stops_early_fails():
    with pytest.raises(AssertionError, match="stops at 2 tokens"):
        assert_same_tokens([1, 2], [1, 2, 4], logits_with({}), "case")
    assert first_difference([1, 2], [1, 2, 4]) == 2
    assert first_difference([1, 2], [1, 2]) is None
