"""Run one sample's requests under any chain: the three ways, chosen once per sample.

- lm-eval's own path (``HFLM.loglikelihood`` / ``generate_until``) inside
  ``chain_applied``: exact by construction, and the reference the fast paths are
  tested against;
- loglikelihood with ``fast``: a ``SampleScorer`` (packed context, prefix reuse, scored
  logits only), which ``fast.score_many`` batches with other samples' scorers;
- generate_until with ``fast``: lm-eval's own generation path, whose decoding call
  (``HFLM._model_generate``) is answered by a ``SampleGenerator`` while it runs (prompt
  prefix reuse, earlier answers as drafts) whenever that gives exactly what greedy
  ``generate`` would. The generator is handed in by ``decoding`` for the length of one
  call; outside it the model decodes as lm-eval does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from lm_eval.models.huggingface import HFLM

from lm_eval_cola.chain import Chain
from lm_eval_cola.compat.lm_eval_private import batch_size_at_least, encode_pair
from lm_eval_cola.engine import chain_applied
from lm_eval_cola.fast import SampleScorer, pack, score_many
from lm_eval_cola.fast_generate import PromptCache, SampleGenerator

Responses = list[Any]
# What answers one sample under a chain: a scorer (batched by score_many) or a call.
SampleEvaluator = SampleScorer | Callable[[Chain], Responses]


class ChainRunner:
    """Runs requests of an ``HFLM`` (a cola model) under chains."""

    def __init__(self, lm: HFLM, fast: bool, cache_bytes: int):
        self.lm = lm
        self.fast = fast
        self.cache_bytes = cache_bytes
        self.prompt_cache = PromptCache(cache_bytes)  # whole prompts, kept across samples
        self._decoder: SampleGenerator | None = None

    def run(self, kind: str, requests: list, chain: Chain) -> Responses:
        """Raw responses of ``requests`` (one sample's distinct requests) under ``chain``,
        through lm-eval's own path."""
        lm = self.lm
        with chain_applied(lm.model, chain):
            if kind == "generate_until":
                return HFLM.generate_until(lm, requests, disable_tqdm=True)
            with batch_size_at_least(lm, len(requests)):  # all choices in one batch
                return HFLM.loglikelihood(lm, requests, disable_tqdm=True)

    def evaluator(self, kind: str, requests: list, cache_bytes: int) -> SampleEvaluator:
        """The cheapest exact way to answer ``requests`` under any chain."""
        lm = self.lm
        if kind == "loglikelihood" and self.fast:
            sample = pack([encode_pair(lm, *r.args) for r in requests], lm.max_length)
            if SampleScorer.usable(lm.model, sample):
                return SampleScorer(lm.model, sample, lm.device, cache_bytes)
        if kind == "generate_until" and self.fast and lm.mixed_precision_dtype is None:
            generator = SampleGenerator(lm.model, lm.tokenizer, cache_bytes, self.prompt_cache)

            def generate(chain: Chain) -> Responses:
                generator.chain = chain
                with self.decoding(generator):
                    return self.run(kind, requests, chain)

            return generate
        return functools.partial(self.run, kind, requests)

    @contextmanager
    def decoding(self, generator: SampleGenerator) -> Iterator[None]:
        self._decoder = generator
        try:
            yield
        finally:
            self._decoder = None

    def model_generate(self, context: Any, max_length: int, stop: list[str],
                       kwargs: dict[str, Any], fallback: Callable[..., Any]) -> Any:
        """What the cola model's ``_model_generate`` returns: the fast decoder's tokens
        when one is active and usable for this call, else ``fallback``'s."""
        decoder = self._decoder
        if decoder is not None and decoder.usable(context, max_length, kwargs):
            return decoder.generate(context, max_length, stop)
        return fallback(context, max_length, stop, **kwargs)


def evaluate_many(model: Any, asks: list[tuple[SampleEvaluator, Chain]]) -> list[Responses]:
    """Answers to (evaluator, chain) asks: every scorer's in one batched forward
    (``score_many``), the others one call each, in order."""
    answers: list[Any] = [None] * len(asks)
    batched = [k for k, (target, _) in enumerate(asks) if isinstance(target, SampleScorer)]
    if batched:
        scores = score_many(model, [asks[k] for k in batched])  # type: ignore[misc]
        for k, answer in zip(batched, scores, strict=True):
            answers[k] = answer
    for k, (target, chain) in enumerate(asks):
        if not isinstance(target, SampleScorer):
            answers[k] = target(chain)
    return answers
