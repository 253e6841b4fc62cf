"""Fast loglikelihood scoring of samples under many chains (the search's hot path).

Four savings over lm-eval's own path (a full forward per request, full logits):

1. Shared context, packed: a multiple-choice sample's requests share their context.
   We lay the shared prefix out once, then each request's own remainder as a segment
   that attends to the prefix and to itself only (a 4D mask; position ids restart after
   the prefix), so the context runs once instead of once per choice.
2. Prefix reuse: the hidden states after every chain prefix are kept (keyed by the layer
   sequence; past a byte cap the least recently used stored chain loses its end first,
   ``PrefixStore(chained=True)``). A new chain runs only the
   layers after its longest stored prefix; searches try chains one action apart, so
   much of a chain is usually stored already.
3. LM-head logits only at the positions that score a continuation token, in chunks of at
   most HEAD_LOGITS rows x vocabulary (a 128k vocabulary would otherwise make gigabytes).
4. Samples batched: `score_many` evaluates several samples' chains in one forward.
   A layer that several of them run next runs once over all their rows, so its weights
   are read once (on a CPU, reading the weights is most of a small forward's time) and
   the LM head runs once for everyone's scored positions. The chains one sample asks at
   once (a search's ``parallel=W``) share their common prefix: it runs once, in one row,
   and the others start from its output (``score_plan.plan_jobs``).
   ``numerics="exact"`` (the default): each sample is padded to a length that depends
   only on itself (a multiple of PAD_MULTIPLE), samples of one padded length share a
   forward, and every layer treats batch rows independently, so a sample's scores are
   bitwise the same whatever samples share its batch (tests/test_fast.py checks this).
   ``numerics="fast"``: no padding, every sample in one forward (``flat_rows.py``);
   scores round differently with the batch, decisions measured against exact
   (tests/test_numerics_fast.py).

Results equal lm-eval's path up to float rounding (tests/test_fast.py checks this on
tiny models; benchmarks/search_speed.py checks same chains and decisions on the real
model). When a layer has a sliding window shorter than the packed sequence the custom
mask would be wrong, so such samples use lm-eval's path (the window's config attribute
comes from ``architectures.yaml``). An attention implementation that takes no 4D mask
(FlashAttention-2) sends every sample to lm-eval's path (``mask_attention``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lm_eval_cola.chains.syntax import Chain
from lm_eval_cola.engine.apply import architecture_of, chain_applied, chain_positions
from lm_eval_cola.engine.flat_rows import run_flat_layers
from lm_eval_cola.engine.layer_steps import (
    LayersDone,
    drive_steps,
    layer_output,
    note_layer_output,
    select_in,
)
from lm_eval_cola.engine.prefix_store import DEFAULT_CACHE_BYTES, PrefixStore
from lm_eval_cola.engine.score_plan import (
    EXACT,
    FAST,
    SCORE_STATS,
    Job,
    Step,
    keep_outputs,
    plan_jobs,
    schedule_layers,
)

logger = logging.getLogger(__name__)

PAD_MULTIPLE = 16  # samples are padded to a multiple of this (see point 4 above)
# Logits (rows x vocabulary) of one LM-head call: 2^26 fp32 logits are 256 MiB, and their
# log-softmax as much again. Unchunked, a large search_batch on a 128k vocabulary made tens
# of GB.
HEAD_LOGITS = 1 << 26


@dataclass
class PackedSample:
    """One sample's requests as one packed sequence, padded to ``padded_length``."""

    input_ids: torch.Tensor  # (1, P)
    position_ids: torch.Tensor  # (1, P)
    segments: torch.Tensor  # (P,) 0 shared prefix, k request k's remainder, -1 padding
    scored: torch.Tensor  # (K,) packed positions whose logits are needed, ascending
    picks: list[tuple[torch.Tensor, torch.Tensor]]  # per request: rows of `scored`, targets
    length: int  # real tokens; the rest up to padded_length is padding

    @property
    def padded_length(self) -> int:
        return int(self.input_ids.shape[1])


