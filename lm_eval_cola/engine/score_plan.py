"""What one batched log-likelihood forward runs (``fast.score_many``): its jobs, the order
of its layer calls, and, under ``numerics="fast"``, its padded inputs.

- A job is one (sample scorer, chain) ask. It starts after its longest stored prefix, or
  after a longer prefix that an earlier job of the same sample in the same forward
  computes (``plan_jobs``): the W chains a search asks at once share their common layer
  prefix, computed once in one row and handed to the others at the layer where they part
  (``Job.waiters``). Rows are independent in exact numerics, so a chain gets bitwise what
  it would get one at a time, its prefix then read back from the store.
- ``schedule_layers`` orders the layer calls: each runs the lowest layer any ready row needs
  next, over every row that needs it; a row waiting for a prefix is ready once the row
  that computes the prefix has passed the layer where they part.
- Exact numerics pad each sample to a length that depends on itself only and batch only
  samples of one padded length; fast numerics lay rows end to end (``flat_rows.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from lm_eval_cola.chains.syntax import Chain

EXACT, FAST = "exact", "fast"  # numerics (harness/config.py NUMERICS)


@dataclass
class ScoreStats:
    """What ``score_many`` computed (the benchmark prints it)."""

    forwards: int = 0  # batched forwards
    layer_calls: int = 0
    row_calls: int = 0  # batch rows in each layer call, summed
    token_layers: int = 0  # tokens x layers computed, padding included
    real_token_layers: int = 0  # the same without padding

    def reset(self) -> None:
        for item in fields(self):
            setattr(self, item.name, 0)

    def copy(self) -> ScoreStats:
        return ScoreStats(**{item.name: getattr(self, item.name) for item in fields(self)})


SCORE_STATS = ScoreStats()


@dataclass(eq=False)
class Job:
    """One chain to score for one sample, and where its batch row stands."""

    scorer: Any  # fast.SampleScorer
    chain: Chain
    start: int  # chain positions this job does not compute (stored, or another job's)
    hidden: torch.Tensor | None  # the output of chain[:start] (None: not known yet)
    final: torch.Tensor | None = None  # the last position's output, (1, tokens, H)
    source: Job | None = None  # the job whose row computes chain[:start], in this forward
    # chain position -> jobs that start from this job's output there (module docstring)
    waiters: dict[int, list[Job]] = field(default_factory=dict)

    @property
    def has_row(self) -> bool:
        """Whether the job computes any position itself (else its final comes stored, or
        from its source's row)."""
        return self.start < len(self.chain)

    def deliver(self, position: int, row: torch.Tensor) -> None:
        """Hand this job's output at chain ``position`` to the jobs waiting for it."""
        for waiter in self.waiters.get(position, ()):
            if waiter.has_row:
                waiter.hidden = row
            else:
                waiter.final = row


def common_length(a: Chain, b: Chain) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def plan_jobs(asks: Sequence[tuple[Any, Chain]]) -> list[Job]:
    """One job per (scorer, chain) ask, in order, each starting after its longest stored
    prefix or after a longer one an earlier job of the same scorer computes here."""
    jobs: list[Job] = []
    earlier: dict[int, list[Job]] = {}
    for scorer, chain in asks:
        start, hidden = scorer.store.longest(chain)
        job = Job(scorer, chain, start, hidden, final=hidden if start == len(chain) else None)
        siblings = earlier.setdefault(id(scorer), [])
        if job.final is None:
            _share_prefix(job, siblings)
        siblings.append(job)
        jobs.append(job)
        scorer.layers_run += len(chain) - job.start
    return jobs


def _share_prefix(job: Job, siblings: list[Job]) -> None:
    """Start ``job`` after the longest prefix an earlier sibling shares with it, where that
    is longer than its stored one: the first sibling that computes that prefix's last
    position (one always does while the store keeps every stored chain's start, as its
    chained store does)."""
    shared = max((common_length(s.chain, job.chain) for s in siblings), default=0)
    if shared <= job.start:
        return
    source = next((s for s in siblings if s.start < shared
                   and common_length(s.chain, job.chain) >= shared), None)
    if source is None:
        return
    job.start, job.hidden, job.source = shared, None, source
    source.waiters.setdefault(shared - 1, []).append(job)


@dataclass
class Step:
    """One layer run over the batch rows whose chains run that layer next."""

    rows: list[int]
    positions: list[int]  # per row: the chain position this step computes


def schedule_layers(jobs: Sequence[Any]) -> tuple[Chain, list[Step]]:
    """Steps that advance every job (``chain``, ``start``; optionally ``source``, a job
    of ``jobs`` whose output at ``start - 1`` it waits for) to the end of its chain, each
    running the lowest layer any ready job needs next for all ready jobs that need it:
    chains near the full chain then run their later layers together."""
    at = [job.start for job in jobs]
    index = {id(job): i for i, job in enumerate(jobs)}
    waits = []
    for i, job in enumerate(jobs):
        source = getattr(job, "source", None)
        waits.append(None if source is None else (index[id(source)], job.start, i))
    layers, steps = [], []
    while True:
        live = [i for i, job in enumerate(jobs) if at[i] < len(job.chain)
                and (waits[i] is None or at[waits[i][0]] >= waits[i][1])]
        if not live:
            if any(at[i] < len(job.chain) for i, job in enumerate(jobs)):
                raise RuntimeError("a batched row waits for a prefix no row computes")
            return tuple(layers), steps
        layer = min(jobs[i].chain[at[i]] for i in live)
        rows = [i for i in live if jobs[i].chain[at[i]] == layer]
        layers.append(layer)
        steps.append(Step(rows, [at[i] for i in rows]))
        for i in rows:
            at[i] += 1


def keep_outputs(jobs: list[Job], step: Step, rows: Iterable[torch.Tensor]) -> None:
    """Each stepped chain's layer output (``rows``, in ``step.rows`` order): stored as that
    chain prefix, handed to the chains waiting on it, and kept as the chain's final hidden
    state at its last position. One rule for the padded and the flat layouts."""
    for i, position, row in zip(step.rows, step.positions, rows, strict=True):
        job = jobs[i]
        job.scorer.store.put(job.chain[:position + 1], row)
        job.deliver(position, row)
        if position + 1 == len(job.chain):
            job.final = row
