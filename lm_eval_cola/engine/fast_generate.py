"""Fast greedy generation of many samples' prompts under many chains (generation tasks'
hot path, e.g. gsm8k), batched.

lm-eval's path runs ``model.generate`` from scratch for every chain the search tries, one
token per forward of batch 1. Three savings; the tokens are generate's (up to float
rounding: batched products and a pass over several tokens may round differently from
one-token steps; tests/test_batch_generate.py checks equality chain by chain on every
architecture, benchmarks/search_speed.py the answers and chosen chains on the real model):

1. Many rows in one forward: every pending (sample, chain) decodes side by side in a
   :class:`BatchGenerator` (``batch_generate.py``: one forward per step, rows grouped by
   layer, a KV cache per row and chain position, rows joining and leaving at any step).
   Decoding reads every weight once per step, so a step of many rows costs little more
   than a step of one.
2. Prompt prefix reuse: the hidden states and the KV-cache slot that each chain
   position produced over the prompt are kept, keyed by the chain prefix that made
   them. A new chain replays its longest stored prefix (hidden state and cache slots
   restored: bitwise what running those layers again gives) and runs only the layers
   after it over the prompt. A sample's store keeps a chain's start before its end
   (``PrefixStore(chained=True)``): replaying needs every position's KV slot. With
   ``share_prompts`` (off by default), a :class:`PromptCache` keeps whole prompts' caches
   per chain across samples: few-shot prompts share their examples, so under a chain seen
   before only a prompt's own tail runs. That tail, run apart, rounds differently from
   the whole prompt run at once, so a sample's tokens could then depend on which samples
   ran before it.
3. Earlier answers as drafts: chains a search step apart mostly write the same text.
   Where the last tokens generated so far occur in an earlier chain's answer to this
   prompt (or in the prompt), the tokens that followed there are guessed and checked in
   the same pass, as in speculative (prompt-lookup) decoding: the guesses are kept up
   to the first one this chain would not pick greedily, and that one is replaced by this
   chain's own pick. At most ``BATCH_DRAFT`` guesses a row and step: beside other rows,
   guesses cost compute.

Tokens are chosen by argmax of the logits, and generation stops on lm-eval's own stop
criteria (per row), on an end-of-sequence token or at ``max_length``, as
``model.generate`` with ``do_sample=False`` does. When anything would make ``generate``
do more than that (a sampling or beam setting, a logits processor in the model's
generation config, padding, a sliding window the sequence can outgrow, an attention
implementation other than sdpa or eager) the caller uses ``generate`` instead.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

import torch

from lm_eval_cola.chains.syntax import Chain
from lm_eval_cola.compat.lm_eval_private import stop_sequences_criteria
from lm_eval_cola.engine.batch_generate import (
    DECODE_STATS,
    DEFAULT_KV_BYTES,
    Admission,
    RowState,
    attention_supported,
    fast_numerics,
    forward_rows,
    head_argmax,
)
from lm_eval_cola.engine.fast import DEFAULT_CACHE_BYTES, PrefixStore, common_prefix, sliding_window

logger = logging.getLogger(__name__)

# generation_config fields that add a logits processor or change the search: with any of
# these set to other than its neutral value, greedy decoding is not a plain argmax.
_NEUTRAL_GENERATION = {
    "num_beams": (None, 1), "repetition_penalty": (None, 1.0),
    "encoder_repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0),
    "min_length": (None, 0), "min_new_tokens": (None,), "bad_words_ids": (None,),
    "suppress_tokens": (None,), "begin_suppress_tokens": (None,),
    "forced_bos_token_id": (None,), "forced_eos_token_id": (None,), "sequence_bias": (None,),
    "exponential_decay_length_penalty": (None,), "guidance_scale": (None, 1.0),
    "watermarking_config": (None,), "max_time": (None,), "stop_strings": (None,),
    "max_new_tokens": (None,),
}
# Generation kwargs lm-eval may hand over that greedy decoding here honours.
_ALLOWED_KWARGS = {"attention_mask", "do_sample", "temperature", "top_p", "top_k"}


def eos_ids(model: torch.nn.Module) -> set[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(model.config, "eos_token_id", None)
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, list | tuple) else [eos])}


class SampleGenerator:
    """One prompt's (one sample's) greedy generation under any chain, reusing work across
    chains: its prompt's stored prefixes and earlier answers (drafts). Its rows decode in
    a :class:`BatchGenerator` beside other samples' rows (``generate_many``);
    :meth:`generate` decodes one row alone (set ``chain`` first: lm-eval's
    ``_model_generate`` is the caller there)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any,
                 cache_bytes: int = DEFAULT_CACHE_BYTES, prompt_cache: PromptCache | None = None,
                 numerics: str = "exact"):
        self.model = model
        self.tokenizer = tokenizer
        self.cache_bytes = cache_bytes
        # its rows' numerics: "exact" (batch-invariant) or "fast" (caps lifted; batch_generate)
        self.numerics = numerics
        self.chain: Chain | None = None
        self._stores: dict[tuple[int, ...], PrefixStore] = {}
        self._drafts: dict[tuple[int, ...], list[tuple[Chain, list[int]]]] = {}
        self.eos = eos_ids(model)
        self.prompt_cache = prompt_cache
        # Counters, for the benchmark and the tests.
        self.prompt_layers_run = 0
        self.prompt_layers_total = 0
        self.prompt_tokens_from_cache = 0
        self.prompt_tokens_total = 0
        self.tokens_generated = 0
        self.tokens_from_drafts = 0

    # ------------------------------------------------------------------ when it applies

    def usable(self, context: torch.Tensor, max_length: int, kwargs: dict[str, Any]) -> bool:
        """Whether decoding here gives exactly what ``model.generate`` would."""
        if self.chain is None:
            return False
        return usable_call(self.model, context, max_length, kwargs)

    # ------------------------------------------------------------------ generation

    def row(self, chain: Chain, prompt: list[int], max_length: int, stop: list[str]) -> GenRow:
        """A row decoding ``prompt`` under ``chain``, for a :class:`BatchGenerator`."""
        return GenRow(self, chain, prompt, max_length, stop)

    def generate(self, context: torch.Tensor, max_length: int, stop: list[str]) -> torch.Tensor:
        """``context`` (1, n) followed by the greedy continuation, as ``generate`` returns."""
        assert self.chain is not None
        row = self.row(self.chain, context[0].tolist(), max_length, stop)
        generate_many(self.model, [row])
        return torch.tensor([row.sequence], device=context.device)

    def store(self, prompt: list[int]) -> PrefixStore:
        return self._stores.setdefault(tuple(prompt),
                                       PrefixStore(self.cache_bytes, chained=True))

    def earlier(self, prompt: list[int]) -> list[tuple[Chain, list[int]]]:
        return self._drafts.setdefault(tuple(prompt), [])