def common_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """How many leading items all ``sequences`` share."""
    first = sequences[0]
    length = min(len(s) for s in sequences)
    for i in range(length):
        if any(s[i] != first[i] for s in sequences):
            return i
    return length


def pack(pairs: Sequence[tuple[list[int], list[int]]], max_length: int,
         pad_multiple: int = PAD_MULTIPLE) -> PackedSample:
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
    length = len(tokens)
    padding = -length % pad_multiple
    tokens += [tokens[-1]] * padding  # any real token id: padding is masked out
    positions += [0] * padding
    segments += [-1] * padding
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
        length=length,
    )


def packed_mask(sample: PackedSample, dtype: torch.dtype) -> torch.Tensor:
    """Additive 4D mask: causal, a segment sees the shared prefix and itself only, and a
    padding position sees only itself (so its softmax is defined) and is seen by none."""
    segment = sample.segments
    index = torch.arange(segment.shape[0])
    causal = index[None, :] <= index[:, None]
    same = segment[None, :] == segment[:, None]
    visible = causal & ((segment[None, :] == 0) | same) & (segment[:, None] >= 0)
    padding = segment < 0
    visible |= torch.diag(padding)
    mask = torch.zeros(visible.shape, dtype=dtype)
    mask.masked_fill_(~visible, torch.finfo(dtype).min)
    return mask[None, None]


# Attention implementations that apply the packed 4D additive mask. FlashAttention-2 takes
# no such mask (its kernels know causal and padding masks only), so a request would attend to
# its sibling choices; flex attention and the rest are not checked against lm-eval's path.
MASK_ATTENTION = ("sdpa", "eager")
_REFUSED_ATTENTION: set[str | None] = set()  # implementations logged already, once each


def mask_attention(model: torch.nn.Module) -> bool:
    """Whether the model's attention implementation takes the packed sample's 4D mask (else
    its samples use lm-eval's path; logged once per implementation)."""
    implementation = getattr(model.config, "_attn_implementation", None)
    if implementation in MASK_ATTENTION:
        return True
    if implementation not in _REFUSED_ATTENTION:
        _REFUSED_ATTENTION.add(implementation)
        logger.warning("attn_implementation=%s takes no 4D attention mask: log-likelihood "
                       "requests use lm-eval's path, not the fast scorer (it needs one of %s)",
                       implementation, ", ".join(MASK_ATTENTION))
    return False


def sliding_window(model: torch.nn.Module) -> int | None:
    """The longest sequence the model's custom masks are right for: its sliding window
    (from ``architectures.yaml``), or None when no layer has one."""
    return architecture_of(model).window(model.config)


class SampleScorer:
    """Scores one sample's loglikelihood requests under any chain, reusing work.

    ``scorer(chain)`` scores one chain; ``score_many`` scores several samples' chains in
    one batched forward, with the same results."""

    def __init__(self, model: torch.nn.Module, sample: PackedSample, device: torch.device,
                 cache_bytes: int = DEFAULT_CACHE_BYTES, numerics: str = EXACT):
        self.model = model
        self.sample = sample
        self.device = device
        # exact: rows padded to padded_length, batched with same-length samples only;
        # fast: rows of the real tokens, padded to the forward's longest (score_plan.py)
        self.numerics = numerics
        self.length = sample.length if numerics == FAST else sample.padded_length
        # Chained: plain LRU would evict a chain's first positions (its oldest entries)
        # first, and with them the prefix every chain one action apart shares.
        self.store = PrefixStore(cache_bytes, chained=True)
        self.layers_run = 0
        dtype = next(model.parameters()).dtype
        n = self.length
        self.input_ids = sample.input_ids[:, :n].to(device)
        self.position_ids = sample.position_ids[:, :n].to(device)
        self.mask = packed_mask(sample, dtype)[..., :n, :n].to(device)
        self.scored = sample.scored.to(device)

    @classmethod
    def usable(cls, model: torch.nn.Module, sample: PackedSample) -> bool:
        if not mask_attention(model):
            return False
        window = sliding_window(model)
        return window is None or sample.padded_length <= window

    def __call__(self, chain: Chain) -> list[tuple[float, bool]]:
        return score_many(self.model, [(self, chain)])[0]

    def results(self, picked: torch.Tensor, greedy: torch.Tensor) -> list[tuple[float, bool]]:
        """(loglikelihood, is_greedy) per request: ``picked`` holds the log-probabilities of
        every request's targets in request order, ``greedy`` the argmax of each scored row
        (both on the CPU: one copy for the whole batch, not one sync per request)."""
        out, at = [], 0
        for rows, targets in self.sample.picks:
            count = targets.shape[0]
            ll = float(picked[at:at + count].sum())
            out.append((ll, bool((greedy[rows] == targets).all())))
            at += count
        return out


