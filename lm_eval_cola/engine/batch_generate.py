"""Greedy decoding of many (sample, chain) rows at once: one batched forward per step.

``BatchDecoder`` holds the rows in flight; ``step()`` runs one forward over all of them
and returns the rows that finished. Rows join (``add``) and leave at any step
(continuous batching), up to a bound on the bytes of their KV caches.

How one step runs (the model's own forward, as ``fast.score_many`` runs it):

- Every row feeds a *segment* of tokens: a prompt (or the part of it no stored prefix
  covers) when it joins, later its last token and a few guessed ones (drafts, see
  ``fast_generate.Drafts``). The segments are laid end to end in one sequence, each with
  its own position ids.
- Each row runs its own chain. The layers run in the order ``fast.schedule_layers`` gives: the
  lowest layer any row needs next, over every row that needs it, so rows at the same
  chain position share one layer call and rows at other positions are grouped by layer.
- Each row keeps its own KV cache: one slot per chain position, preallocated for its
  prompt plus ``max_length``. Attention runs per segment against its own row's slots
  (``row_attention``: the model's own attention function, handed one segment at a
  time), so what a row sees never depends on the others.
- Batch invariance: on a CPU a matrix product's rounding depends on how many rows it has
  (MKL switches kernels). Each layer call takes a prompt segment alone, or decoding
  tokens in chunks of at most ``CHUNK_TOKENS``, padded to a multiple of ``PAD_MULTIPLE``:
  within that range every row's result is bitwise the same whatever shares the call
  (fp32; tests/test_batch_generate.py checks whole answers). MoE layers route a variable
  number of tokens to each expert, and bf16 kernels on a CPU round differently by batch:
  there answers are equal in practice, not by construction.
- ``numerics="fast"`` (every row of the forward asked for it; ``RowState.numerics``) lifts
  those caps: a step's rows share one layer call (up to ``FAST_CALL_TOKENS``, a memory
  bound), unpadded, the LM head runs in one call, and a segment of several queries
  attends with an additive mask, grouped-query heads folded (``row_attention``). A row's
  tokens then depend on what shares its batch in the last bits of its logits, so a
  near-tie may go the other way (tests/test_numerics_fast_generate.py measures how
  often).

Memory: a row's KV slots take ``len(chain) x 2 x kv_heads x head_dim x (max_length +
DRAFT) x bytes``; rows beyond ``kv_bytes`` in total wait until others finish.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lm_eval_cola.chains.syntax import Chain
from lm_eval_cola.engine.apply import architecture_of, chain_applied, chain_positions
from lm_eval_cola.engine.fast import (
    PAD_MULTIPLE,
    LayersDone,
    drive_steps,
    head_chunk_rows,
    layer_output,
    note_layer_output,
    schedule_layers,
    select_in,
)
from lm_eval_cola.engine.row_attention import (
    ATTENTION,
    CURRENT,
    RowsCache,
    Segment,
    register_attention,
)

logger = logging.getLogger(__name__)

# Decoding tokens per layer call on a CPU (fp32 MKL products of 16..56 rows round alike).
CHUNK_TOKENS = 48
# numerics="fast" (a row's ``numerics``): tokens per layer call at most, a bound on the
# call's activations only (a longer prompt runs alone).
FAST = "fast"
FAST_CALL_TOKENS = 4096
DEFAULT_KV_BYTES = 1 << 30
SUPPORTED_ATTENTION = ("sdpa", "eager")


@dataclass
class DecodeStats:
    """What the batched decoders did (for the benchmark): steps, rows per step, tokens,
    and the layer calls that ran them (real tokens against the padded ones computed)."""

    steps: int = 0
    rows: int = 0
    row_steps: int = 0  # rows in each step, summed: the mean batch is row_steps / steps
    max_rows: int = 0
    fed_tokens: int = 0
    tokens: int = 0
    tokens_from_drafts: int = 0
    layer_calls: int = 0  # layer calls over short segments (decoding; long prompts run alone)
    call_tokens: int = 0  # real tokens in them
    padded_tokens: int = 0  # tokens computed in them, padding included
    token_layers: int = 0  # tokens x layers computed in every layer call, padding included
    alone_token_layers: int = 0  # what ``generate`` alone runs for the same rows

    def reset(self) -> None:
        for item in dataclasses.fields(self):
            setattr(self, item.name, 0)

    def copy(self) -> DecodeStats:
        return dataclasses.replace(self)


DECODE_STATS = DecodeStats()


class RowState:
    """A decoding row's KV slots (one per chain position) and where it stands; subclassed
    by the generator, which adds the tokens and decides what each step feeds."""

    def __init__(self, chain: Chain, capacity: int, numerics: str = "exact"):
        self.chain = chain
        self.capacity = capacity
        self.numerics = numerics  # "exact" or "fast" (module docstring)
        self.length = 0  # tokens in the cache
        self._slots: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        # What the next step runs: tokens, their first position id, the chain position
        # to start at with ``hidden`` (a stored prefix's output) as its input.
        self.feed: list[int] = []
        self.start = 0
        self.hidden: torch.Tensor | None = None
        self.final: torch.Tensor | None = None  # the last chain position's output

    def slots(self, position: int, like: torch.Tensor, capacity: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
        slot = self._slots.get(position)
        if slot is None:
            shape = (1, like.shape[1], capacity, like.shape[3])
            slot = (like.new_empty(shape), like.new_empty(shape))  # read up to `length` only
            self._slots[position] = slot
        return slot

    def put_slot(self, position: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Fill ``position``'s slot with stored keys and values (a prompt's, from a store)."""
        slot_k, slot_v = self.slots(position, keys, self.capacity)
        slot_k[:, :, :keys.shape[2]] = keys
        slot_v[:, :, :values.shape[2]] = values

    def slot(self, position: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``length`` cached keys and values of ``position`` (copies)."""
        slot_k, slot_v = self._slots[position]
        return slot_k[:, :, :length].clone(), slot_v[:, :, :length].clone()

    def on_output(self, position: int, output: torch.Tensor) -> None:
        """A chain position's output over this row's segment (prompt rows keep them)."""

    def bytes_needed(self, model: torch.nn.Module) -> int:
        config = model.config
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        size = next(model.parameters()).element_size()
        return len(self.chain) * 2 * heads * dim * self.capacity * size


def attention_supported(model: torch.nn.Module) -> bool:
    return getattr(model.config, "_attn_implementation", None) in SUPPORTED_ATTENTION


@torch.no_grad()
def forward_rows(model: torch.nn.Module, rows: Sequence[RowState],
                 chunk_tokens: int = CHUNK_TOKENS) -> list[torch.Tensor]:
    """Run every row's ``feed`` through its chain (from ``start``) in one batched forward,
    writing their KV slots; each row's final hidden states, (1, len(feed), H). Rows all
    with ``numerics`` "fast" run without the batch-invariance caps (module docstring)."""
    register_attention()
    working = [row for row in rows if row.start < len(row.chain)]
    for row in rows:
        row.final = row.hidden if row.start == len(row.chain) else None
    if working:
        fast = fast_numerics(working)
        _Layers(model, working, FAST_CALL_TOKENS if fast else chunk_tokens, fast).run()
    return [row.final for row in rows]  # type: ignore[misc]


def fast_numerics(rows: Sequence[RowState]) -> bool:
    """Whether ``rows`` may run with fast numerics: all of them asked for it (a row that
    asked for exact numerics keeps its batch invariance whatever shares its batch)."""
    return bool(rows) and all(row.numerics == FAST for row in rows)


class _Layers:
    """One batched forward over ``rows``' feeds, laid end to end in one sequence (each
    with its own position ids), run layer by layer in ``schedule_layers``' order, each
    step's rows in layer calls of at most ``cap`` tokens (a longer feed alone)."""

    def __init__(self, model: torch.nn.Module, rows: list[RowState], cap: int, fast: bool):
        self.model, self.rows, self.cap, self.fast = model, rows, cap, fast
        self.offsets: list[int] = []
        tokens: list[int] = []
        position_ids: list[int] = []
        for row in rows:
            self.offsets.append(len(tokens))
            tokens += row.feed
            position_ids += range(row.length, row.length + len(row.feed))
        self.dummy = len(tokens)  # exact: PAD_MULTIPLE padding tokens, never attended to
        pad = 0 if fast else PAD_MULTIPLE
        tokens += [tokens[-1]] * pad
        position_ids += [0] * pad
        self.total = len(tokens)
        device = next(model.parameters()).device
        self.inputs = {"input_ids": torch.tensor([tokens], device=device),
                       "position_ids": torch.tensor([position_ids], device=device),
                       "use_cache": False}
        self.cache_keyword = _cache_keyword(model)

    def run(self) -> None:
        layers, steps = schedule_layers(self.rows)  # type: ignore[arg-type]
        config = self.model.config
        saved = config._attn_implementation
        config._attn_implementation = ATTENTION
        CURRENT.implementation, CURRENT.fast = saved, self.fast
        CURRENT.masks = {}
        try:
            drive_steps(self.model, layers, steps, self.around, self.inputs)
        finally:
            config._attn_implementation = saved
            CURRENT.masks = {}

    def calls(self, step: Any) -> list[list[int]]:
        """The step's rows (indices into ``step.rows``) split into layer calls."""
        out: list[list[int]] = []
        small: list[int] = []
        size = 0
        for k, i in enumerate(step.rows):
            n = len(self.rows[i].feed)
            if n > self.cap:
                out.append([k])
                continue
            if small and size + n > self.cap:
                out.append(small)
                small, size = [], 0
            small.append(k)
            size += n
        return out + ([small] if small else [])

    def around(self, step: Any, last: bool, run: Any, args: tuple, kwargs: dict) -> Any:
        """Chain position ``step``: its rows' layer calls, their outputs merged back into
        the sequence (the last position's are only kept: nothing runs after it)."""
        hidden = args[0]
        merged = hidden
        output: Any = None
        for group in self.calls(step):
            idx, real, output = self._call(step, group, hidden, run, args, kwargs)
            if not last:
                out = output[0] if isinstance(output, tuple) else output
                # With a device map the layer's output may sit on another device.
                merged = merged.to(out.device).index_copy(1, idx[:real].to(out.device),
                                                          out[:, :real])
        if last:
            raise LayersDone
        return (merged, *output[1:]) if isinstance(output, tuple) else merged

    def _call(self, step: Any, group: list[int], hidden: torch.Tensor, run: Any,
              args: tuple, kwargs: dict) -> tuple[torch.Tensor, int, Any]:
        """One layer call over ``group``'s segments: (token index, real tokens, output)."""
        segments, index = self._segments(step, group)
        real = len(index)
        if not self.fast:
            index += range(self.dummy, self.dummy + (-real % PAD_MULTIPLE))
        DECODE_STATS.token_layers += len(index)
        if max(seg.length for seg in segments) <= CHUNK_TOKENS:  # decoding, no prompt
            DECODE_STATS.layer_calls += 1
            DECODE_STATS.call_tokens += real
            DECODE_STATS.padded_tokens += len(index)
        idx = torch.tensor(index, device=hidden.device)
        x = hidden.index_select(1, idx)
        for seg in segments:
            if seg.position == seg.row.start and seg.row.hidden is not None:
                x[:, seg.offset:seg.offset + seg.length] = seg.row.hidden.to(x.device)
        cut = select_in(kwargs, idx, 1, self.total)
        cut[self.cache_keyword(cut)] = RowsCache()
        CURRENT.segments = segments
        try:
            output = run((x, *args[1:]), cut)
        finally:
            CURRENT.segments = []
        note_layer_output(self.model, output)
        out = output[0] if isinstance(output, tuple) else output
        for seg in segments:
            part = out[:, seg.offset:seg.offset + seg.length]
            seg.row.on_output(seg.position, part)
            if seg.position + 1 == len(seg.row.chain):
                seg.row.final = part.clone()
        return idx, real, output

    def _segments(self, step: Any, group: list[int]) -> tuple[list[Segment], list[int]]:
        """``group``'s segments in the call, and their tokens' indices in the sequence."""
        index: list[int] = []
        segments = []
        for k in group:
            i = step.rows[k]
            row = self.rows[i]
            segments.append(Segment(row, step.positions[k], len(index), len(row.feed)))
            index += range(self.offsets[i], self.offsets[i] + len(row.feed))
        return segments, index


