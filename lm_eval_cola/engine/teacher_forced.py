"""The teacher-forced log-likelihood of a text after a generation sample's prompt, under any
chain: the input of a generation sample's graded score (``forced_text.py`` says which text
and how it is squashed; the runner makes a :class:`TeacherForcer` per sample where the
searcher's reward is graded).

Fast path: a :class:`ForcedRow` per (chain, text) runs through the batched decoder's
forward (``batch_generate.forward_rows``). Decoding a chain leaves, in the sample's store
(``fast_generate``), the prompt's KV-cache slots of every chain position and the last
position's output over the prompt. The row replays the slots, so the prompt is not run
again; the text's first token is scored from the stored output at the prompt's last token
(what decoding's first pick read), and only the text less its last token is fed (one pass,
teacher-forced; a one-token answer, e.g. a choice label, runs no layer at all). The LM head
runs only where a text token is scored. Where the store no longer holds the whole chain
(evicted) the row feeds the whole sequence (with ``share_prompts``, from the prompt
cache's slots). The rows of many (sample, chain, text) run side by side, up to
``kv_bytes`` of KV slots a forward.

Other path (``fast=false``, or a model the batched forward cannot run: an attention
implementation other than sdpa/eager, mixed precision, a sliding window shorter than the
sequence): lm-eval's own ``HFLM.loglikelihood`` of (context, text) under the chain.

Tokens are lm-eval's loglikelihood tokens (``encode_pair``: the context's trailing
whitespace moves to the text; left-truncated to ``max_length + 1``), so the value equals
lm-eval's ``hf`` loglikelihood of (context, text) on a model rebuilt with the chain's
layers, up to float rounding (tests/test_generation_reward.py). Replayed slots and a
whole-sequence pass may round differently, so a value is bitwise reproducible while the
store holds the chain (it does unless the prefix cache is too small for the chains in
flight).

A text's first value under a chain is computed when the judge asks for it (alone); from
then on the text is *registered*, and the runner computes it beside every later chain's
decoding (batched). The gold is asked for at the first judged chain, the decoy's answer
at the first chain the decoy run judges.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lm_eval_cola.chains.syntax import Chain
from lm_eval_cola.compat.lm_eval_private import encode_pair
from lm_eval_cola.engine.apply import chain_applied, chain_positions
from lm_eval_cola.engine.batch_generate import (
    CHUNK_TOKENS,
    DEFAULT_KV_BYTES,
    RowState,
    attention_supported,
    forward_rows,
)
from lm_eval_cola.engine.fast import PAD_MULTIPLE, common_prefix, layer_output, sliding_window

logger = logging.getLogger(__name__)


@dataclass
class ForceStats:
    """What the teacher-forced passes did (for measurements and tests)."""

    rows: int = 0  # (chain, text) values computed by the fast path
    alone: int = 0  # of them, computed alone when the judge asked (a text's first chains)
    fed_tokens: int = 0  # tokens run through the chain
    reused_tokens: int = 0  # prompt tokens replayed from the decoder's store instead
    lm_eval_calls: int = 0  # values computed by lm-eval's own loglikelihood

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


FORCE_STATS = ForceStats()


class ForcedRow(RowState):
    """One (chain, text) pass: ``inputs`` (prompt and text, less the text's last token)
    whose last ``len(targets)`` positions score the text's tokens. The first ``shared``
    tokens' KV slots come from ``stored`` (per chain position: keys, values), and
    ``lead`` holds the last position's stored output at the scored positions among them
    (k, H); the rest of ``inputs`` is fed."""

    def __init__(self, forcer: TeacherForcer, chain: Chain, text: str, inputs: list[int],
                 targets: list[int], stored: Sequence[tuple[torch.Tensor, torch.Tensor]],
                 shared: int, lead: torch.Tensor | None = None):
        super().__init__(chain, len(inputs))
        self.forcer, self.text = forcer, text
        self.inputs, self.targets = inputs, targets
        self.stored, self.shared, self.lead = stored, shared, lead

    def scored_hidden(self) -> torch.Tensor:
        """The final hidden states that score the text's tokens, (len(targets), H)."""
        fed = len(self.targets) - (0 if self.lead is None else self.lead.shape[0])
        if not fed:
            assert self.lead is not None
            return self.lead
        assert self.final is not None
        if self.lead is None:
            return self.final[0, -fed:]
        return torch.cat([self.lead.to(self.final.device), self.final[0, -fed:]])

    def prepare(self) -> None:
        self.start, self.hidden, self.final = 0, None, None
        self.length = self.shared
        self.feed = self.inputs[self.shared:]
        if self.shared and self.feed:  # nothing fed: scored from the stored output alone
            for position, (keys, values) in enumerate(self.stored):
                self.put_slot(position, keys[:, :, :self.shared], values[:, :, :self.shared])

    def finish(self, loglikelihood: float) -> None:
        self.forcer.values[(self.chain, self.text)] = loglikelihood / len(self.targets)
        self._slots.clear()
        self.stored, self.lead, self.final = (), None, None


@torch.no_grad()
def force_many(model: torch.nn.Module, rows: Sequence[ForcedRow],
               kv_bytes: int = DEFAULT_KV_BYTES) -> None:
    """Compute every row's value, side by side, at most ``kv_bytes`` of KV slots a forward
    (at least one row)."""
    group: list[ForcedRow] = []
    size = 0
    for row in rows:
        need = row.bytes_needed(model) if len(row.inputs) > row.shared else 0  # fed: slots
        if group and size + need > kv_bytes:
            _force(model, group)
            group, size = [], 0
        group.append(row)
        size += need
    if group:
        _force(model, group)


def _force(model: torch.nn.Module, rows: list[ForcedRow]) -> None:
    for row in rows:
        row.prepare()
        FORCE_STATS.rows += 1
        FORCE_STATS.fed_tokens += len(row.feed)
        FORCE_STATS.reused_tokens += row.shared
    running = [row for row in rows if row.feed]  # a row scored from the store alone: none
    if running:
        forward_rows(model, running)
    hidden = torch.cat([row.scored_hidden() for row in rows])
    targets = [t for row in rows for t in row.targets]
    logprobs = head_logprobs(model, hidden, targets)
    at = 0
    for row in rows:
        row.finish(float(logprobs[at:at + len(row.targets)].sum()))
        at += len(row.targets)


@torch.no_grad()
def head_logprobs(model: torch.nn.Module, hidden: torch.Tensor, targets: list[int],
                  chunk_tokens: int = CHUNK_TOKENS) -> torch.Tensor:
    """Log-probability of ``targets[k]`` after final hidden state ``hidden[k]`` (final norm
    and LM head by the model's own forward on a one-position chain, in calls of at most
    ``chunk_tokens`` rows padded to a multiple of ``PAD_MULTIPLE``: as
    ``batch_generate.head_argmax``, so a row's value does not depend on its batch)."""
    out = []
    # one host-to-device copy, not one a chunk (on CUDA each waits for the device)
    wanted = torch.tensor(targets, dtype=torch.long, device=hidden.device)
    for begin in range(0, hidden.shape[0], chunk_tokens):
        rows = hidden[begin:begin + chunk_tokens]
        real = rows.shape[0]
        rows = torch.cat([rows, rows.new_zeros(-real % PAD_MULTIPLE, rows.shape[1])])
        count, device = rows.shape[0], rows.device
        with chain_applied(model, (0,)):
            chain_positions(model)[0].replay = layer_output(model, rows[None])
            logits = model(input_ids=torch.zeros(1, count, dtype=torch.long, device=device),
                           position_ids=torch.zeros(1, count, dtype=torch.long, device=device),
                           use_cache=False).logits[0, :real]
        picks = wanted[begin:begin + real].to(logits.device)
        out.append(torch.log_softmax(logits.float(), dim=-1).gather(1, picks[:, None])[:, 0])
    return torch.cat(out).cpu()


class TeacherForcer:
    """One generation sample's teacher-forced values (mean log-likelihood per token of a
    text after its prompt) under any chain, each computed once.

    ``generator`` and ``prompt``: the sample's fast decoder and the prompt it decodes, whose
    stored KV slots the fast path replays (None: nothing to replay)."""

    def __init__(self, lm: Any, requests: list, fast: bool, generator: Any = None,
                 prompt: list[int] | None = None, kv_bytes: int = DEFAULT_KV_BYTES):
        self.lm = lm
        self.request = requests[0]  # a generation doc has one request (one prompt)
        self.context = str(self.request.args[0])
        self.fast = (fast and attention_supported(lm.model)
                     and getattr(lm, "mixed_precision_dtype", None) is None)
        self.generator, self.prompt = generator, prompt
        self.kv_bytes = kv_bytes
        self.texts: list[str] = []  # registered: computed beside later chains' decoding
        self.values: dict[tuple[Chain, str], float | None] = {}
        self._tokens: dict[str, tuple[list[int], list[int]]] = {}

    def wrap(self, chain: Chain, responses: list) -> ForcedResponses:
        return ForcedResponses(responses, self, chain)

    def mean_loglikelihood(self, chain: Chain, text: str) -> float | None:
        """The value of ``text`` under ``chain`` (None: the text has no tokens); computed
        now if not known, and ``text`` registered."""
        if text not in self.texts:
            self.texts.append(text)
        key = (chain, text)
        if key not in self.values:
            row = self._row(chain, text)
            if row is not None:
                FORCE_STATS.alone += 1
                force_many(self.lm.model, [row], self.kv_bytes)
            elif key not in self.values:
                self._lm_eval(chain, text)
        return self.values[key]

    def rows(self, chain: Chain) -> list[ForcedRow]:
        """Fast rows for the registered texts not yet known under ``chain``."""
        rows = []
        for text in self.texts:
            if (chain, text) not in self.values:
                row = self._row(chain, text)
                if row is not None:
                    rows.append(row)
        return rows

    def _encoded(self, text: str) -> tuple[list[int], list[int]]:
        """(inputs, scored tokens) as lm-eval's loglikelihood makes them."""
        if text not in self._tokens:
            context, continuation = encode_pair(self.lm, self.context, text)
            whole = (context + continuation)[-(self.lm.max_length + 1):]
            count = min(len(continuation), len(whole) - 1)
            self._tokens[text] = (whole[:-1], whole[len(whole) - count:])
        return self._tokens[text]

    def _row(self, chain: Chain, text: str) -> ForcedRow | None:
        """A fast row, or None: the text has no tokens (value None, set here) or the fast
        path cannot run it."""
        inputs, targets = self._encoded(text)
        if not targets:
            self.values[(chain, text)] = None
            return None
        window = sliding_window(self.lm.model)
        if not self.fast or (window is not None and len(inputs) >= window):
            return None
        return self._stored_row(chain, text, inputs, targets)

    def _stored_row(self, chain: Chain, text: str, inputs: list[int], targets: list[int]
                    ) -> ForcedRow:
        """The row, with what the sample's decoder stored of the prompt under ``chain``:
        every position's KV slots and the last one's output (``ForcedRow``); with only a
        shared prompt's slots (``share_prompts``), those up to the first scored position."""
        generator, prompt = self.generator, self.prompt
        first = len(inputs) - len(targets)  # the first scored position
        common = common_prefix([inputs, prompt]) if prompt else 0
        if generator is None or prompt is None or common == 0:
            return ForcedRow(self, chain, text, inputs, targets, [], 0)
        stored = generator.store(prompt).run(chain)
        if len(stored) == len(chain):
            slots = [(keys, values) for _, keys, values in stored]
            output = stored[-1][0]  # (1, len(prompt), H): the last position's, pre-norm
            lead = output[0, first:common] if common > first else None
            return ForcedRow(self, chain, text, inputs, targets, slots, common, lead)
        cache = generator.prompt_cache  # share_prompts: whole prompts' slots per chain
        if cache is not None and first > 0:
            shared, layers = cache.lookup(chain, prompt)
            if layers is not None and shared > 0:
                return ForcedRow(self, chain, text, inputs, targets, list(layers),
                                 min(common, shared, first))
        return ForcedRow(self, chain, text, inputs, targets, [], 0)

    def _lm_eval(self, chain: Chain, text: str) -> None:
        """The value by lm-eval's own loglikelihood under the chain (nothing reaches its
        response cache)."""
        from lm_eval.api.instance import Instance
        from lm_eval.api.model import CacheHook
        from lm_eval.models.huggingface import HFLM

        lm = self.lm
        request = Instance("loglikelihood", self.request.doc, (self.context, text), idx=0)
        saved, lm.cache_hook = lm.cache_hook, CacheHook(None)
        try:
            with chain_applied(lm.model, chain):
                [(loglikelihood, _)] = HFLM.loglikelihood(lm, [request], disable_tqdm=True)
        finally:
            lm.cache_hook = saved
        FORCE_STATS.lm_eval_calls += 1
        self.values[(chain, text)] = float(loglikelihood) / len(self._encoded(text)[1])


class ForcedResponses(list):
    """A generation sample's responses under one chain (a plain list to everything else),
    and the teacher-forced values of texts after its prompt under that chain, on demand:
    what ``TaskJudge`` reads for the graded score."""

    def __init__(self, responses: list, forcer: TeacherForcer, chain: Chain):
        super().__init__(responses)
        self.forcer, self.chain = forcer, chain

    @property
    def context(self) -> str:
        return self.forcer.context

    def mean_loglikelihood(self, text: str) -> float | None:
        return self.forcer.mean_loglikelihood(self.chain, text)
