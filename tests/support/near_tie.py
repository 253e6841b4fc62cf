"""Token-sequence equality across two computation paths, up to a documented near-tie.

Two paths that compute the same greedy generation in a different order (KV cache vs full
recompute, the fast decoder vs ``model.generate``) agree to float rounding, and float
rounding differs between CPUs (vector width, kernel choice). Where the top two logits of a
step are closer than that rounding, the paths may pick different tokens on one machine and
the same on another, so a token-equality test would pin the rounding of the machine that
wrote it. ``assert_same_tokens`` therefore accepts a difference only at a near-tie: at the
first differing position, the reference path's logits for the two tokens differ by at most
``NEAR_TIE_RTOL * max(1, |top logit|)``. Such a difference is reported as a warning (pytest
lists it), and the tokens after it are not compared: from there on the two sequences
continue different texts. Any other difference fails.

``NEAR_TIE_RTOL = 1e-4`` is about a thousand fp32 epsilons: far above the rounding of a
tiny model's forward (measured: a phi3 tie of 3.8e-6 on logits near 6.74, 5.7e-7 relative)
and far below a real decision (the test models' top-two gaps are typically 1e-2 to 1).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

NEAR_TIE_RTOL = 1e-4


def first_difference(got: Sequence[int], expected: Sequence[int]) -> int | None:
    """The first index where the sequences differ (a length difference counts at the end of
    the shorter one); None when they are equal."""
    for i, (a, b) in enumerate(zip(got, expected, strict=False)):
        if a != b:
            return i
    return None if len(got) == len(expected) else min(len(got), len(expected))


def assert_same_tokens(got: Sequence[int], expected: Sequence[int],
                       next_logits: Callable[[list[int]], torch.Tensor],
                       where: object = "") -> None:
    """Assert ``got == expected`` (token ids, prompt included), except at a near-tie.

    ``next_logits(prefix)`` gives the reference path's logits for the token after
    ``prefix`` (a 1-D tensor over the vocabulary)."""
    got, expected = [int(t) for t in got], [int(t) for t in expected]
    i = first_difference(got, expected)
    if i is None:
        return
    if i >= len(got) or i >= len(expected):
        raise AssertionError(f"{where}: one sequence stops at {i} tokens, the other goes on: "
                             f"{got} != {expected}")
    with torch.no_grad():
        logits = next_logits(expected[:i]).float()
    top = float(logits.max())
    margin = abs(float(logits[expected[i]]) - float(logits[got[i]]))
    bound = NEAR_TIE_RTOL * max(1.0, abs(top))
    assert margin <= bound, (
        f"{where}: token {i} differs ({got[i]} != {expected[i]}) with a logit margin of "
        f"{margin:.3g}, above the near-tie bound {bound:.3g}: {got} != {expected}")
    warnings.warn(f"{where}: accepted a near-tie at token {i} ({got[i]} vs {expected[i]}, "
                  f"logit margin {margin:.3g} <= {bound:.3g}); later tokens not compared",
                  stacklevel=2)
