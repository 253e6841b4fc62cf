"""The ledger (memo and budget) and the ask/tell protocol every searcher follows."""

import math

import pytest

from lm_eval_cola.search.searchers import (
    SEARCHERS,
    BudgetExhausted,
    Ledger,
    Outcome,
    Searcher,
    SearchResult,
    get_searcher,
    pick_best,
    run_search,
    searcher_names,
)
from lm_eval_cola.search.searchers.base import neighbours
from tests.support.searcher_fakes import (
    FULL,
    SEARCHING,
    L,
    answer,
    needs_146,
    never,
    repeat2,
    run,
    skip3_keep5,
)

pytestmark = pytest.mark.quick

# --- the ledger --------------------------------------------------------------------------


def test_ledger_ask_memoizes_and_counts():
    fake = never()
    ledger = Ledger(L, budget=3)
    first, yields = answer(ledger.ask((0, 1)), fake, ledger)
    assert yields == [[(0, 1)]]  # a new chain is yielded alone and told back
    again, yields = answer(ledger.ask([0, 1]), fake, ledger)  # any sequence is the same chain
    assert again is first and yields == []  # memoized: free, no yield
    assert fake.calls == [(0, 1)] and ledger.evaluations == 1 and ledger.remaining == 2
    answer(ledger.ask((2,)), fake, ledger)
    answer(ledger.ask((3,)), fake, ledger)
    with pytest.raises(BudgetExhausted):
        answer(ledger.ask((4,)), fake, ledger)
    memo, yields = answer(ledger.ask((0, 1)), fake, ledger)  # a memoized chain stays free after
    assert memo.correct is False and yields == []  # the budget is spent
    assert ledger.outcome((0, 1)) is first
    assert len(fake.calls) == 3 == ledger.evaluations
    with pytest.raises(KeyError):
        ledger.outcome((4,))  # outcome() only reads the memo


def test_ledger_ask_many_dedups_truncates_and_aligns():
    fake = needs_146()
    ledger = Ledger(L, budget=3)
    answer(ledger.ask((1, 4, 6)), fake, ledger)
    chains = [(1, 4, 6), (0,), (0,), (1,), (2,), (3,)]
    out, yields = answer(ledger.ask_many(chains), fake, ledger)
    # (0,) and (1,) fit the 2 units left, in one yield; (2,) is the first it could not afford.
    assert yields == [[(0,), (1,)]] and fake.calls[1:] == [(0,), (1,)]
    assert out == [ledger.seen[c] for c in chains[:4]]
    out, yields = answer(ledger.ask_many([(0,), (1, 4, 6)]), fake, ledger)
    assert out == [ledger.seen[(0,)], ledger.seen[(1, 4, 6)]] and yields == []
    with pytest.raises(BudgetExhausted):
        answer(ledger.ask_many([(0,), (5,)]), fake, ledger)
    assert ledger.evaluations == 3 == len(fake.calls)


@pytest.mark.parametrize(
    "told,error",
    [
        ([], ValueError),
        ([Outcome(False, 0.0)], ValueError),
        ([Outcome(False, 0.0)] * 3, ValueError),
        ([True, False], TypeError),
        (None, TypeError),  # next() instead of send()
        ("ab", TypeError),
    ],
)
def test_ledger_rejects_a_bad_reply(told, error):
    ledger = Ledger(L, budget=5)
    asking = ledger.ask_many([(0,), (1,)])
    assert next(asking) == [(0,), (1,)]
    with pytest.raises(error, match="Outcome|outcomes"):
        asking.send(told)
    assert ledger.seen == {}  # nothing of a bad reply is stored


def test_searcher_rejects_a_bad_reply():
    _, search = get_searcher("greedy").start(L, seed=0)
    assert next(search) == [FULL]
    with pytest.raises(ValueError, match="2 outcomes for 1 chains"):
        search.send([Outcome(True, 0.0)] * 2)


