"""Searches side by side in one thread: every ask answered, batches across searches,
bounded width, results independent of width, errors surface at once, seconds add up (on a
fake clock).

These pass a plain ``evaluate_many``, which the scheduler wraps as a stream answering every
submission at each step (``AllAtOnce``): one loop serves it and the driver's own stream
(``runner.Evaluations``, specified in test_batch_generate_stream.py)."""

from __future__ import annotations

import threading

import pytest

from lm_eval_cola.search.scheduler import run_searches
from tests.support.scheduler_fakes import Chained, FakeClock, expected

pytestmark = pytest.mark.quick


def run(lengths: list[int], width: int, fan: int = 1):
    batches: list[int] = []
    done: list[tuple[int, list]] = []

    def evaluate_many(asks):
        batches.append(len(asks))
        return [ask * 2 + 1 for ask in asks]

    def on_done(index, search, seconds):
        assert seconds >= 0
        done.append((index, search.seen))

    run_searches([lambda i=i, n=n: Chained(i, n, fan) for i, n in enumerate(lengths)],
                 evaluate_many, on_done, width)
    return done, batches


@pytest.mark.parametrize("width", [1, 2, 3, 8])
def test_every_search_gets_its_own_answers(width):
    lengths = [3, 1, 4, 1, 5, 0, 2]
    done, batches = run(lengths, width)
    assert sorted(done) == [(i, expected(i, n)) for i, n in enumerate(lengths)]
    assert max(batches) <= width
    assert sum(batches) == sum(lengths)
    if width > 1:
        assert max(batches) > 1, "asks of several searches must share a call"


def test_several_asks_of_one_search_share_a_call():
    done, batches = run([4, 6], width=2, fan=3)
    assert batches[0] == 6 and sum(batches) == 10
    assert [len(seen) for _, seen in sorted(done)] == [4, 6]


def test_results_and_their_order_do_not_depend_on_width_or_repeats():
    lengths = [5, 2, 7, 3, 3, 6, 1, 4]
    first = run(lengths, 3)
    for _ in range(3):
        assert run(lengths, 3) == first
    assert sorted(run(lengths, 1)[0]) == sorted(first[0])


def test_everything_runs_in_the_calling_thread():
    caller = threading.current_thread()
    searches = [Chained(0, 3), Chained(1, 2)]
    run_searches([lambda s=s: s for s in searches], lambda asks: asks,
                 lambda *_: None, width=2)
    assert {t for s in searches for t in s.threads} == {caller}


def test_a_failing_search_raises_in_the_caller_and_stops_the_others():
    class Failing(Chained):
        def advance(self, answers):
            if answers is not None:
                raise ValueError("bad doc 7")
            return [0]

    started = []

    def make(cls, *args):
        def start():
            started.append(cls.__name__)
            return cls(*args)
        return start

    with pytest.raises(ValueError, match="bad doc 7"):
        run_searches([make(Chained, 0, 10**6), make(Failing, 1, 1), make(Chained, 2, 10**6),
                      make(Chained, 3, 1)], lambda asks: asks, lambda *_: None, width=3)
    assert started == ["Chained", "Failing", "Chained"]


class TimedStream:
    """A stream that answers every submission in one step, taking ``per_ask`` fake seconds
    an ask: the rounds of ``evaluate_many``, through the streaming path."""

    def __init__(self, clock: FakeClock, per_ask: float):
        self.clock, self.per_ask = clock, per_ask
        self.waiting: list[tuple[int, list]] = []

    def submit(self, tag, asks):
        self.waiting.append((tag, asks))

    def step(self):
        done, self.waiting = self.waiting, []
        self.clock.tick(self.per_ask * sum(len(asks) for _, asks in done))
        return done


@pytest.mark.parametrize("streamed", [False, True], ids=["rounds", "streamed"])
def test_seconds_are_own_time_plus_a_share_of_each_batch(streamed, monkeypatch):
    """On a fake clock: each ``advance`` takes 5 ms, each ask 20 ms of a batch."""
    clock = FakeClock().install(monkeypatch)
    seconds = {}

    class Timed(Chained):
        def advance(self, answers):
            clock.tick(0.005)
            return super().advance(answers)

    def evaluate_many(asks):
        clock.tick(0.02 * len(asks))
        return asks

    run_searches([lambda: Timed(0, 2), lambda: Timed(1, 2, fan=3)],
                 TimedStream(clock, 0.02) if streamed else evaluate_many,
                 lambda i, s, sec: seconds.__setitem__(i, sec), width=2)
    # batches: [1 + 2 asks] (60 ms), [1 ask] (20 ms): search 0 gets 1/3 of the first and all
    # of the second, search 1 2/3 of the first; own time: 3 advances of search 0, 2 of 1
    assert seconds[0] == pytest.approx(0.02 + 0.02 + 3 * 0.005, abs=1e-9)
    assert seconds[1] == pytest.approx(0.04 + 2 * 0.005, abs=1e-9)
    assert seconds[0] + seconds[1] == pytest.approx(clock.now, abs=1e-9)  # shares add up


def test_an_empty_ask_is_refused():
    class Empty(Chained):
        def advance(self, answers):
            return []

    with pytest.raises(ValueError, match="asked for nothing"):
        run_searches([lambda: Empty(0, 1)], lambda asks: asks, lambda *_: None, width=1)
