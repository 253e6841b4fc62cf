"""Fast greedy generation of one sample's prompt under many chains (generation tasks'
hot path, e.g. gsm8k).

lm-eval's path runs ``model.generate`` from scratch for every chain the search tries.
Two savings, both exact for greedy decoding:

1. Prompt prefix reuse: the hidden states and the KV-cache slot that each chain
   position produced over the prompt are kept, keyed by the chain prefix that made
   them. A new chain replays its longest stored prefix (hidden state and cache slots
   restored) and runs only the layers after it over the prompt.
2. A neighbour's answer as draft: chains one search step apart usually generate the
   same tokens. The continuation of the stored chain that shares the longest prefix is
   checked in one forward pass (as in speculative decoding): its tokens are kept up to
   the first one this chain would not pick greedily, which is replaced by this chain's
   own choice, and plain one-token-at-a-time decoding goes on from there.

Tokens are chosen by argmax of the logits, and generation stops on lm-eval's own stop
criteria, on an end-of-sequence token or at ``max_length``, as ``model.generate`` with
``do_sample=False`` does. When anything would make ``generate`` do more than that (a
sampling or beam setting, a logits processor in the model's generation config, padding,
a sliding window the sequence can outgrow) the caller uses ``generate`` instead.
"""

from __future__ import annotations

import copy
import inspect
import logging
from typing import Any

import torch

from lm_eval_cola.chain import Chain
from lm_eval_cola.engine import chain_positions
from lm_eval_cola.fast import DEFAULT_CACHE_BYTES, PrefixStore, _sliding_window

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
_ALLOWED_KWARGS = {"attention_mask", "do_sample"}


def _cache_argument(model: torch.nn.Module) -> str:
    """The name the model's forward takes its KV cache by (``cache`` in recent
    transformers, ``past_key_values`` before)."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


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
                 cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.model = model
        self.tokenizer = tokenizer
        self.cache_bytes = cache_bytes
        self.chain: Chain | None = None
        self._stores: dict[tuple[int, ...], PrefixStore] = {}
        self._drafts: dict[tuple[int, ...], list[tuple[Chain, list[int]]]] = {}
        self._eos = eos_ids(model)
        self._cache_arg = _cache_argument(model)
        # Counters, for the benchmark and the tests.
        self.prompt_layers_run = 0
        self.prompt_layers_total = 0
        self.tokens_generated = 0
        self.tokens_from_drafts = 0

    # ------------------------------------------------------------------ when it applies

    def usable(self, context: torch.Tensor, max_length: int, kwargs: dict[str, Any]) -> bool:
        """Whether :meth:`generate` gives exactly what ``model.generate`` would."""
        if self.chain is None or context.shape[0] != 1:
            return False
        if set(kwargs) - _ALLOWED_KWARGS or kwargs.get("do_sample", False):
            return False
        mask = kwargs.get("attention_mask")
        if mask is not None and not bool(mask.all()):
            return False
        config = getattr(self.model, "generation_config", None)
        for name, neutral in _NEUTRAL_GENERATION.items():
            if getattr(config, name, None) not in neutral:
                return False
        window = _sliding_window(self.model.config)
        # Past the window a sliding cache drops old entries and cannot be rolled back.
        return window is None or max_length < window

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def generate(self, context: torch.Tensor, max_length: int, stop: list[str]) -> torch.Tensor:
        """``context`` (1, n) followed by the greedy continuation, as ``generate`` returns."""
        from lm_eval.models.utils_hf import stop_sequences_criteria
        from transformers import DynamicCache

        chain = self.chain
        assert chain is not None
        prompt = context[0].tolist()
        key = tuple(prompt)
        criteria = stop_sequences_criteria(self.tokenizer, stop, len(prompt), 1)
        cache = DynamicCache(config=self.model.config)
        first = self._prefill(context, key, chain, cache)
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

        done = limit <= 0 or emit(first)
        if not done:
            done = self._follow_draft(key, chain, cache, generated, emit)
        while not done:
            logits = self._forward(torch.tensor([[generated[-1]]], device=context.device), cache)
            done = emit(int(logits[0, -1].argmax()))
        self.tokens_generated += len(generated)
        self._drafts.setdefault(key, []).append((chain, list(generated)))
        return torch.tensor([sequence], device=context.device)

    def _forward(self, input_ids: torch.Tensor, cache: Any, keep: int = 0) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=True, logits_to_keep=keep,
                          **{self._cache_arg: cache}).logits

    def _prefill(self, context: torch.Tensor, key: tuple[int, ...], chain: Chain,
                 cache: Any) -> int:
        """Run the prompt into ``cache``, replaying stored chain prefixes; the first token."""
        store = self._stores.setdefault(key, PrefixStore(self.cache_bytes))
        positions = chain_positions(self.model)
        stored = []
        for k in range(1, len(chain) + 1):
            value = store.longest(chain[:k])
            if value[0] != k:
                break
            stored.append(value[1])
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
        try:
            logits = self._forward(context, cache, keep=1)
        finally:
            for position in positions:
                position.replay = position.replay_cache = position.on_output = None
        return int(logits[0, -1].argmax())

    def _follow_draft(self, key: tuple[int, ...], chain: Chain, cache: Any,
                      generated: list[int], emit: Any) -> bool:
        """Check a neighbour chain's continuation in one pass and keep what this chain
        would have generated itself. Returns True when generation is over."""
        draft = self._draft(key, chain)
        if len(draft) < 2 or draft[0] != generated[0]:
            return False
        fed = draft[: max(1, len(draft) - 1)]  # the draft's last token needs no check
        logits = self._forward(torch.tensor([fed], device=self.model.device), cache)[0]
        picks = logits.argmax(dim=-1).tolist()
        kept = 1  # tokens of `fed` whose cache entries stay valid
        for i, pick in enumerate(picks):
            if emit(pick):
                return True
            if i + 1 >= len(fed) or pick != fed[i + 1]:
                break
            kept += 1
            self.tokens_from_drafts += 1
        for layer in cache.layers:
            layer.crop(-(len(fed) - kept))
        return False

    def _draft(self, key: tuple[int, ...], chain: Chain) -> list[int]:
        """The continuation of the stored chain sharing the longest prefix with ``chain``
        (the latest among equals)."""
        best, best_shared = [], -1
        for other, tokens in self._drafts.get(key, []):
            shared = 0
            while shared < min(len(other), len(chain)) and other[shared] == chain[shared]:
                shared += 1
            if shared >= best_shared:
                best, best_shared = tokens, shared
        return best
