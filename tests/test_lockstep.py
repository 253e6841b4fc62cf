"""Searches side by side: every evaluation answered, batches across searches, bounded
width, results independent of width, errors surface in the caller."""

from __future__ import annotations

import threading

import pytest

from lm_eval_cola.lockstep import run_in_lockstep


def make_searches(lengths: list[int]):
    """Search i submits ``lengths[i]`` jobs, each depending on the previous answer."""

    def factory(index: int, length: int):
        def search(submit):
            value, seen = index, []
            for _ in range(length):
                value = submit(value)
                seen.append(value)
            return seen

        return lambda: search

    return [factory(i, n) for i, n in enumerate(lengths)]


def run(lengths: list[int], width: int):
    batches: list[int] = []
    done: list[tuple[int, list]] = []

    def evaluate_many(jobs):
        batches.append(len(jobs))
        return [job * 2 + 1 for job in jobs]

    run_in_lockstep(make_searches(lengths), evaluate_many,
                    lambda i, result: done.append((i, result)), width)
    return done, batches


def expected(index: int, length: int) -> list[int]:
    value, out = index, []
    for _ in range(length):
        value = value * 2 + 1
        out.append(value)
    return out


@pytest.mark.parametrize("width", [1, 2, 3, 8])
def test_every_search_gets_its_own_answers(width):
    lengths = [3, 1, 4, 1, 5, 0, 2]
    done, batches = run(lengths, width)
    assert sorted(done) == [(i, expected(i, n)) for i, n in enumerate(lengths)]
    assert max(batches) <= width
    assert sum(batches) == sum(lengths)
    if width > 1:
        assert max(batches) > 1, "evaluations of several searches must share a call"


def test_results_and_their_order_do_not_depend_on_timing():
    lengths = [5, 2, 7, 3, 3, 6, 1, 4]
    first = run(lengths, 3)
    for _ in range(5):
        assert run(lengths, 3) == first


def test_width_one_runs_in_the_calling_thread():
    caller = threading.current_thread()
    threads = []

    def search(submit):
        threads.append(threading.current_thread())
        return submit(1)

    run_in_lockstep([lambda: search] * 2, lambda jobs: jobs, lambda i, r: None, 1)
    assert threads == [caller, caller]


def test_a_failing_search_raises_in_the_caller_and_stops_the_others():
    def failing(submit):
        submit(0)
        raise ValueError("bad doc 7")

    def endless(submit):
        while True:
            submit(1)

    with pytest.raises(ValueError, match="bad doc 7"):
        run_in_lockstep([lambda: endless, lambda: failing, lambda: endless],
                        lambda jobs: jobs, lambda i, r: None, 3)
    assert [t for t in threading.enumerate() if t.name.startswith("cola-search-")] == []
