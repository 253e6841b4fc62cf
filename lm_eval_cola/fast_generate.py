"""Fast greedy generation of one sample's prompt under many chains (generation tasks'
hot path, e.g. gsm8k).

lm-eval's path runs ``model.generate`` from scratch for every chain the search tries.
Three savings; the tokens are generate's (up to float rounding: a pass over several tokens
may round differently from one-token steps; tests/test_fast_generate.py checks equality
chain by chain, benchmarks/search_speed.py the chosen chains on the real model):

1. Prompt prefix reuse: the hidden states and the KV-cache slot that each chain
   position produced over the prompt are kept, keyed by the chain prefix that made
   them. A new chain replays its longest stored prefix (hidden state and cache slots
   restored) and runs only the layers after it over the prompt. Across samples, a
   :class:`PromptCache` keeps whole prompts' caches per chain: few-shot prompts share
   their examples, so under a chain seen before only a prompt's own tail runs.
2. Earlier answers as drafts: chains a search step apart mostly write the same text.
   Where the last tokens generated so far occur in an earlier chain's answer to this
   prompt (or in the prompt), the tokens that followed there are guessed and checked in
   one forward pass, as in speculative (prompt-lookup) decoding: the guesses are kept up
   to the first one this chain would not pick greedily, and that one is replaced by this
   chain's own pick. A pass over a few tokens costs about what one decoding step does on
   a CPU, where decoding is bound by reading the weights.

Tokens are chosen by argmax of the logits, and generation stops on lm-eval's own stop
criteria, on an end-of-sequence token or at ``max_length``, as ``model.generate`` with
``do_sample=False`` does. When anything would make ``generate`` do more than that (a
sampling or beam setting, a logits processor in the model's generation config, padding,
a sliding window the sequence can outgrow) the caller uses ``generate`` instead.
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from typing import Any

import torch

from lm_eval_cola.chain import Chain
from lm_eval_cola.compat.lm_eval_private import stop_sequences_criteria
from lm_eval_cola.engine import architecture_of, chain_positions
from lm_eval_cola.fast import DEFAULT_CACHE_BYTES, PrefixStore, common_prefix, sliding_window

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
    """Greedy generation for one sample under any chain, reusing work across chains.

    Set ``chain`` to the chain applied to the model, then call :meth:`generate` inside
    ``chain_applied(model, chain)`` (lm-eval's ``_model_generate`` is the caller)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any,
                 cache_bytes: int = DEFAULT_CACHE_BYTES, prompt_cache: PromptCache | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.cache_bytes = cache_bytes
        self.chain: Chain | None = None
        self._stores: dict[tuple[int, ...], PrefixStore] = {}
        self._drafts: dict[tuple[int, ...], list[tuple[Chain, list[int]]]] = {}
        self._eos = eos_ids(model)
        # `cache` in transformers 5, `past_key_values` before: see architectures.yaml.
        self._cache_arg = architecture_of(model).cache_keyword(model.forward)
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
        """Whether :meth:`generate` gives exactly what ``model.generate`` would."""
        if self.chain is None or context.shape[0] != 1:
            return False
        # lm-eval states do_sample; with it False, generate ignores temperature/top_p/top_k.
        if set(kwargs) - _ALLOWED_KWARGS or kwargs.get("do_sample") is not False:
            return False
        mask = kwargs.get("attention_mask")
        if mask is not None and not bool(mask.all()):
            return False
        config = getattr(self.model, "generation_config", None)
        for name, neutral in _NEUTRAL_GENERATION.items():
            if getattr(config, name, None) not in neutral:
                return False
        window = sliding_window(self.model)
        # Past the window a sliding cache drops old entries and cannot be rolled back.
        return window is None or max_length < window

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def generate(self, context: torch.Tensor, max_length: int, stop: list[str]) -> torch.Tensor:
        """``context`` (1, n) followed by the greedy continuation, as ``generate`` returns."""
        from transformers import DynamicCache

        chain = self.chain
        assert chain is not None
        prompt = context[0].tolist()
        key = tuple(prompt)
        criteria = stop_sequences_criteria(self.tokenizer, stop, len(prompt), 1)
        cache = DynamicCache(config=self.model.config)
        sequence = list(prompt)
        limit = max_length - len(prompt)
        generated: list[int] = []

        def emit(token: int) -> bool:
            """Append ``token``; True when generation is over."""
            generated.append(token)
            sequence.append(token)
            if token in self._eos or len(generated) >= limit:
                return True
            return bool(criteria(torch.tensor([sequence]), None).all())

        drafts = Drafts(prompt, self._drafts.get(key, []), chain, generated)
        done = limit <= 0 or emit(self._prefill(context, prompt, chain, cache))
        pause, misses = 0, 0  # guessing backs off after guesses that fail at once
        while not done:
            guess = [] if pause else drafts.propose(sequence, min(_DRAFT, limit - len(generated)))
            pause = max(0, pause - 1)
            fed = [generated[-1], *guess]
            logits = self._forward(torch.tensor([fed], device=context.device), cache)[0]
            kept = 1  # tokens of `fed` whose cache entries stay valid
            for i, pick in enumerate(logits.argmax(dim=-1).tolist()):
                done = emit(pick)
                if done or i >= len(guess) or pick != guess[i]:
                    break
                kept += 1
            self.tokens_from_drafts += kept - 1
            if not done and kept < len(fed):
                for layer in cache.layers:
                    layer.crop(kept - len(fed))
            if guess:
                # A pass over several tokens costs about two one-token steps on a CPU
                # (weights are read once either way): stop guessing for a while when
                # guesses keep failing at their first token.
                misses = misses + 1 if kept == 1 else 0
                pause = (1 << min(misses, 4)) - 1
            drafts.index_own()
        self.tokens_generated += len(generated)
        self._drafts.setdefault(key, []).append((chain, list(generated)))
        return torch.tensor([sequence], device=context.device)

    def _forward(self, input_ids: torch.Tensor, cache: Any, keep: int = 0) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=True, logits_to_keep=keep,
                          **{self._cache_arg: cache}).logits

    def _prefill(self, context: torch.Tensor, prompt: list[int], chain: Chain,
                 cache: Any) -> int:
        """Run the prompt into ``cache`` the cheapest way known; the first token."""
        store = self._stores.setdefault(tuple(prompt), PrefixStore(self.cache_bytes))
        stored = store.run(chain)
        shared, layers = (self.prompt_cache.lookup(chain, prompt) if self.prompt_cache
                          else (0, None))
        shared = min(shared, len(prompt) - 1)  # the last token must run: its logits
        # Cost in layer-tokens: the rest of the prompt through every layer, or every
        # token through the layers after the longest stored chain prefix.
        if layers is not None and len(chain) * (len(prompt) - shared) < (
                (len(chain) - len(stored)) * len(prompt)):
            logits = self._prefill_from_prompt_cache(context, layers, shared, cache)
        else:
            logits = self._prefill_layers(context, chain, store, stored, cache)
        if self.prompt_cache is not None:
            self.prompt_cache.put(chain, prompt, [copy.copy(layer) for layer in cache.layers])
        return int(logits[0, -1].argmax())

    def _prefill_from_prompt_cache(self, context: torch.Tensor, layers: list, shared: int,
                                   cache: Any) -> torch.Tensor:
        """Another prompt's cache under this chain, cut to the tokens both prompts share
        (a few-shot prompt's examples); only the rest of this prompt runs."""
        for position, layer in enumerate(layers):
            mine = copy.copy(layer)
            mine.crop(shared - mine.get_seq_length())
            cache.layers[position] = mine
        self.prompt_tokens_from_cache += shared
        self.prompt_tokens_total += context.shape[1]
        return self._forward(context[:, shared:], cache, keep=1)

    def _prefill_layers(self, context: torch.Tensor, chain: Chain, store: PrefixStore,
                        stored: list, cache: Any) -> torch.Tensor:
        """The prompt through the chain, replaying its longest stored prefix."""
        positions = chain_positions(self.model)
        for position, (hidden, _keys, _values, layer) in zip(positions, stored, strict=False):
            position.replay = hidden
            position.replay_cache = layer

        def keep(position: int, output: Any, layer_cache: Any) -> None:
            layer = copy.copy(layer_cache.layers[position])
            store.put(chain[: position + 1], (output, layer.keys, layer.values, layer))

        for position in positions[len(stored):]:
            position.on_output = keep
        self.prompt_layers_run += len(chain) - len(stored)
        self.prompt_layers_total += len(chain)
        self.prompt_tokens_total += context.shape[1]
        try:
            return self._forward(context, cache, keep=1)
        finally:
            for position in positions:
                position.replay = position.replay_cache = position.on_output = None


# Guessed tokens per verification pass; tokens matched to find where to guess from.
_DRAFT = 16
_NGRAM = 3


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
        """(tokens shared with the stored prompt, its cache layers), or (0, None)."""
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
        size = sum(t.numel() * t.element_size() for layer in layers
                   for t in (getattr(layer, "keys", None), getattr(layer, "values", None))
                   if isinstance(t, torch.Tensor))
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