def usable_call(model: torch.nn.Module, context: torch.Tensor, max_length: int,
                kwargs: dict[str, Any]) -> bool:
    """Whether greedy decoding here gives exactly what ``model.generate`` does for one
    ``_model_generate`` call of lm-eval."""
    if context.shape[0] != 1 or not attention_supported(model):
        return False
    # lm-eval states do_sample; with it False, generate ignores temperature/top_p/top_k.
    if set(kwargs) - _ALLOWED_KWARGS or kwargs.get("do_sample") is not False:
        return False
    mask = kwargs.get("attention_mask")
    if mask is not None and not bool(mask.all()):
        return False
    config = getattr(model, "generation_config", None)
    for name, neutral in _NEUTRAL_GENERATION.items():
        if getattr(config, name, None) not in neutral:
            return False
    window = sliding_window(model)
    # Past the window a sliding cache drops old entries: our per-row caches keep them all.
    return window is None or max_length < window


class GenRow(RowState):
    """One (sample, chain) decoding: its tokens, stop criteria, drafts, and what the next
    step feeds (the prompt, or its last token and some guesses)."""

    def __init__(self, sample: SampleGenerator, chain: Chain, prompt: list[int],
                 max_length: int, stop: list[str]):
        super().__init__(chain, max_length + _DRAFT + 1, sample.numerics)
        self.sample = sample
        self.prompt = prompt
        self.limit = max_length - len(prompt)
        self.criteria = stop_sequences_criteria(sample.tokenizer, stop, len(prompt), 1)
        self.generated: list[int] = []
        self.sequence = list(prompt)
        self.done = self.limit <= 0
        self.prefilled = False
        self.guess: list[int] = []
        self.pause = self.misses = 0
        self.drafts = Drafts(prompt, list(sample.earlier(prompt)), chain, self.generated)
        self._keep: PrefixStore | None = None

    # ------------------------------------------------------------------ what a step feeds

    def prepare(self) -> None:
        self.hidden, self.start, self._keep = None, 0, None
        if self.prefilled:
            self.guess = ([] if self.pause else
                          self.drafts.propose(self.sequence,
                                              min(BATCH_DRAFT, self.limit - len(self.generated))))
            self.pause = max(0, self.pause - 1)
            self.feed = [self.generated[-1], *self.guess]
            return
        sample, prompt, chain = self.sample, self.prompt, self.chain
        store = sample.store(prompt)
        stored = store.run(chain)
        cache = sample.prompt_cache
        shared, layers = cache.lookup(chain, prompt) if cache else (0, None)
        shared = min(shared, len(prompt) - 1)  # the last token must run: its logits
        sample.prompt_tokens_total += len(prompt)
        # Cost in layer-tokens: the rest of the prompt through every layer, or every
        # token through the layers after the longest stored chain prefix.
        if layers is not None and len(chain) * (len(prompt) - shared) < (
                (len(chain) - len(stored)) * len(prompt)):
            for position, (keys, values) in enumerate(layers):
                self.put_slot(position, keys[:, :, :shared], values[:, :, :shared])
            self.length = shared
            self.feed = prompt[shared:]
            sample.prompt_tokens_from_cache += shared
            return
        for position, (_hidden, keys, values) in enumerate(stored):
            self.put_slot(position, keys, values)
        self.start = len(stored)
        self.hidden = stored[-1][0] if stored else None
        self.feed = list(prompt)
        self._keep = store
        sample.prompt_layers_run += len(chain) - len(stored)
        sample.prompt_layers_total += len(chain)

    def on_output(self, position: int, output: torch.Tensor) -> None:
        if self._keep is not None:
            keys, values = self.slot(position, len(self.prompt))
            self._keep.put(self.chain[:position + 1], (output.clone(), keys, values))

    def head_inputs(self) -> torch.Tensor:
        """The final hidden states whose logits this step needs, (k, H)."""
        assert self.final is not None
        return self.final[0, -1:] if not self.prefilled else self.final[0]

    # ------------------------------------------------------------------ what came back

    def take(self, picks: list[int]) -> None:
        """The greedy picks at the fed positions: accept them (and the guesses they
        confirm), and note when the row is done."""
        if not self.prefilled:
            self.prefilled = True
            self.length = len(self.prompt)
            cache = self.sample.prompt_cache
            if cache is not None:
                cache.put(self.chain, self.prompt,
                          [self.slot(p, self.length) for p in range(len(self.chain))])
            self.done = self._emit(picks[-1])
            return
        kept = 1  # fed tokens whose cache entries stay valid
        for i, pick in enumerate(picks):
            self.done = self._emit(pick)
            if self.done or i >= len(self.guess) or pick != self.guess[i]:
                break
            kept += 1
        self.sample.tokens_from_drafts += kept - 1
        DECODE_STATS.tokens_from_drafts += kept - 1
        self.length += kept
        if self.guess:
            # A pass over several tokens costs about what one step does on a CPU (weights
            # are read once either way): stop guessing for a while when guesses keep
            # failing at their first token.
            self.misses = self.misses + 1 if kept == 1 else 0
            self.pause = (1 << min(self.misses, 4)) - 1
        self.drafts.index_own()

    def _emit(self, token: int) -> bool:
        """Append ``token``; True when generation is over (as ``generate`` decides)."""
        self.generated.append(token)
        self.sequence.append(token)
        if token in self.sample.eos or len(self.generated) >= self.limit:
            return True
        return bool(self.criteria(torch.tensor([self.sequence]), None).all())

    def finish(self) -> None:
        self.sample.tokens_generated += len(self.generated)
        self.sample.earlier(self.prompt).append((self.chain, list(self.generated)))
        self._slots.clear()