def test_ledger_rejects_bad_chains_and_budgets():
    ledger = Ledger(L, budget=2)
    for bad in [(), (L,), (-1,), (0, 1.0)]:
        with pytest.raises(ValueError, match=r"chain|index"):
            next(ledger.ask(bad))
        with pytest.raises(ValueError, match=r"chain|index"):
            next(ledger.ask_many([(0,), bad]))
    with pytest.raises(ValueError, match="budget"):
        Ledger(L, budget=0)
    with pytest.raises(TypeError, match="Outcome"):
        run_search(get_searcher("none"), lambda c: True, L, seed=0)


def test_outcome_nan_score_ranks_last():
    assert Outcome(True, float("nan")).score == -math.inf


def test_pick_best_rule():
    seen = {
        FULL: Outcome(True, 0.0),
        (0, 1, 2): Outcome(True, 0.1),
        (0, 2, 3): Outcome(True, 0.5),
        (1, 2, 3): Outcome(True, 0.5),
        (0,): Outcome(False, 9.0),
        (5, 6, 7, 0): Outcome(True, 9.0),
    }
    best, others = pick_best(seen, FULL)
    # shortest first, then higher score, then the lexicographically smaller chain
    assert best == (0, 2, 3)
    assert others == [(1, 2, 3), (0, 1, 2), (5, 6, 7, 0), FULL]
    assert pick_best({FULL: Outcome(False, 0.0), (1,): Outcome(False, 5.0)}, FULL) == (FULL, [])


def test_neighbours_are_the_skip_and_repeat_actions():
    chain = (0, 1, 2)
    got = set(neighbours(chain, (1, 2), (1,), 1, 6))
    skips = {(1, 2), (0, 2), (0, 1), (2,), (0,)}
    repeats = {(0, 0, 1, 2), (0, 1, 1, 2), (0, 1, 2, 2)}
    assert got == skips | repeats
    assert set(neighbours(chain, (1, 2), (1,), 2, 3)) == {(1, 2), (0, 2), (0, 1)}


# --- the ask/tell protocol --------------------------------------------------------------


@pytest.mark.parametrize("name", ["none", *SEARCHING])
@pytest.mark.parametrize("make_fake", [needs_146, skip3_keep5, never])
def test_yields_are_new_distinct_and_within_budget(name, make_fake):
    for seed in range(4):
        fake = make_fake()
        ledger, search = get_searcher(name, budget=30).start(L, seed)
        answer(search, fake, ledger)  # `answer` checks every yield
        assert list(ledger.seen) == fake.calls


@pytest.mark.parametrize("name", ["none", *SEARCHING])
@pytest.mark.parametrize("batched", [False, True])
def test_run_search_is_the_hand_driven_run(name, batched):
    by_hand, fake = needs_146(), needs_146()
    result, _ = run(name, by_hand, seed=3, batched=batched, budget=40)
    got = run_search(get_searcher(name, budget=40), fake, L, 3, 5, fake.many if batched else None)
    assert got == result and fake.calls == by_hand.calls and fake.batches == by_hand.batches


def test_runs_of_many_samples_can_share_one_batch():
    # What ask/tell is for: a caller advances several samples' runs together and evaluates
    # all their chains at once; each result is the one the sample gets alone.
    fakes = [needs_146(), skip3_keep5(), repeat2(), never()]
    searcher = get_searcher("mcts", budget=25)
    alone = [run_search(searcher, f, L, seed=i) for i, f in enumerate(fakes)]
    runs = {i: searcher.start(L, seed=i)[1] for i in range(len(fakes))}
    asked = {i: next(run) for i, run in runs.items()}
    results: dict[int, SearchResult] = {}
    while asked:
        batch = [(i, c) for i, chains in asked.items() for c in chains]  # one "forward pass"
        told: dict[int, list[Outcome]] = {i: [] for i in asked}
        for i, c in batch:
            told[i].append(Outcome(fakes[i].correct(c), fakes[i].score(c)))
        for i in list(asked):
            try:
                asked[i] = runs[i].send(told[i])
            except StopIteration as stop:
                results[i] = stop.value
                del asked[i]
    assert [results[i] for i in range(len(fakes))] == alone


def test_only_none_is_not_an_oracle():
    oracle = {n: SEARCHERS[n].oracle for n in searcher_names()}
    assert oracle == {"greedy": True, "mcts": True, "none": False, "random": True}
    assert Searcher.oracle is True  # the default for a new searcher

