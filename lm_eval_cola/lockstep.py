"""Run several per-sample searches side by side, so their chain evaluations batch.

A searcher asks for one chain's result at a time and waits for it. To batch across
samples without rewriting every searcher as a coroutine, each sample's search runs in a
thread of its own, and its evaluations go through ``submit``, which blocks. When every
running search is waiting (or done), the calling thread evaluates all waiting jobs in one
``evaluate_many`` call and hands each search its answer. So only the calling thread runs
the model; the search threads run searcher logic and judging.

What a search evaluates depends only on its own answers, so a sample's result does not
depend on which samples ran beside it (fast.score_many makes the answers themselves
batch-invariant). Results are reported in the calling thread as each search finishes,
in a fixed order, so a run that dies keeps every finished sample.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

Submit = Callable[[Any], Any]
Search = Callable[[Submit], Any]  # runs one sample's search, evaluating through submit


class _Cancelled(Exception):
    """Tells a waiting search thread that the run stopped (another search failed)."""


def run_in_lockstep(
    searches: Sequence[Callable[[], Search]],
    evaluate_many: Callable[[list[Any]], list[Any]],
    on_done: Callable[[int, Any], None],
    width: int,
) -> None:
    """Run ``searches`` (factories, called in this thread when a search starts) with up
    to ``width`` at once; ``on_done(index, result)`` is called in this thread."""
    if width <= 1:  # one at a time, no threads
        for index, factory in enumerate(searches):
            on_done(index, factory()(lambda job: evaluate_many([job])[0]))
        return
    _Lockstep(searches, evaluate_many, on_done, width).run()


class _Lockstep:
    def __init__(self, searches, evaluate_many, on_done, width):
        self.searches = searches
        self.evaluate_many = evaluate_many
        self.on_done = on_done
        self.width = width
        self.cond = threading.Condition()
        self.waiting: dict[int, Any] = {}  # search index -> job it waits on
        self.answers: dict[int, Any] = {}
        self.finished: dict[int, tuple[Any, BaseException | None]] = {}
        self.cancelled = False
        self.threads: dict[int, threading.Thread] = {}

    def run(self) -> None:
        running: set[int] = set()
        upcoming = 0  # the next search to start
        try:
            while True:
                while len(running) < self.width and upcoming < len(self.searches):
                    self._start(upcoming)
                    running.add(upcoming)
                    upcoming += 1
                if not running:
                    return
                with self.cond:
                    self.cond.wait_for(lambda: all(
                        i in self.waiting or i in self.finished for i in running))
                    done = sorted(i for i in running if i in self.finished)
                    outcomes = [self.finished.pop(i) for i in done]
                for index, (result, error) in zip(done, outcomes, strict=True):
                    running.discard(index)
                    # Joined, so no thread outlives the run (one still unwinding at
                    # interpreter exit aborts the process).
                    self.threads.pop(index).join()
                    if error is not None:
                        raise error
                    self.on_done(index, result)
                if done and upcoming < len(self.searches):
                    continue  # let the next searches join this round before evaluating
                self._evaluate(running)
        finally:
            with self.cond:
                self.cancelled = True
                self.cond.notify_all()
            for thread in self.threads.values():
                thread.join(timeout=60)

    def _start(self, index: int) -> None:
        search = self.searches[index]()  # prepared here: tokenizers stay on one thread
        thread = threading.Thread(target=self._body, args=(index, search), daemon=True,
                                  name=f"cola-search-{index}")
        self.threads[index] = thread
        thread.start()

    def _evaluate(self, running: set[int]) -> None:
        with self.cond:
            order = sorted(i for i in running if i in self.waiting)
            jobs = [self.waiting.pop(i) for i in order]
        if not jobs:
            return
        answers = self.evaluate_many(jobs)
        with self.cond:
            self.answers.update(zip(order, answers, strict=True))
            self.cond.notify_all()

    def _body(self, index: int, search: Search) -> None:
        def submit(job: Any) -> Any:
            with self.cond:
                self.waiting[index] = job
                self.cond.notify_all()
                self.cond.wait_for(lambda: index in self.answers or self.cancelled)
                if index not in self.answers:
                    raise _Cancelled
                return self.answers.pop(index)

        try:
            outcome: tuple[Any, BaseException | None] = (search(submit), None)
        except _Cancelled:
            return
        except BaseException as error:  # noqa: BLE001 - re-raised in the calling thread
            outcome = (None, error)
        with self.cond:
            self.finished[index] = outcome
            self.cond.notify_all()
