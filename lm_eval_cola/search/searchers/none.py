"""`none`: no search. Asks for the full chain only, giving the baseline row.

The smallest searcher, and a template for a new one: a Settings dataclass, then a
`search` generator that asks through the ledger (`yield from`) and returns
`make_result(...)`. Register the class in `searchers/__init__.py`.
"""

from dataclasses import dataclass

from lm_eval_cola.search.searchers.base import (
    Ledger,
    Searcher,
    SearchRun,
    SearchSettings,
    begin,
    make_result,
)


@dataclass(frozen=True)
class NoneSettings(SearchSettings):
    budget: int = 1  # the full chain is all it ever evaluates


class NoneSearcher(Searcher):
    name = "none"
    Settings = NoneSettings
    oracle = False  # the full chain's answer never depends on the gold

    def search(self, ledger: Ledger, seed: int, keep_correct: int = 5) -> SearchRun:
        yield from begin(ledger, keep_correct)
        return make_result(ledger, keep_correct, stopped_early=False)
