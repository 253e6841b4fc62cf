"""Run one sample's requests under any chain: the three ways, chosen once per sample.

- lm-eval's own path (``HFLM.loglikelihood`` / ``generate_until``) inside
  ``chain_applied``: exact by construction, and the reference the fast paths are
  tested against;
- loglikelihood with ``fast``: a ``SampleScorer`` (packed context, prefix reuse, scored
  logits only), which ``fast.score_many`` batches with other samples' scorers;
- generate_until with ``fast``: a ``SampleDecoder``, which ``evaluate_many`` decodes
  beside other samples' and chains' decoders in one batched greedy decoder
  (``fast_generate.generate_many``: prompt prefix reuse, earlier answers as drafts, one
  forward per step for every row). lm-eval's own ``generate_until`` still prepares the
  tokens and turns the generated tokens into text: it runs once with no model call to
  capture its decoding calls (``HFLM._model_generate``: prompt, ``max_length``, stop
  sequences, kwargs), and after decoding once per chain to read the tokens back, so the
  text is exactly what its own path makes of those tokens. Both runs reach the runner
  through ``decoding_by``: it sets the model's ``decode_hook`` for their duration, which a
  cola model's decoding step consults, so any runner built on a model works. When a call
  is one the greedy decoder cannot answer exactly (sampling, a logits processor,
  padding, ...) the sample takes lm-eval's own path.

Where the searcher's reward is graded (``teacher_forcing``), a generation sample's answers
also carry, per chain, the teacher-forced log-likelihood of texts after its prompt (the
gold's, the decoy's: ``teacher_forced.TeacherForcer``), which the judge turns into the
graded score; a decoder's forced passes run batched right after its chains' decoding,
reusing the prompt's KV slots the decoding left.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from lm_eval.api.model import CacheHook
from lm_eval.models.huggingface import HFLM

from lm_eval_cola.chains.syntax import Chain
from lm_eval_cola.compat.lm_eval_private import batch_size_at_least, encode_pair
from lm_eval_cola.engine.apply import chain_applied
from lm_eval_cola.engine.fast import SampleScorer, pack, score_many
from lm_eval_cola.engine.fast_generate import (
    BatchGenerator,
    GenRow,
    PromptCache,
    SampleGenerator,
    generate_many,
    usable_call,
)
from lm_eval_cola.engine.memory import model_device, resolve_budgets
from lm_eval_cola.engine.teacher_forced import TeacherForcer, force_many

Responses = list[Any]
# lm-eval's decoding step, as a cola model's _model_generate hands it to ``decode_hook``.
Hook = Callable[[torch.Tensor, int, list[str], dict[str, Any]], torch.Tensor]


@dataclass(frozen=True)
class DecodeCall:
    """One decoding call lm-eval's ``generate_until`` makes for a sample."""

    prompt: list[int]
    max_length: int
    stop: list[str]


class SampleDecoder:
    """One sample's generate_until requests, decoded greedily under any chain by the
    batched decoder; ``evaluate_many`` batches it with other decoders."""

    def __init__(self, runner: ChainRunner, requests: list, calls: list[DecodeCall],
                 generator: SampleGenerator, kv_bytes: int,
                 forcer: TeacherForcer | None = None):
        self.runner, self.requests, self.calls = runner, requests, calls
        self.generator = generator
        self.kv_bytes = kv_bytes
        self.forcer = forcer  # graded reward: teacher-forced values beside each answer

    def rows(self, chain: Chain) -> list[GenRow]:
        return [self.generator.row(chain, c.prompt, c.max_length, c.stop) for c in self.calls]

    def respond(self, rows: list[GenRow]) -> Responses:
        """lm-eval's generate_until answers, its decoding calls answered by ``rows``."""
        answers = iter(rows)

        def replay(context: torch.Tensor, max_length: int, stop: list[str],
                   kwargs: dict[str, Any]) -> torch.Tensor:
            row = next(answers)
            if context[0].tolist() != row.prompt or max_length != row.limit + len(row.prompt):
                raise RuntimeError("lm-eval's generate_until asked other decoding calls than "
                                   "it did before: a fast-path bug, please report it")
            return torch.tensor([row.sequence], device=context.device)

        responses = self.runner.without_model(self.requests, replay)
        if self.forcer is not None:
            return self.forcer.wrap(rows[0].chain, responses)
        return responses

    def __call__(self, chain: Chain) -> Responses:
        rows = self.rows(chain)
        generate_many(self.generator.model, rows, self.kv_bytes)
        force_after(self.generator.model, [(self, chain)])
        return self.respond(rows)