def _cache_keyword(model: torch.nn.Module) -> Any:
    """Which keyword a layer call hands the KV cache in: the first of the architecture's
    names the model passes, else its first name."""
    names = architecture_of(model).layer_cache_keywords

    def keyword(kwargs: dict) -> str:
        return next((name for name in names if name in kwargs), names[0])
    return keyword


@torch.no_grad()
def head_argmax(model: torch.nn.Module, hidden: torch.Tensor,
                chunk_tokens: int = CHUNK_TOKENS, fast: bool = False) -> list[int]:
    """Greedy picks for hidden states ``(K, H)`` (final norm and LM head by the model's own
    forward on a one-position chain, as ``fast._run_head``), in calls of at most
    ``chunk_tokens`` rows padded to a multiple of ``PAD_MULTIPLE``; ``fast``: in calls of
    at most ``fast.HEAD_LOGITS`` logits, unpadded."""
    picks: list[int] = []
    if fast:
        chunk_tokens = head_chunk_rows(int(getattr(model.config, "vocab_size", 0) or 1))
    for begin in range(0, hidden.shape[0], chunk_tokens):
        rows = hidden[begin:begin + chunk_tokens]
        real = rows.shape[0]
        if not fast:
            rows = torch.cat([rows, rows.new_zeros(-real % PAD_MULTIPLE, rows.shape[1])])
        count = rows.shape[0]
        device = rows.device
        with chain_applied(model, (0,)):
            chain_positions(model)[0].replay = layer_output(model, rows[None])
            logits = model(input_ids=torch.zeros(1, count, dtype=torch.long, device=device),
                           position_ids=torch.zeros(1, count, dtype=torch.long, device=device),
                           use_cache=False).logits[0]
        picks += logits[:real].argmax(dim=-1).tolist()
    return picks


class Admission:
    """Rows waiting for KV room, first come first served (at least one row always runs)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.waiting: deque[tuple[Any, int]] = deque()

    def offer(self, row: Any, size: int) -> None:
        self.waiting.append((row, size))

    def admit(self, running: int) -> list[Any]:
        admitted = []
        while self.waiting:
            row, size = self.waiting[0]
            if running + len(admitted) > 0 and self.bytes + size > self.max_bytes:
                break
            self.waiting.popleft()
            self.bytes += size
            admitted.append(row)
        return admitted

    def release(self, size: int) -> None:
        self.bytes -= size
