"""Fast numerics (``numerics="fast"``) for the batched log-likelihood forward
(``fast.score_many``): every row's real tokens laid end to end in one sequence.

Exact numerics pads each sample to a multiple of 16 tokens and batches only samples of one
padded length, so a layer call's rows never depend on one another's length (bitwise batch
invariance on a CPU). Here no token is padding and samples of any length share one forward
and its layer calls: a layer call takes the tokens of the rows that run it (``(1, tokens,
hidden)``; the rotary tables and position ids follow, cut by ``select_in``), and attention
runs per sample (``rows_attention``, registered in transformers' attention registry for the
forward): the queries, keys and values of that sample's rows in the call gathered into a
batch of its own with the sample's packed mask (``fast.packed_mask``), through the model's
own attention function (sdpa or eager). The matrix products then see other row counts than
in exact numerics and round differently in the last bits; the decisions this changes are
measured (``tests/test_numerics_fast.py``, ``benchmarks/search_speed.py``).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from lm_eval_cola.engine.layer_steps import (
    LayersDone,
    drive_steps,
    note_layer_output,
    select_in,
)
from lm_eval_cola.engine.score_plan import (
    SCORE_STATS,
    Job,
    Step,
    keep_outputs,
    schedule_layers,
)

ATTENTION = "cola_rows"  # our attention function's name in transformers' registry


@dataclass
class Group:
    """One sample's rows in a layer call: ``rows`` rows of ``length`` tokens each, at
    ``index`` in the call's tokens (None: one row, starting at ``start``)."""

    rows: int
    length: int
    start: int
    index: torch.Tensor | None
    mask: torch.Tensor  # (1, 1, length, length), additive


@dataclass
class Call:
    """The layer call in progress, read by ``rows_attention``."""

    groups: list[Group] = field(default_factory=list)
    implementation: str = "sdpa"


CURRENT = Call()


def rows_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                   value: torch.Tensor, attention_mask: Any, **kwargs: Any) -> tuple:
    """Each sample's rows of the call attend among their own tokens only (module
    docstring); ``attention_mask`` (a placeholder) is not read."""
    implementation = CURRENT.implementation
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    attend = (eager if implementation == "eager"
              else ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager))
    heads, tokens = query.shape[1], query.shape[2]
    out = query.new_empty(1, tokens, heads, value.shape[-1])
    for group in CURRENT.groups:
        q, k, v = (_rows_of(t, group) for t in (query, key, value))
        part, _ = attend(module, q, k, v, group.mask, **kwargs)  # (rows, length, heads, d)
        if group.index is None:
            out[0, group.start:group.start + group.length] = part[0]
        else:
            out[0].index_copy_(0, group.index, part.reshape(-1, heads, part.shape[-1]))
    return out, None


def _rows_of(states: torch.Tensor, group: Group) -> torch.Tensor:
    """(1, heads, tokens, d) -> the group's rows as a batch, (rows, heads, length, d)."""
    if group.index is None:
        return states[:, :, group.start:group.start + group.length]
    picked = states[0].index_select(1, group.index)
    return picked.view(states.shape[1], group.rows, group.length, -1).transpose(0, 1)


@functools.cache
def register_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, rows_attention)


@contextmanager
def attention_by_rows(model: torch.nn.Module) -> Iterator[None]:
    """The model's attention is ``rows_attention`` while the forward runs."""
    register_attention()
    config = model.config
    saved = config._attn_implementation
    config._attn_implementation = ATTENTION
    CURRENT.implementation = saved
    try:
        yield
    finally:
        config._attn_implementation = saved
        CURRENT.groups = []


