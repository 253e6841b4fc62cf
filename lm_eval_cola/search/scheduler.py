"""Run many per-sample searches in one thread, batching their evaluations.

Each sample's search is an ask/tell object (``Search``): ``advance(None)`` starts it and
``advance(answers)`` hands it the answers to what it last asked; each returns the next
asks, or None when the search is done. ``run_searches`` keeps up to ``width`` searches in
flight; when every search in flight has asked, it answers all their asks with one
``evaluate_many`` call (so a caller can run them as one batched forward) and advances
each search with its own answers.

What a search asks depends only on its own answers, so its result does not depend on
which searches share its batches. Finished searches are reported in start order within a
round, as soon as they finish, so a run that dies keeps every finished sample.

Per-sample seconds are measured here, once: the time spent in the search's own
``advance`` calls plus, for each batch, its share (its asks / the batch's asks) of the
time ``evaluate_many`` took. The shares add up to the run's evaluation time.

One loop serves both kinds of ``evaluate_many``: a plain function is wrapped as a stream
that answers every submission at each step (``AllAtOnce``). Streaming: when
``evaluate_many`` is a ``Stream`` (``submit(tag, asks)``, ``step()`` ->
the ``(tag, answers)`` it completed; ``runner.Evaluations`` is one), a search is advanced
as soon as its own asks are answered, and its next asks join the work in progress
(generation: rows join the running decoding batch as others leave), instead of every
search waiting for the slowest ask of the round. Each step's time is shared by the
searches in flight in proportion to their pending asks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


class Search(Protocol):
    def advance(self, answers: list[Any] | None) -> list[Any] | None:
        """Start (``answers`` None) or go on; the next asks (non-empty), or None: done."""


@runtime_checkable
class Stream(Protocol):
    def submit(self, tag: Any, asks: list[Any]) -> None:
        """Hand over one search's asks."""

    def step(self) -> list[tuple[Any, list[Any]]]:
        """Do one batched piece of work; the (tag, answers) of every submission done."""


@dataclass(eq=False)
class _InFlight:
    index: int
    search: Search
    asks: list[Any] | None
    seconds: float = 0.0


def run_searches(
    starts: Iterable[Callable[[], Search]],
    evaluate_many: Callable[[list[Any]], list[Any]],
    on_done: Callable[[int, Search, float], None],
    width: int,
    on_answered: Callable[[int, int], None] | None = None,
) -> None:
    """Run each search made by ``starts`` (called in order, when a place is free) to its
    end. ``evaluate_many(asks) -> answers`` (same order) answers the asks of every search
    in flight at once; ``on_done(index, search, seconds)`` is called as each one ends, and
    ``on_answered(index, count)`` each time ``count`` asks of search ``index`` are
    answered, before it goes on (progress that moves with the work, not with the
    searches that end)."""
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    answered = on_answered or (lambda index, count: None)
    stream = evaluate_many if isinstance(evaluate_many, Stream) else AllAtOnce(evaluate_many)
    _run_streaming(starts, stream, on_done, width, answered)


class AllAtOnce:
    """A plain ``evaluate_many`` as a ``Stream``: each step answers every submission so far
    in one call (rounds: every search in flight asks, then all are answered together)."""

    def __init__(self, evaluate_many: Callable[[list[Any]], list[Any]]):
        self.evaluate_many = evaluate_many
        self.waiting: list[tuple[Any, list[Any]]] = []

    def submit(self, tag: Any, asks: list[Any]) -> None:
        self.waiting.append((tag, asks))

    def step(self) -> list[tuple[Any, list[Any]]]:
        waiting, self.waiting = self.waiting, []
        asks = [ask for _, own in waiting for ask in own]
        answers = self.evaluate_many(asks)
        if len(answers) != len(asks):
            raise ValueError(f"evaluate_many gave {len(answers)} answers to {len(asks)} asks")
        done, at = [], 0
        for tag, own in waiting:
            done.append((tag, answers[at:at + len(own)]))
            at += len(own)
        return done


def _begin(index: int, start: Callable[[], Search]) -> _InFlight:
    """A search started and asked for its first chains (its time counted from here)."""
    began = time.perf_counter()
    running = _InFlight(index, start(), None)
    running.asks = _advance(running, None, began)
    return running


def _advance(running: _InFlight, answers: list[Any] | None,
             began: float | None = None) -> list[Any] | None:
    began = time.perf_counter() if began is None else began
    asks = running.search.advance(answers)
    running.seconds += time.perf_counter() - began
    if asks is not None and not asks:
        raise ValueError("a search asked for nothing; return None when it is done")
    return asks


def _run_streaming(starts: Iterable[Callable[[], Search]], stream: Stream,
                   on_done: Callable[[int, Search, float], None], width: int,
                   answered: Callable[[int, int], None]) -> None:
    pending = iter(enumerate(starts))
    flight: dict[int, _InFlight] = {}

    def fill() -> None:
        while len(flight) < width:
            item = next(pending, None)
            if item is None:
                return
            running = _begin(*item)
            if running.asks is None:
                on_done(running.index, running.search, running.seconds)
            else:
                flight[running.index] = running
                stream.submit(running.index, running.asks)

    fill()
    while flight:
        outstanding = {index: len(running.asks or ()) for index, running in flight.items()}
        began = time.perf_counter()
        done = stream.step()
        took = time.perf_counter() - began
        total = sum(outstanding.values())
        for index, count in outstanding.items():
            flight[index].seconds += took * count / total
        for index, answers in done:
            running = flight[index]
            if len(answers) != len(running.asks or ()):
                raise ValueError(f"the stream gave {len(answers)} answers to "
                                 f"{len(running.asks or ())} asks")
            answered(index, len(answers))
            running.asks = _advance(running, answers)
            if running.asks is None:
                del flight[index]
                on_done(running.index, running.search, running.seconds)
            else:
                stream.submit(index, running.asks)
        fill()