class BatchGenerator:
    """Rows decoding side by side: ``add`` rows at any time, ``step`` runs one batched
    forward and returns the rows that finished (continuous batching). Rows wait while
    the KV slots of the rows running would pass ``kv_bytes``."""

    def __init__(self, model: torch.nn.Module, kv_bytes: int = DEFAULT_KV_BYTES):
        self.model = model
        self.admission = Admission(kv_bytes)
        self.running: list[GenRow] = []
        self._sizes: dict[int, int] = {}
        self._ready: list[GenRow] = []  # rows with nothing to decode

    @property
    def busy(self) -> bool:
        return bool(self.running or self.admission.waiting or self._ready)

    def add(self, row: GenRow) -> None:
        if row.done:
            row.finish()
            self._ready.append(row)
            return
        size = row.bytes_needed(self.model)
        self._sizes[id(row)] = size
        self.admission.offer(row, size)

    def step(self) -> list[GenRow]:
        finished, self._ready = self._ready, []
        self.running += self.admission.admit(len(self.running))
        if not self.running:
            return finished
        for row in self.running:
            row.prepare()
        forward_rows(self.model, self.running)
        heads = [row.head_inputs() for row in self.running]
        # Chains end in different layers, so with a device map on different devices.
        picks = head_argmax(self.model, torch.cat([h.to(heads[0].device) for h in heads]),
                            fast=fast_numerics(self.running))
        stats = DECODE_STATS
        stats.steps += 1
        stats.row_steps += len(self.running)
        stats.max_rows = max(stats.max_rows, len(self.running))
        stats.fed_tokens += sum(len(row.feed) for row in self.running)
        at, still = 0, []
        for row, rows in zip(self.running, heads, strict=True):
            row.take(picks[at:at + rows.shape[0]])
            at += rows.shape[0]
            if row.done:
                row.finish()
                stats.rows += 1
                stats.tokens += len(row.generated)
                # generate alone: the prompt, then one token a step (the last one never fed)
                stats.alone_token_layers += len(row.chain) * (
                    len(row.prompt) + max(len(row.generated) - 1, 0))
                self.admission.release(self._sizes.pop(id(row)))
                finished.append(row)
            else:
                still.append(row)
        self.running = still
        return finished