def force_after(model: Any, decoded: list[tuple[SampleDecoder, Chain]]) -> None:
    """The registered teacher-forced values of decoded (decoder, chain) pairs, in one
    batched pass while the prompts' KV slots are fresh in the decoders' stores."""
    rows = [row for decoder, chain in decoded if decoder.forcer is not None
            for row in decoder.forcer.rows(chain)]
    if rows:
        force_many(model, rows, decoded[0][0].kv_bytes)


class ForcedCall:
    """A generation sample on lm-eval's own path, its answers carrying teacher-forced
    values (computed on demand)."""

    def __init__(self, run: Callable[[Chain], Responses], forcer: TeacherForcer):
        self.run, self.forcer = run, forcer

    def __call__(self, chain: Chain) -> Responses:
        return self.forcer.wrap(chain, self.run(chain))


# What answers one sample under a chain: batched objects, or a call.
SampleEvaluator = SampleScorer | SampleDecoder | Callable[[Chain], Responses]


class ChainRunner:
    """Runs requests of an ``HFLM`` (a cola model) under chains."""

    def __init__(self, lm: HFLM, fast: bool, cache_bytes: int | None,
                 kv_bytes: int | None = None,
                 teacher_forcing: bool | Callable[[], bool] = False, numerics: str = "exact",
                 share_prompts: bool = False):
        """Everything is passed by the caller (the model's settings): the runner reads
        nothing off ``lm`` but what lm-eval's own request path needs."""
        self.lm = lm
        # "exact": batch-invariant scores and tokens; "fast": the caps lifted (config.NUMERICS)
        self.numerics = numerics
        # a callable is asked at each sample (a caller may swap its searcher between runs)
        self._teacher_forcing = teacher_forcing
        self.fast = fast
        # prefix_cache_bytes, generation_kv_bytes (the KV slots of the rows decoding at
        # once): None follows the device's free memory, read now, after the model loaded
        budgets = resolve_budgets(model_device(lm.model), cache_bytes, kv_bytes)
        self.cache_bytes, self.kv_bytes = budgets.cache_bytes, budgets.kv_bytes
        # whole prompts, kept across samples: only where the user asked (share_prompts)
        self.prompt_cache = PromptCache(self.cache_bytes) if share_prompts else None

    @property
    def teacher_forcing(self) -> bool:
        """Whether generation answers carry teacher-forced values (the graded score's)."""
        forcing = self._teacher_forcing
        return bool(forcing() if callable(forcing) else forcing)

    def batches(self, kind: str) -> bool:
        """Whether samples of ``kind`` are best searched side by side (their evaluators
        are batched by ``evaluate_many``)."""
        return self.fast and kind in ("loglikelihood", "generate_until")

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
                return SampleScorer(lm.model, sample, lm.device, cache_bytes, self.numerics)
        forcing = kind == "generate_until" and self.teacher_forcing
        if kind == "generate_until" and self.fast and lm.mixed_precision_dtype is None:
            calls = self._decoding_calls(requests)
            if calls is not None:
                generator = SampleGenerator(lm.model, lm.tokenizer, cache_bytes,
                                            self.prompt_cache, self.numerics)
                forcer = (TeacherForcer(lm, requests, True, generator, calls[0].prompt,
                                        self.kv_bytes) if forcing else None)
                return SampleDecoder(self, requests, calls, generator, self.kv_bytes, forcer)
        run = functools.partial(self.run, kind, requests)
        if forcing:
            return ForcedCall(run, TeacherForcer(lm, requests, self.fast, kv_bytes=self.kv_bytes))
        return run

    def _decoding_calls(self, requests: list) -> list[DecodeCall] | None:
        """The decoding calls lm-eval's generate_until makes for ``requests`` (it runs
        with each call answered by its prompt alone: no model call), or None when one of
        them is not plain greedy decoding."""
        calls: list[DecodeCall] = []
        usable = True

        def capture(context: torch.Tensor, max_length: int, stop: list[str],
                    kwargs: dict[str, Any]) -> torch.Tensor:
            nonlocal usable
            usable = usable and usable_call(self.lm.model, context, max_length, kwargs)
            calls.append(DecodeCall(context[0].tolist(), int(max_length), list(stop)))
            return context

        self.without_model(requests, capture)
        if not calls:
            # The model's decoding step never consulted ``decode_hook``: not a cola model
            # (its _model_generate is lm-eval's own), so nothing could be captured.
            raise RuntimeError("lm-eval's generate_until made no decoding call through this "
                               "runner; the model's decoding step does not read decode_hook")
        return calls if usable else None

    def without_model(self, requests: list, hook: Hook) -> Responses:
        """lm-eval's generate_until over ``requests`` with each decoding call answered by
        ``hook``; nothing reaches lm-eval's response cache."""
        lm = self.lm
        saved_hook, lm.cache_hook = lm.cache_hook, CacheHook(None)
        try:
            with decoding_by(lm, hook):
                return HFLM.generate_until(lm, requests, disable_tqdm=True)
        finally:
            lm.cache_hook = saved_hook


