"""Attention of the batched decoder's layer calls (``batch_generate``): each segment of the
packed sequence against its own row's KV slots, registered in transformers' attention
registry and selected for the duration of a batched forward.

- exact numerics: the model's own attention function, one segment at a time, with the
  mask the row would get decoding alone, so what a row sees never depends on the others.
- fast numerics (``numerics="fast"``): still one call per segment, since padding rows to
  one batched call costs more than it saves on a CPU (measured: 64 decoding rows over
  about 1000 cached tokens, 93 ms copying every row's keys and values into a padded batch
  and attending once, against 39 ms attending per row); but a segment of several queries
  (a token and its drafts) takes an additive mask, and under sdpa with grouped-query
  attention each key/value head's query heads are folded into one call instead of the
  cache being repeated per query head (``repeat_kv``): about a quarter of the time for a
  five-query segment. Both round differently from the model's own path in the last bits.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from typing import Any

import torch

ATTENTION = "cola_segments"  # our attention function's name in transformers' registry
# Keyword arguments of a layer's attention call that do not change the arithmetic of
# plain scaled dot-product attention with the masks built here (a sliding window is
# never reached: the batched decoder is used only below the window).
_FOLDABLE = {"dropout", "scaling", "sliding_window", "position_ids", "use_cache",
             "cache_position", "output_attentions", "output_router_logits"}


@dataclass
class Segment:
    """Where a row's tokens sit in one layer call, and which chain position runs; ``row``
    is a ``batch_generate.RowState``."""

    row: Any
    position: int
    offset: int
    length: int


@dataclass
class LayerCall:
    """The layer call in progress: read by the cache view and the attention function."""

    segments: list[Segment] = field(default_factory=list)
    implementation: str = "sdpa"
    fast: bool = False  # numerics="fast" (module docstring)
    # masks built once a forward (``cached_mask``): every layer call of a forward sees a
    # row's segment with the same length against the same cache length
    masks: dict[tuple, Any] = field(default_factory=dict)


CURRENT = LayerCall()


class RowsCache:
    """What a layer is handed as its KV cache: writes each segment's keys and values into
    its own row's slot for its chain position and hands them back unchanged (attention
    reads each row's slots itself)."""

    def update(self, keys: torch.Tensor, values: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        for seg in CURRENT.segments:
            row = seg.row
            slot_k, slot_v = row.slots(seg.position, keys, row.capacity)
            end = row.length + seg.length
            slot_k[:, :, row.length:end] = keys[:, :, seg.offset:seg.offset + seg.length]
            slot_v[:, :, row.length:end] = values[:, :, seg.offset:seg.offset + seg.length]
        return keys, values

    def get_seq_length(self, *args: Any, **kwargs: Any) -> int:  # pragma: no cover
        return 0


def segments_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                       value: torch.Tensor, attention_mask: Any, **kwargs: Any) -> tuple:
    """Each segment's queries against its own row's keys and values (module docstring)."""
    implementation, fast = CURRENT.implementation, CURRENT.fast
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    attend = (eager if implementation == "eager"
              else ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager))
    fold = (fast and implementation == "sdpa" and query.shape[1] != key.shape[1]
            and all(v is None for k, v in kwargs.items() if k not in _FOLDABLE)
            and not kwargs.get("dropout"))
    out = query.new_zeros(query.shape[0], query.shape[2], query.shape[1], value.shape[-1])
    for seg in CURRENT.segments:
        row = seg.row
        seen = row.length + seg.length
        slot_k, slot_v = row.slots(seg.position, key, row.capacity)
        keys, values = slot_k[:, :, :seen], slot_v[:, :, :seen]
        q = query[:, :, seg.offset:seg.offset + seg.length]
        mask = cached_mask(seg.length, seen, query, fast or implementation == "eager",
                           query.shape[1] // key.shape[1] if fold else 1)
        if fold and mask is not None:
            part = folded_attention(q, keys, values, mask, kwargs.get("scaling"))
        else:
            part, _ = attend(module, q, keys, values, mask, **kwargs)
        out[:, seg.offset:seg.offset + seg.length] = part
    return out, None


def cached_mask(queries: int, seen: int, like: torch.Tensor, additive: bool, groups: int
                ) -> Any:
    """``row_mask``, tiled ``groups`` times over the queries (``folded_attention``), kept in
    ``CURRENT.masks`` for the rest of the forward."""
    shape = (queries, seen, additive, groups, like.dtype, like.device)
    if shape not in CURRENT.masks:
        mask = row_mask(queries, seen, CURRENT.implementation, like, additive)
        CURRENT.masks[shape] = mask if mask is None or groups == 1 else mask.repeat(
            1, 1, groups, 1)
    return CURRENT.masks[shape]


def row_mask(queries: int, seen: int, implementation: str, like: torch.Tensor,
             additive: bool) -> Any:
    """The mask a lone row gets: none for one query (or a causal prompt under sdpa), else
    causal with the queries at the end (bool, or ``additive``: 0 and the dtype's minimum)."""
    if queries == 1 or (queries == seen and implementation == "sdpa"):
        return None
    index = torch.arange(seen, device=like.device)
    visible = index[None, :] <= index[-queries:, None]
    if not additive:
        return visible[None, None]
    mask = torch.zeros(visible.shape, dtype=like.dtype, device=like.device)
    mask.masked_fill_(~visible, torch.finfo(like.dtype).min)
    return mask[None, None]


def folded_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                     mask: torch.Tensor, scaling: float | None) -> torch.Tensor:
    """Grouped-query sdpa without repeating the cache: query (1, heads, n, d) viewed as
    (1, kv_heads, groups x n, d), the additive mask (1, 1, n, seen) tiled per group (or
    given tiled, (1, 1, groups x n, seen)); the output as the model's attention returns
    it, (1, n, heads, d)."""
    batch, heads, n, dim = query.shape
    groups = heads // keys.shape[1]
    folded = query.reshape(batch, keys.shape[1], groups * n, dim)
    if mask.shape[2] == n and groups > 1:
        mask = mask.repeat(1, 1, groups, 1)
    out = torch.nn.functional.scaled_dot_product_attention(
        folded, keys, values, attn_mask=mask, scale=scaling)
    return out.reshape(batch, heads, n, values.shape[-1]).transpose(1, 2)


@functools.cache
def register_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, segments_attention)
