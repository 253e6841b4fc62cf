"""`none`: no search. Evaluates the full chain only, giving the baseline row."""

from dataclasses import dataclass

from lm_eval_cola.searchers.base import (
    ChainEvaluator,
    Searcher,
    SearchResult,
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

    def search(self, evaluator: ChainEvaluator, seed: int, keep_correct: int = 5) -> SearchResult:
        begin(evaluator, keep_correct)
        return make_result(evaluator, keep_correct, stopped_early=False)