@torch.no_grad()
def score_many(model: torch.nn.Module,
               jobs: Sequence[tuple[SampleScorer, Chain]]) -> list[list[tuple[float, bool]]]:
    """Score each (sample scorer, chain) pair: one batched forward per padded length (exact
    numerics) or one for all (fast), a sample's chains sharing their common prefix
    (``score_plan.plan_jobs``), then one LM-head pass over every scored position."""
    runs = plan_jobs(jobs)
    groups: dict[tuple[str, int], list[Job]] = {}
    for job in runs:
        if job.has_row:
            fast = job.scorer.numerics == FAST
            key = (FAST, 0) if fast else (EXACT, job.scorer.sample.padded_length)
            groups.setdefault(key, []).append(job)
    for group in groups.values():
        _run_layers(model, group)
    return _run_head(model, runs)


def _run_layers(model: torch.nn.Module, jobs: list[Job]) -> None:
    """Run every job's missing chain positions as one batch: all of one padded length
    (exact numerics), or any lengths laid end to end (fast: ``flat_rows``)."""
    if jobs[0].scorer.numerics == FAST:
        run_flat_layers(model, jobs)
        return
    layers, steps = schedule_layers(jobs)
    batch = len(jobs)
    # Each distinct row subset as an index on the device, all by one host-to-device copy:
    # on CUDA a tensor made from a list waits for the device, so one a layer stalled it.
    keys = list(dict.fromkeys(tuple(step.rows) for step in steps if len(step.rows) < batch))
    flat = torch.tensor([i for key in keys for i in key], dtype=torch.long,
                        device=jobs[0].scorer.input_ids.device)
    subsets = dict(zip(keys, flat.split([len(key) for key in keys]), strict=True))

    def around(step: Step, last: bool, run: Any, args: tuple, kwargs: dict) -> Any:
        hidden = args[0]
        subset = len(step.rows) < batch
        rows = subsets[tuple(step.rows)].to(hidden.device) if subset else None
        x = hidden.index_select(0, rows) if subset else hidden
        starting = [k for k, (i, p) in enumerate(zip(step.rows, step.positions, strict=True))
                    if p == jobs[i].start and jobs[i].hidden is not None]
        if starting:
            x = x.clone()
            for k in starting:
                stored = jobs[step.rows[k]].hidden[0]
                x[k, :stored.shape[0]] = stored.to(x.device)
        if subset:
            kwargs = select_in(kwargs, rows, 0, batch)
        output = run((x, *args[1:]), kwargs)
        SCORE_STATS.layer_calls += 1
        SCORE_STATS.row_calls += x.shape[0]
        SCORE_STATS.token_layers += x.shape[0] * x.shape[1]
        SCORE_STATS.real_token_layers += sum(jobs[i].scorer.sample.length for i in step.rows)
        note_layer_output(model, output)
        out = output[0] if isinstance(output, tuple) else output
        keep_outputs(jobs, step, (out[k:k + 1, :jobs[i].scorer.length].clone()
                                  for k, i in enumerate(step.rows)))
        if last:
            raise LayersDone
        merged = out
        if subset:  # with a device map the layer's output may sit on another device
            merged = hidden.to(out.device).index_copy(0, rows.to(out.device), out)
        return (merged, *output[1:]) if isinstance(output, tuple) else merged

    inputs = {
        "input_ids": torch.cat([j.scorer.input_ids for j in jobs]),
        "position_ids": torch.cat([j.scorer.position_ids for j in jobs]),
        "attention_mask": torch.cat([j.scorer.mask for j in jobs]),
        "use_cache": False,
    }
    SCORE_STATS.forwards += 1
    drive_steps(model, layers, steps, around, inputs)