@contextmanager
def decoding_by(lm: Any, hook: Hook) -> Iterator[None]:
    """Inside the block, ``lm.decode_hook`` is ``hook``: a cola model's decoding step
    (its ``_model_generate``) hands each call to it instead of decoding. The runner that
    captures or replays installs its own hook on the model it runs, so any runner built on
    a model decodes through its own fast path; the previous hook comes back after."""
    saved = getattr(lm, "decode_hook", None)
    lm.decode_hook = hook
    try:
        yield
    finally:
        lm.decode_hook = saved


def evaluate_many(model: Any, asks: list[tuple[SampleEvaluator, Chain]]) -> list[Responses]:
    """Answers to (evaluator, chain) asks: every scorer's in one batched forward
    (``score_many``), every decoder's rows decoded side by side (``generate_many``), the
    others one call each, in order."""
    answers: list[Any] = [None] * len(asks)
    batched = [k for k, (target, _) in enumerate(asks) if isinstance(target, SampleScorer)]
    if batched:
        scores = score_many(model, [asks[k] for k in batched])  # type: ignore[misc]
        for k, answer in zip(batched, scores, strict=True):
            answers[k] = answer
    decoding = [k for k, (target, _) in enumerate(asks) if isinstance(target, SampleDecoder)]
    if decoding:
        rows = {k: asks[k][0].rows(asks[k][1]) for k in decoding}  # type: ignore[union-attr]
        kv_bytes = asks[decoding[0]][0].kv_bytes  # type: ignore[union-attr]
        generate_many(model, [row for k in decoding for row in rows[k]], kv_bytes)
        force_after(model, [asks[k] for k in decoding])  # type: ignore[misc]
        for k in decoding:
            answers[k] = asks[k][0].respond(rows[k])  # type: ignore[union-attr]
    for k, (target, chain) in enumerate(asks):
        if not isinstance(target, SampleScorer | SampleDecoder):
            answers[k] = target(chain)
    return answers


class Evaluations:
    """``evaluate_many`` for one model, also as a stream for ``scheduler.run_searches``:
    ``submit(tag, asks)`` hands over one search's asks, ``step()`` does one batched piece
    of work and returns the ``(tag, answers)`` of every submission it completed.

    Decoders' rows join one long-lived batched decoder, so a search whose chains are
    decoded asks its next ones while other searches' rows still decode (continuous
    batching); other asks are answered together in the next step (``evaluate_many``)."""

    def __init__(self, model: Any):
        self.model = model
        self._engine: BatchGenerator | None = None
        self._others: list[tuple[Any, list]] = []
        self._decoding: dict[Any, tuple[list, list[list[GenRow]], list[int]]] = {}
        self._owner: dict[int, Any] = {}

    def __call__(self, asks: list[tuple[SampleEvaluator, Chain]]) -> list[Responses]:
        return evaluate_many(self.model, asks)

    def submit(self, tag: Any, asks: list[tuple[SampleEvaluator, Chain]]) -> None:
        if not asks or not all(isinstance(target, SampleDecoder) for target, _ in asks):
            self._others.append((tag, asks))
            return
        if self._engine is None:
            self._engine = BatchGenerator(self.model, asks[0][0].kv_bytes)  # type: ignore[union-attr]
        rows = [target.rows(chain) for target, chain in asks]  # type: ignore[union-attr]
        self._decoding[tag] = (asks, rows, [sum(len(r) for r in rows)])
        for row in (row for group in rows for row in group):
            self._owner[id(row)] = tag
            self._engine.add(row)

    def step(self) -> list[tuple[Any, list[Responses]]]:
        done: list[tuple[Any, list[Responses]]] = []
        if self._others:
            waiting, self._others = self._others, []
            answers = evaluate_many(self.model, [ask for _, asks in waiting for ask in asks])
            at = 0
            for tag, asks in waiting:
                done.append((tag, answers[at:at + len(asks)]))
                at += len(asks)
            return done
        if self._engine is None or not self._engine.busy:
            if self._decoding:
                raise RuntimeError("submitted decoding rows were lost")
            return done
        finished = []
        for row in self._engine.step():
            tag = self._owner.pop(id(row))
            asks, rows, left = self._decoding[tag]
            left[0] -= 1
            if left[0] == 0:
                del self._decoding[tag]
                finished.append((tag, asks, rows))
        # the teacher-forced values of every submission this step completed, in one pass
        force_after(self.model, [ask for _, asks, _ in finished for ask in asks])
        for tag, asks, rows in finished:
            done.append((tag, [target.respond(group)  # type: ignore[union-attr]
                               for (target, _), group in zip(asks, rows, strict=True)]))
        return done
