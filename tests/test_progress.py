"""The oracle search's progress moves with the work: the scheduler reports each search's
answered asks as they come (before any search ends), the bar counts chain evaluations out
of budget x samples, a sample that ends early moves it by its unused budget, and a run
ends with the count at its total -- on fakes, and on a tiny model searching samples side
by side."""

from __future__ import annotations

import os

import pytest

from lm_eval_cola.search.progress import EvaluationProgress
from lm_eval_cola.search.scheduler import run_searches
from tests.support.lm_eval_setup import install_cola
from tests.support.scheduler_fakes import Chained, SlowStream

pytestmark = pytest.mark.quick


@pytest.mark.parametrize("streamed", [False, True], ids=["batched", "streamed"])
def test_answered_asks_are_reported_as_they_come_and_before_any_search_ends(streamed):
    lengths = [4, 6, 5]  # asks per search, two at a time: all three end in the last rounds
    events: list[tuple] = []

    def evaluate_many(asks):
        return [2 * ask + 1 for ask in asks]

    run_searches([lambda i=i, n=n: Chained(i, n, fan=2) for i, n in enumerate(lengths)],
                 SlowStream() if streamed else evaluate_many,
                 lambda index, search, seconds: events.append(("done", index, len(search.seen))),
                 width=3,
                 on_answered=lambda index, count: events.append(("answered", index, count)))
    first_done = next(i for i, event in enumerate(events) if event[0] == "done")
    assert sum(e[2] for e in events[:first_done] if e[0] == "answered") >= 6
    for index, length in enumerate(lengths):
        mine = [e for e in events if e[1] == index]
        assert mine[-1] == ("done", index, length)  # reported before it went on, then ended
        assert [e[0] for e in mine[:-1]] == ["answered"] * (len(mine) - 1)
        assert sum(e[2] for e in mine[:-1]) == length


def test_the_bar_counts_evaluations_and_ends_at_its_total():
    bar = EvaluationProgress(budget=5, samples=4, done=1, desc="test", disable=True,
                             findings=lambda: "fixed 0/0 wrong")
    assert (bar.total, bar.count) == (20, 5)  # a sample on record counts as done
    bar.evaluated("a", 2)
    bar.evaluated("b", 1)
    assert bar.count == 8  # moves before any sample ends
    bar.evaluated("a", 9)  # never past a sample's budget (a decoy's extra evaluations)
    assert bar.count == 11
    bar.finished("a")  # spent its budget: nothing more
    assert bar.count == 11
    bar.finished("b")  # stopped early: its 4 unused evaluations are done too
    assert bar.count == 15
    bar.finished("c")  # nothing to ask at all
    assert (bar.count, bar.done) == (20, 4)
    assert bar._postfix() == "4/4 samples, fixed 0/0 wrong"
    bar.close()


pytestmark_tiny = pytest.mark.skipif(not os.environ.get("COLA_DATA_DIR"),
                                     reason="needs COLA_DATA_DIR (local benchmark data)")


@pytest.mark.tiny
@pytestmark_tiny
def test_a_tiny_search_side_by_side_moves_the_bar_before_a_sample_ends(tiny_llama_dir,
                                                                       tmp_path, monkeypatch):
    import lm_eval

    install_cola()

    bars: list[EvaluationProgress] = []
    events: list[tuple[str, int]] = []

    class Recorded(EvaluationProgress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

        def evaluated(self, key, count):
            super().evaluated(key, count)
            events.append(("evaluated", self.count))

        def finished(self, key):
            super().finished(key)
            events.append(("finished", self.count))

    monkeypatch.setattr("lm_eval_cola.search.driver.EvaluationProgress", Recorded)
    records = tmp_path / "records.jsonl"
    args = f"pretrained={tiny_llama_dir},budget=6,search_batch=3,records={records}"
    for run in (1, 2):  # the second resumes: everything on record, nothing evaluated
        events.clear()
        lm_eval.simple_evaluate(model="cola_mcts", model_args=args, device="cpu",
                                tasks=["arc_challenge"], limit=3)
        bar = bars[-1]
        assert (bar.total, bar.count, bar.done) == (18, 18, 3)
        if run == 1:
            first = next(i for i, (kind, _) in enumerate(events) if kind == "finished")
            assert first > 0 and 0 < events[first - 1][1] < 18, events
            assert sum(kind == "finished" for kind, _ in events) == 3
        else:
            assert events == []