def head_chunk_rows(vocab_size: int, max_logits: int = HEAD_LOGITS) -> int:
    """Rows per LM-head call: at most ``max_logits`` logits, a multiple of PAD_MULTIPLE."""
    return max(max_logits // max(vocab_size, 1) // PAD_MULTIPLE, 1) * PAD_MULTIPLE


def _run_head(model: torch.nn.Module, jobs: list[Job],
              max_logits: int | None = None) -> list[list[tuple[float, bool]]]:
    """Final norm and LM head over every job's scored positions, in chunks of at most
    ``max_logits`` logits (default HEAD_LOGITS); each chunk keeps only its rows' target
    log-probabilities and argmax, so the full logits never exist at once."""
    device = jobs[0].final.device
    rows = torch.cat([job.final[0].to(device).index_select(0, job.scorer.scored.to(device))
                      for job in jobs])
    # Every request's (row, target) pairs, rows numbered across the jobs.
    index, targets, at = [], [], 0
    for job in jobs:
        for picks, wanted in job.scorer.sample.picks:
            index.append(picks + at)
            targets.append(wanted)
        at += job.scorer.scored.shape[0]
    index_at, targets_at = torch.cat(index).to(device), torch.cat(targets).to(device)
    picked = torch.zeros(index_at.shape[0], dtype=torch.float32, device=device)
    greedy = torch.empty(rows.shape[0], dtype=torch.long, device=device)
    step = head_chunk_rows(int(getattr(model.config, "vocab_size", 0) or 1),
                           HEAD_LOGITS if max_logits is None else max_logits)
    for begin in range(0, rows.shape[0], step):
        logits = _head_logits(model, rows[begin:begin + step])
        count = logits.shape[0]
        greedy[begin:begin + count] = logits.argmax(dim=-1)
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        # Masked, not boolean-indexed: no device sync inside the loop.
        inside = (index_at >= begin) & (index_at < begin + count)
        local = (index_at - begin).clamp(0, count - 1)
        picked = torch.where(inside, logprobs[local, targets_at], picked)
    picked, greedy = picked.cpu(), greedy.cpu()
    results, at, taken = [], 0, 0
    for job in jobs:
        k = job.scorer.scored.shape[0]
        pairs = sum(t.shape[0] for _, t in job.scorer.sample.picks)
        results.append(job.scorer.results(picked[taken:taken + pairs], greedy[at:at + k]))
        at, taken = at + k, taken + pairs
    return results


def _head_logits(model: torch.nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """Logits of hidden states ``rows`` (K, H) by the model's own forward (so the final norm,
    final-logit softcapping and the like apply) on a one-position chain whose output is
    those rows."""
    real, device = rows.shape[0], rows.device
    # MKL multiplies fewer than 12 rows by other kernels than more rows, with other
    # rounding; a multiple of PAD_MULTIPLE rows keeps every row's logits batch-invariant.
    rows = torch.cat([rows, rows.new_zeros(-real % PAD_MULTIPLE, rows.shape[1])])
    count = rows.shape[0]
    with chain_applied(model, (0,)):
        chain_positions(model)[0].replay = layer_output(model, rows[None])
        logits = model(input_ids=torch.zeros(1, count, dtype=torch.long, device=device),
                       position_ids=torch.zeros(1, count, dtype=torch.long, device=device),
                       use_cache=False).logits[0]
    return logits[:real]
