"""Fast loglikelihood scoring of one sample under many chains (the search's hot path).

Three savings over lm-eval's own path (a full forward per request, full logits):

1. Shared context, packed: a multiple-choice sample's requests share their context.
   We lay the shared prefix out once, then each request's own remainder as a segment
   that attends to the prefix and to itself only (a 4D mask; position ids restart after
   the prefix), so the context runs once instead of once per choice.
2. Prefix reuse: the hidden states after every chain prefix are kept (keyed by the layer
   sequence, evicted least-recently-used past a byte cap). A new chain runs only the
   layers after its longest stored prefix; searches try chains one action apart, so
   most of a chain is usually stored already.
3. LM-head logits only at the positions that score a continuation token.

Results equal lm-eval's path up to float rounding (tests/test_fast.py checks this on
tiny models, tools/benchmarks check same chains and decisions on the real model). When
a layer has a sliding window shorter than the packed sequence the custom mask would be
wrong, so such samples use lm-eval's path.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lm_eval_cola.chain import Chain
from lm_eval_cola.engine import chain_applied, chain_positions

logger = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 1 << 30


@dataclass
class PackedSample:
    """One sample's requests as one packed sequence."""

    input_ids: torch.Tensor  # (1, T)
    position_ids: torch.Tensor  # (1, T)
    segments: torch.Tensor  # (T,) 0 for the shared prefix, k for request k's remainder
    scored: torch.Tensor  # (K,) packed positions whose logits are needed, ascending
    picks: list[tuple[torch.Tensor, torch.Tensor]]  # per request: rows of `scored`, targets

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])


def common_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """How many leading items all ``sequences`` share."""
    first = sequences[0]
    length = min(len(s) for s in sequences)
    for i in range(length):
        if any(s[i] != first[i] for s in sequences):
            return i
    return length


def pack(pairs: Sequence[tuple[list[int], list[int]]], max_length: int) -> PackedSample:
    """Pack (context tokens, continuation tokens) pairs, truncated as lm-eval does."""
    inputs, conts = [], []
    for context, continuation in pairs:
        whole = (context + continuation)[-(max_length + 1):]
        inputs.append(whole[:-1])
        conts.append(continuation)
    shared = common_prefix(inputs)
    tokens = list(inputs[0][:shared])
    positions = list(range(shared))
    segments = [0] * shared
    request_positions: list[list[int]] = []
    targets: list[list[int]] = []
    for inp, cont in zip(inputs, conts, strict=True):
        start = len(tokens)
        tokens += inp[shared:]
        positions += range(shared, len(inp))
        segments += [len(request_positions) + 1] * (len(inp) - shared)

        def packed(q: int, start: int = start) -> int:
            return q if q < shared else start + q - shared

        first = len(inp) - len(cont)
        request_positions.append([packed(q) for q in range(first, len(inp))])
        targets.append(list(cont))
    scored = sorted({p for ps in request_positions for p in ps})
    row = {p: i for i, p in enumerate(scored)}
    picks = [
        (torch.tensor([row[p] for p in ps]), torch.tensor(t))
        for ps, t in zip(request_positions, targets, strict=True)
    ]
    return PackedSample(
        input_ids=torch.tensor([tokens]),
        position_ids=torch.tensor([positions]),
        segments=torch.tensor(segments),
        scored=torch.tensor(scored),
        picks=picks,
    )


def packed_mask(sample: PackedSample, dtype: torch.dtype) -> torch.Tensor:
    """Additive 4D mask: causal, and a segment sees the shared prefix and itself only."""
    segment = sample.segments
    index = torch.arange(segment.shape[0])
    causal = index[None, :] <= index[:, None]
    visible = causal & ((segment[None, :] == 0) | (segment[None, :] == segment[:, None]))
    mask = torch.zeros(visible.shape, dtype=dtype)
    mask.masked_fill_(~visible, torch.finfo(dtype).min)
    return mask[None, None]


class PrefixStore:
    """Hidden states after chain prefixes, least-recently-used out past `max_bytes`."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[Chain, Any] = OrderedDict()

    @staticmethod
    def _size(value: Any) -> int:
        tensors = value if isinstance(value, tuple | list) else (value,)
        return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))

    def longest(self, chain: Chain) -> tuple[int, Any]:
        for k in range(len(chain), 0, -1):
            value = self._items.get(chain[:k])
            if value is not None:
                self._items.move_to_end(chain[:k])
                return k, value
        return 0, None

    def run(self, chain: Chain) -> list[Any]:
        """The stored values of ``chain[:1]``, ``chain[:2]``, ... up to the first prefix
        not stored (what replaying needs: every position's own entry)."""
        values = []
        for k in range(1, len(chain) + 1):
            value = self._items.get(chain[:k])
            if value is None:
                break
            self._items.move_to_end(chain[:k])
            values.append(value)
        return values

    def put(self, prefix: Chain, value: Any) -> None:
        if prefix in self._items:
            return
        size = self._size(value)
        if size > self.max_bytes:
            return
        self._items[prefix] = value
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self.bytes -= self._size(old)


def _sliding_window(config: Any) -> int | None:
    types = getattr(config, "layer_types", None)
    window = getattr(config, "sliding_window", None)
    if types is not None and not any("sliding" in str(t) or "chunk" in str(t) for t in types):
        return None
    if getattr(config, "use_sliding_window", True) is False:
        return None
    return window


class SampleScorer:
    """Scores one sample's loglikelihood requests under any chain, reusing work."""

    def __init__(self, model: torch.nn.Module, sample: PackedSample, device: torch.device,
                 cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.model = model
        self.sample = sample
        self.device = device
        self.store = PrefixStore(cache_bytes)
        self.layers_run = 0
        dtype = next(model.parameters()).dtype
        self._inputs = {
            "input_ids": sample.input_ids.to(device),
            "position_ids": sample.position_ids.to(device),
            "attention_mask": packed_mask(sample, dtype).to(device),
            "logits_to_keep": sample.scored.to(device),
            "use_cache": False,
        }

    @classmethod
    def usable(cls, model: torch.nn.Module, sample: PackedSample) -> bool:
        window = _sliding_window(model.config)
        return window is None or sample.length <= window

    @torch.no_grad()
    def __call__(self, chain: Chain) -> list[tuple[float, bool]]:
        with chain_applied(self.model, chain):
            positions = chain_positions(self.model)
            reused, hidden = self.store.longest(chain)
            for position in positions[:reused]:
                position.replay = hidden

            def keep(position: int, output: Any, _cache: Any = None) -> None:
                self.store.put(chain[: position + 1], output)

            for position in positions[reused:]:
                position.on_output = keep
            self.layers_run += len(chain) - reused
            logits = self.model(**self._inputs).logits[0]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        greedy = logits.argmax(dim=-1)
        results = []
        for rows, targets in self.sample.picks:
            targets = targets.to(logprobs.device)
            rows = rows.to(logprobs.device)
            ll = logprobs[rows, targets].sum().item()
            results.append((float(ll), bool((greedy[rows] == targets).all())))
        return results