class FlatLayout:
    """Where each job's row sits in the forward's sequence, and per step the tokens and
    attention groups of the rows it runs."""

    def __init__(self, jobs: Sequence[Job]):
        self.jobs = jobs
        self.lengths = [job.scorer.length for job in jobs]
        self.offsets = [0]
        for n in self.lengths:
            self.offsets.append(self.offsets[-1] + n)
        self.total = self.offsets[-1]
        self.device = jobs[0].scorer.input_ids.device
        self._calls: dict[tuple[int, ...], tuple[torch.Tensor | None, list[Group]]] = {}

    def inputs(self) -> dict[str, Any]:
        scorers = [job.scorer for job in self.jobs]
        dtype = scorers[0].mask.dtype
        return {
            "input_ids": torch.cat([s.input_ids for s in scorers], dim=1),
            "position_ids": torch.cat([s.position_ids for s in scorers], dim=1),
            # a 4D mask is taken as given (no T x T mask is built); rows_attention reads
            # each sample's own instead
            "attention_mask": torch.zeros(1, 1, 1, 1, dtype=dtype, device=self.device),
            "use_cache": False,
        }

    def prepare(self, steps: Sequence[Step]) -> None:
        """Every distinct row subset's token index and groups, with one host-to-device
        copy for all (on CUDA a tensor made from a list waits for the device)."""
        keys = list(dict.fromkeys(tuple(step.rows) for step in steps))
        parts: list[torch.Tensor] = []
        plans = []
        for key in keys:
            tokens = (None if len(key) == len(self.jobs) else
                      torch.cat([torch.arange(self.offsets[i], self.offsets[i + 1])
                                 for i in key]))
            groups = self._groups(key)
            plans.append((tokens, groups))
            parts += [t for t in (tokens, *(g[2] for g in groups)) if t is not None]
        pieces = iter(torch.cat(parts).to(self.device).split([p.shape[0] for p in parts])
                      if parts else ())
        for key, (tokens, groups) in zip(keys, plans, strict=True):
            index = next(pieces) if tokens is not None else None
            made = [Group(rows, length, start, next(pieces) if at is not None else None, mask)
                    for rows, length, at, start, mask in groups]
            self._calls[key] = (index, made)

    def _groups(self, key: tuple[int, ...]) -> list[tuple]:
        """(rows, length, token index or None, start, mask) per sample among ``key``'s
        rows, positions counted in the call's tokens."""
        by_scorer: dict[int, list[int]] = {}
        starts, at = [], 0
        for i in key:
            by_scorer.setdefault(id(self.jobs[i].scorer), []).append(len(starts))
            starts.append(at)
            at += self.lengths[i]
        out = []
        for members in by_scorer.values():
            scorer = self.jobs[key[members[0]]].scorer
            n = scorer.length
            index = (None if len(members) == 1 else
                     torch.cat([torch.arange(starts[m], starts[m] + n) for m in members]))
            out.append((len(members), n, index, starts[members[0]], scorer.mask))
        return out

    def call(self, step: Step) -> tuple[torch.Tensor | None, list[Group]]:
        return self._calls[tuple(step.rows)]


def run_flat_layers(model: torch.nn.Module, jobs: list[Job]) -> None:
    """Run every job's missing chain positions in one forward, rows laid end to end."""
    layers, steps = schedule_layers(jobs)
    layout = FlatLayout(jobs)
    layout.prepare(steps)

    def around(step: Step, last: bool, run: Any, args: tuple, kwargs: dict) -> Any:
        hidden = args[0]
        index, groups = layout.call(step)
        x = hidden if index is None else hidden.index_select(1, index.to(hidden.device))
        starts = _row_starts(layout, step)
        entering = [(k, i) for k, (i, p) in enumerate(zip(step.rows, step.positions,
                                                          strict=True))
                    if p == jobs[i].start and jobs[i].hidden is not None]
        if entering:
            x = x.clone()
            for k, i in entering:
                stored = jobs[i].hidden[0]
                x[0, starts[k]:starts[k] + stored.shape[0]] = stored.to(x.device)
        if index is not None:
            kwargs = select_in(kwargs, index, 1, layout.total)
        CURRENT.groups = groups
        output = run((x, *args[1:]), kwargs)
        SCORE_STATS.layer_calls += 1
        SCORE_STATS.row_calls += len(step.rows)
        SCORE_STATS.token_layers += x.shape[1]
        SCORE_STATS.real_token_layers += x.shape[1]
        note_layer_output(model, output)
        out = output[0] if isinstance(output, tuple) else output
        keep_outputs(jobs, step, (out[:, starts[k]:starts[k] + layout.lengths[i]].clone()
                                  for k, i in enumerate(step.rows)))
        if last:
            raise LayersDone
        merged = out
        if index is not None:  # with a device map the output may sit on another device
            merged = hidden.to(out.device).index_copy(1, index.to(out.device), out)
        return (merged, *output[1:]) if isinstance(output, tuple) else merged

    SCORE_STATS.forwards += 1
    with attention_by_rows(model):
        drive_steps(model, layers, steps, around, layout.inputs())


def _row_starts(layout: FlatLayout, step: Step) -> list[int]:
    """Where each of the step's rows starts among the call's tokens."""
    starts, at = [], 0
    for i in step.rows:
        starts.append(at)
        at += layout.lengths[i]
    return starts
