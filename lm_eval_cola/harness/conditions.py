""""The same evaluation": what ``compare``'s resume and ``table1 --reuse`` both check of a
run beside its search (``RunConditions``): the model_args other than the search's, the
dtype the model ran in, the oracle metric and filter, the chain-length cap (``max_len``)
and the prompt and decoding settings (``identity.EvalIdentity``). Each difference is named
in one line, ``<what> <this run's> != <the other's>``. No torch, transformers or lm-eval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from lm_eval_cola.results.identity import NEUTRAL_ARGS, EvalIdentity, deciding_args
from lm_eval_cola.search.searchers import SEARCHERS

# cola's search-only model_args (the searcher's settings are added to these): they decide
# which chains a search evaluates, not what a chain is asked or how it is judged.
SEARCH_ARGS = frozenset({"searcher", "chain", "seed", "control", "record_chains",
                         "keep_correct", "max_chain_length"})
# compared on their own, under their own names
OWN_ARGS = frozenset({"dtype", "oracle_metric", "oracle_filter"})


def normal_dtype(value: Any) -> str | None:
    """``torch.bfloat16``, ``bfloat16`` -> ``bfloat16``; None, "" and auto: not known."""
    text = str(value or "").strip()
    text = text.removeprefix("torch.")
    return None if text in ("", "auto", "None") else text


@dataclass(frozen=True)
class RunConditions:
    """What "the same evaluation" compares beside the search: the model_args other than the
    search's, the dtype, the oracle metric and filter, the chain-length cap and the prompt
    and decoding settings. None for dtype or max_len: not known (not compared)."""

    model_args: tuple[tuple[str, str], ...] = ()
    dtype: str | None = None
    oracle_metric: str | None = None  # as given; None: the task's own
    oracle_filter: str | None = None
    max_len: int | None = None
    evaluation: EvalIdentity = field(default_factory=EvalIdentity)

    @classmethod
    def make(cls, model_args: Mapping[str, Any], evaluation: EvalIdentity,
             dtype: Any = None, max_len: Any = None) -> RunConditions:
        # numerics=exact compares as not given (identity.DEFAULT_VALUED_ARGS)
        args = {str(k): str(v) for k, v in deciding_args(model_args).items()}
        drop = NEUTRAL_ARGS | SEARCH_ARGS | OWN_ARGS | _searcher_setting_names()
        cap = max_len if isinstance(max_len, int) and not isinstance(max_len, bool) else None
        return cls(model_args=tuple(sorted((k, v) for k, v in args.items() if k not in drop)),
                   dtype=normal_dtype(dtype) or normal_dtype(args.get("dtype")),
                   oracle_metric=args.get("oracle_metric") or None,
                   oracle_filter=args.get("oracle_filter") or None,
                   max_len=cap, evaluation=evaluation)

    @classmethod
    def from_results(cls, data: Mapping[str, Any], model_args: Mapping[str, Any]
                     ) -> RunConditions:
        """From a results file (``model_args`` parsed from it); the dtype the model ran in
        (``model_dtype``) and the chain-length cap the search resolved (``max_len``)."""
        config = data.get("config") or {}
        settings = config.get("cola_settings") or {}
        return cls.make(model_args, EvalIdentity.from_results(data),
                        dtype=config.get("model_dtype"), max_len=settings.get("max_len"))

    def difference(self, other: RunConditions) -> str | None:
        """The first difference as ``<what> <mine> != <other's>``; None: the same."""
        mine, theirs = dict(self.model_args), dict(other.model_args)
        for key in sorted(set(mine) | set(theirs)):
            if mine.get(key) != theirs.get(key):
                return (f"model_args {key}={mine.get(key, '(not set)')} != "
                        f"{key}={theirs.get(key, '(not set)')}")
        if None not in (self.dtype, other.dtype) and self.dtype != other.dtype:
            return f"dtype {self.dtype} != {other.dtype}"
        for name in ("oracle_metric", "oracle_filter"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                what = "metric" if name == "oracle_metric" else "filter"
                return f"oracle {what} {a or 'the task default'} != {b or 'the task default'}"
        if None not in (self.max_len, other.max_len) and self.max_len != other.max_len:
            return f"max_len {self.max_len} != {other.max_len}"
        return self.evaluation.difference(other.evaluation)


def _searcher_setting_names() -> frozenset[str]:
    return frozenset(f.name for s in SEARCHERS.values() for f in fields(s.Settings))
