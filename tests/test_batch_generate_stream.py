"""The streaming scheduler (``scheduler.run_searches`` with a ``Stream``): a search goes on
as soon as its own asks are answered, gets exactly its own answers, the width bounds the
searches in flight (the seconds on a fake clock: test_scheduler.py)."""

from __future__ import annotations

import pytest

from lm_eval_cola.search.scheduler import Stream, run_searches
from tests.support.scheduler_fakes import Chained, SlowStream, expected

pytestmark = pytest.mark.quick


@pytest.mark.parametrize("width", [1, 2, 5])
@pytest.mark.parametrize("fan", [1, 3])
def test_streamed_searches_get_their_own_answers(width, fan):
    lengths = [3, 0, 5, 1, 4, 2, 6]
    stream = SlowStream()
    assert isinstance(stream, Stream)
    done: list[tuple[int, list[int]]] = []
    seconds: list[float] = []

    def on_done(index, search, took):
        seconds.append(took)
        done.append((index, search.seen))

    run_searches([lambda i=i, n=n: Chained(i, n, fan) for i, n in enumerate(lengths)],
                 stream, on_done, width)
    assert sorted(i for i, _ in done) == list(range(len(lengths)))
    assert stream.in_flight_max <= width
    assert not stream.waiting
    if fan == 1:
        for index, seen in done:
            assert seen == expected(index, lengths[index])
    assert all(s >= 0 for s in seconds)


def test_a_search_that_finishes_first_goes_on_first():
    """Search 1's asks take one step, search 0's three: search 1 has asked again before
    search 0's first answer comes (no waiting for the round)."""
    order: list[int] = []

    class Logged(Chained):
        def advance(self, answers):
            order.append(self.index)
            return super().advance(answers)

    def make(index, value):
        search = Logged(value, 2)
        search.index = index
        return search

    run_searches([lambda: make(0, 2), lambda: make(1, 3)], SlowStream(),
                 lambda *a: None, 2)
    # 0 starts, 1 starts, 1 is answered after one step and goes on while 0 still waits
    assert order[:3] == [0, 1, 1]
    assert len(order) == 6
