"""The oracle search's progress bar, counted in chain evaluations.

Samples searched side by side finish together, so a bar of finished samples sits at 0 and
then jumps to the end. This one moves as chains are evaluated: its total is the work the
run may do, ``budget x samples`` (known up front; samples already on record count as done
at the start), each evaluation moves it by one, and a sample that ends under its budget
(stopped early, or nothing left to ask) moves it by the budget it left unused. So the bar
ends exactly at its total, and its rate (evaluations a second, budget left unused by the
samples done so far included) over the work left gives an ETA for the run, not for the
slowest batch. Its postfix is the samples done and the findings so far. A decoy
control's evaluations are not counted beyond a sample's budget: the bar measures the
searched samples, not the control's extra work.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from tqdm import tqdm


class EvaluationProgress:
    """``evaluated(key, count)`` as a sample's chains are answered, ``finished(key)`` as
    its search ends. ``count`` is kept even where the bar is not shown (other ranks,
    ``disable``), so it can be checked."""

    def __init__(self, budget: int, samples: int, done: int, desc: str, disable: bool,
                 findings: Callable[[], str]):
        self.budget, self.samples, self.done = budget, samples, done
        self.total = budget * samples
        self.count = budget * done
        self._findings = findings
        self._spent: dict[Hashable, int] = {}
        self._bar = tqdm(total=self.total, initial=self.count, unit="eval", desc=desc,
                         disable=disable)
        self._bar.set_postfix_str(self._postfix(), refresh=False)

    def evaluated(self, key: Hashable, count: int) -> None:
        """``count`` more chains of sample ``key`` were evaluated (capped at its budget)."""
        spent = self._spent.get(key, 0)
        step = max(0, min(count, self.budget - spent))
        if step:
            self._spent[key] = spent + step
            self._move(step)

    def finished(self, key: Hashable) -> None:
        """Sample ``key``'s search ended: its unused budget is done too."""
        self.done += 1
        self._bar.set_postfix_str(self._postfix(), refresh=False)
        self._move(self.budget - self._spent.pop(key, 0))

    def close(self) -> None:
        self._bar.close()

    def _move(self, step: int) -> None:
        self.count += step
        self._bar.update(step)

    def _postfix(self) -> str:
        return f"{self.done}/{self.samples} samples, {self._findings()}"