def generate_many(model: torch.nn.Module, rows: list[GenRow],
                  kv_bytes: int = DEFAULT_KV_BYTES) -> BatchGenerator:
    """Decode every row to its end, side by side."""
    engine = BatchGenerator(model, kv_bytes)
    for row in rows:
        engine.add(row)
    while engine.busy:
        engine.step()
    return engine


# Guessed tokens per verification pass at most; tokens matched to find where to guess from.
_DRAFT = 16
_NGRAM = 3
# Guessed tokens per row and step: a row's guesses cost compute beside other rows.
BATCH_DRAFT = 4


class Drafts:
    """Guesses for the next tokens: where the last few tokens generated so far occur in an
    earlier chain's answer to the same prompt (chains sharing a longer prefix with this
    one first, the latest among equals), or else in the prompt, what followed there."""

    def __init__(self, prompt: list[int], earlier: list[tuple[Chain, list[int]]], chain: Chain,
                 generated: list[int]):
        tail = prompt[-_NGRAM:]
        ranked = sorted(range(len(earlier)),
                        key=lambda i: (common_prefix([earlier[i][0], chain]), i), reverse=True)
        # An answer is indexed after the prompt's last tokens, so its start is found too.
        # The generation going on (`generated`, growing) comes last: see index_own.
        self.texts = [tail + earlier[i][1] for i in ranked] + [prompt, generated]
        self.index: dict[tuple[int, ...], tuple[int, int]] = {}
        self._own_indexed = 0
        prompt_id = len(self.texts) - 2
        for text_id in range(prompt_id, -1, -1):  # better texts overwrite
            text = self.texts[text_id]
            positions = range(len(text) - _NGRAM - 1, -1, -1)  # the first occurrence wins
            if text_id == prompt_id:
                positions = range(len(text) - _NGRAM)  # in the prompt, the latest wins
            for j in positions:
                self.index[tuple(text[j:j + _NGRAM])] = (text_id, j + _NGRAM)

    def index_own(self) -> None:
        """Index the new tokens of this generation's own text too (it may repeat itself),
        below the rest."""
        own_id = len(self.texts) - 1
        own = self.texts[own_id]
        for j in range(self._own_indexed, len(own) - _NGRAM):
            self.index.setdefault(tuple(own[j:j + _NGRAM]), (own_id, j + _NGRAM))
        self._own_indexed = max(self._own_indexed, len(own) - _NGRAM)

    def propose(self, sequence: list[int], size: int) -> list[int]:
        found = self.index.get(tuple(sequence[-_NGRAM:]))
        if found is None or size <= 0:
            return []
        text_id, start = found
        return self.texts[text_id][start:start + size]


class PromptCache:
    """Whole prompts' KV caches per chain, kept across samples: few-shot prompts share a long
    start (the examples), so under a chain seen before only a prompt's own tail runs.
    Least recently used out past ``max_bytes``."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[Chain, tuple[list[int], list[Any], int]] = OrderedDict()

    def lookup(self, chain: Chain, prompt: list[int]) -> tuple[int, list[Any] | None]:
        """(tokens shared with the stored prompt, its (keys, values) per chain position),
        or (0, None)."""
        item = self._items.get(chain)
        if item is None:
            return 0, None
        stored, layers, _ = item
        shared = common_prefix([stored, prompt])
        if shared == 0:
            return 0, None
        self._items.move_to_end(chain)
        return shared, layers

    def put(self, chain: Chain, prompt: list[int], layers: list[Any]) -> None:
        size = sum(t.numel() * t.element_size() for pair in layers for t in pair)
        old = self._items.pop(chain, None)
        if old is not None:
            self.bytes -= old[2]
        if size > self.max_bytes:
            return
        self._items[chain] = (list(prompt), layers, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, _, freed) = self._items.popitem(last=False)
            self.bytes -= freed
