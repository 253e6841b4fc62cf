"""Fake searches, a fake stream and a fake clock for the scheduler's tests (no model)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest


class Chained:
    """Asks ``length`` times, each ask the previous answer; several asks at a time when
    ``fan`` > 1. Records the thread each step ran in."""

    def __init__(self, index: int, length: int, fan: int = 1):
        self.value, self.left, self.fan = index, length, fan
        self.seen: list[int] = []
        self.threads: list[threading.Thread] = []

    def advance(self, answers):
        self.threads.append(threading.current_thread())
        if answers is not None:
            self.seen += answers
            self.value = answers[-1]
        if self.left <= 0:
            return None
        count = min(self.fan, self.left)
        self.left -= count
        return [self.value + k for k in range(count)]


def expected(index: int, length: int) -> list[int]:
    """What ``Chained(index, length)`` sees when every ask is answered ``2 * ask + 1``."""
    value, out = index, []
    for _ in range(length):
        value = value * 2 + 1
        out.append(value)
    return out


class SlowStream:
    """Answers each submission ``ask % 3 + 1`` steps after it came (answer 2*ask + 1)."""

    def __init__(self) -> None:
        self.waiting: dict[int, tuple[int, list[int]]] = {}
        self.in_flight_max = 0
        self.steps = 0

    def submit(self, tag, asks):
        assert tag not in self.waiting
        self.waiting[tag] = (max(a % 3 for a in asks) + 1, asks)
        self.in_flight_max = max(self.in_flight_max, len(self.waiting))

    def step(self):
        self.steps += 1
        done = []
        for tag, (left, asks) in list(self.waiting.items()):
            if left == 1:
                del self.waiting[tag]
                done.append((tag, [2 * a + 1 for a in asks]))
            else:
                self.waiting[tag] = (left - 1, asks)
        return done


class FakeClock:
    """A ``perf_counter`` that moves only when a test calls ``tick``: the scheduler's
    seconds become exact sums, whatever the machine's load."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
        """Make ``search.scheduler`` read this clock (only that module's ``time``)."""
        from lm_eval_cola.search import scheduler

        monkeypatch.setattr(scheduler, "time", SimpleNamespace(perf_counter=self.perf_counter))
        return self
