"""Per-sample chain searchers for oracle mode, by name.

    searcher = get_searcher("mcts", budget=100, length_penalty=5.0)
    evaluator = searcher.make_evaluator(evaluate, num_layers)
    result = searcher.search(evaluator, seed=1234)

Searchers know nothing of lm-eval, torch or transformers: they see a sample only
through `ChainEvaluator` (see base.py for the rules they all share).
"""

from collections.abc import Callable
from typing import Any

from lm_eval_cola.searchers.base import (
    BudgetExhausted,
    Chain,
    ChainEvaluator,
    Outcome,
    Searcher,
    SearchResult,
    SearchSettings,
    pick_best,
)
from lm_eval_cola.searchers.greedy import GreedySearcher
from lm_eval_cola.searchers.mcts import MctsSearcher
from lm_eval_cola.searchers.none import NoneSearcher
from lm_eval_cola.searchers.random_search import RandomSearcher

__all__ = [
    "SEARCHERS",
    "BudgetExhausted",
    "Chain",
    "ChainEvaluator",
    "Outcome",
    "SearchResult",
    "SearchSettings",
    "Searcher",
    "get_searcher",
    "pick_best",
    "register_searcher",
    "searcher_names",
]

SEARCHERS: dict[str, type[Searcher]] = {}


def register_searcher(name: str) -> Callable[[type[Searcher]], type[Searcher]]:
    """Class decorator: make a Searcher subclass available to `get_searcher(name)`."""

    def register(cls: type[Searcher]) -> type[Searcher]:
        if SEARCHERS.get(name, cls) is not cls:
            raise ValueError(f"searcher '{name}' is already registered")
        cls.name = name
        SEARCHERS[name] = cls
        return cls

    return register


def searcher_names() -> list[str]:
    return sorted(SEARCHERS)


def get_searcher(name: str, **settings: Any) -> Searcher:
    """A searcher by name; unknown names and settings raise a one-line ValueError."""
    if name not in SEARCHERS:
        raise ValueError(f"unknown searcher '{name}'; allowed: {', '.join(searcher_names())}")
    return SEARCHERS[name](**settings)


# Registered here rather than by decorators in their modules, so importing a searcher
# module never imports this package's registry half-built.
for _cls in (GreedySearcher, MctsSearcher, NoneSearcher, RandomSearcher):
    register_searcher(_cls.name)(_cls)
