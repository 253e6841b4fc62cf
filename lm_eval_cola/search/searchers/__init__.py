"""Per-sample chain searchers for oracle mode, by name.

A searcher proposes chains and is told their outcomes (ask/tell); it never evaluates:

    searcher = get_searcher("mcts", budget=100, length_penalty=5.0)
    ledger, run = searcher.start(num_layers, seed=1234)
    chains = next(run)                  # new chains to evaluate, within the budget
    chains = run.send(outcomes)         # their Outcomes, same order; until StopIteration,
                                        # whose .value is the SearchResult

or synchronously: `run_search(searcher, evaluate, num_layers, seed=1234)`. Searchers know
nothing of lm-eval, torch or transformers (see base.py for the protocol and the rules
they all share, actions.py for the action space, settings.py for the settings and
protocols.py for the `protocol=` presets). To add one, copy `none.py` or
`random_search.py` and register it below.
"""

from collections.abc import Callable
from typing import Any

from lm_eval_cola.search.searchers.actions import ActionSpace
from lm_eval_cola.search.searchers.base import (
    BudgetExhausted,
    Chain,
    Ledger,
    Outcome,
    Searcher,
    SearchResult,
    SearchRun,
    SearchSettings,
    pareto_front,
    pick_best,
    run_search,
)
from lm_eval_cola.search.searchers.greedy import GreedySearcher
from lm_eval_cola.search.searchers.mcts import MctsSearcher
from lm_eval_cola.search.searchers.none import NoneSearcher
from lm_eval_cola.search.searchers.protocols import PROTOCOLS
from lm_eval_cola.search.searchers.random_search import RandomSearcher

__all__ = [
    "PROTOCOLS",
    "SEARCHERS",
    "ActionSpace",
    "BudgetExhausted",
    "Chain",
    "Ledger",
    "Outcome",
    "SearchResult",
    "SearchRun",
    "SearchSettings",
    "Searcher",
    "get_searcher",
    "pareto_front",
    "pick_best",
    "register_searcher",
    "run_search",
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
