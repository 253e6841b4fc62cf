"""Static layer-pruning baselines as chain generators (the library of ``lm-eval-cola
prune``; its arguments and run are in ``cli/prune.py``).

Each method drops whole decoder layers to a target depth (``--layers N``, or ``--depth
0.75`` of the layer count, rounded) using calibration text only, and writes the kept
layers, in order, as a chain file (``cola_hf chain=FILE``, ``lm-eval-cola export FILE``).

- ``block_influence`` (ShortGPT, Men et al. 2024): a layer's influence is
  ``1 - cos(x_in, x_out)`` between the hidden state entering and leaving it, averaged over
  every calibration token; the layers of lowest influence are dropped. One forward pass of
  the full model over the calibration text.
- ``sleb`` (SLEB, Song et al. 2024): greedy removal by calibration perplexity: at each step
  every remaining layer is tried out and the one whose removal gives the lowest perplexity
  of the calibration text is dropped, until the target depth. ``n + (n-1) + ...`` chain
  evaluations (212 for 30 -> 22 layers); the chains of a step share their prefixes with the
  current chain, whose hidden states are reused (``fast.SampleScorer``).
- ``sleb_oneshot``: the cheaper variant: every single-layer removal is scored once, from
  the full model, and the ``L - N`` least harmful layers are dropped together (``L``
  evaluations). It ignores how removals interact.

Calibration text: the first ``--limit`` docs of the task's calibration split (``--split``;
the evaluated split is refused, as in ``calibrate``), each as lm-eval's prompt for it
(``doc_to_text``), the target delimiter and the gold answer, cut to ``--max_tokens``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from lm_eval_cola.chains.syntax import Chain
from lm_eval_cola.errors import UserError

if TYPE_CHECKING:  # torch is imported where a model runs: `lm-eval-cola leaderboard`
    import torch  # builds every subcommand's parser and must work without torch

logger = logging.getLogger(__name__)

METHODS = ("block_influence", "sleb", "sleb_oneshot")
JOBS_PER_FORWARD = 64


def target_layers(num_layers: int, layers: int | None, depth: float | None) -> int:
    """The depth to prune to, from ``--layers`` or ``--depth`` (exactly one)."""
    if (layers is None) == (depth is None):
        raise UserError("give exactly one of --layers N and --depth FRACTION")
    if depth is not None:
        if not 0 < depth <= 1:
            raise UserError(f"bad --depth {depth}; allowed: a fraction in (0, 1]")
        layers = max(1, round(depth * num_layers))
    assert layers is not None
    if not 1 <= layers <= num_layers:
        raise UserError(f"bad --layers {layers}; allowed: 1 to {num_layers}")
    return layers


# ----------------------------------------------------------------------------- texts


def calibration_texts(task: Any, limit: int | None) -> list[str]:
    """Prompt + delimiter + gold answer for the task's first ``limit`` eval docs (the task
    as ``calibrate.calibration_task`` returns it: its eval docs are the calibration split)."""
    from lm_eval_cola.search.judge import TaskJudge

    judge = TaskJudge(task, None, None)
    delimiter = task.config.target_delimiter or " "
    texts = []
    docs = task.eval_docs
    for index in range(len(docs) if limit is None else min(limit, len(docs))):
        doc = docs[index]
        prompt = task.doc_to_text(doc)
        if judge.output_type == "multiple_choice":
            golds = sorted(judge.gold_choices(doc))
            if not golds:
                continue
            answer = str(task.doc_to_choice(doc)[golds[0]])
        else:
            answer = str(judge.gold_text(doc))
        texts.append(f"{prompt}{delimiter}{answer}")
    if not texts:
        raise UserError(f"no calibration text from task {task.config.task!r}")
    return texts


def tokenize(tokenizer: Any, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
    ids = [tokenizer(t)["input_ids"][:max_tokens] for t in texts]
    return [i for i in ids if len(i) >= 2]


# ----------------------------------------------------------------------------- block influence


def block_influence(model: torch.nn.Module, token_ids: Sequence[Sequence[int]]) -> list[float]:
    """ShortGPT's block influence of every decoder layer: ``1 - cos(input, output)`` of
    its hidden states, averaged over all calibration tokens (one text per forward)."""
    import torch

    with torch.no_grad():
        return _block_influence(model, token_ids)


def _block_influence(model: torch.nn.Module, token_ids: Sequence[Sequence[int]]) -> list[float]:
    import torch

    from lm_eval_cola.engine.apply import find_layers

    layers = find_layers(model).layers
    sums = torch.zeros(len(layers), dtype=torch.float64)
    count = 0

    def hook(index: int):
        def record(module, args, kwargs, output):
            hidden_in = args[0] if args else kwargs["hidden_states"]
            hidden_out = output[0] if isinstance(output, tuple) else output
            cos = torch.nn.functional.cosine_similarity(hidden_in.float(), hidden_out.float(),
                                                        dim=-1)
            sums[index] += (1 - cos).double().sum().cpu()
        return record

    handles = [layer.register_forward_hook(hook(i), with_kwargs=True)
               for i, layer in enumerate(layers)]
    device = next(model.parameters()).device
    try:
        for ids in tqdm(token_ids, desc="block influence", unit="text"):
            model(input_ids=torch.tensor([list(ids)], device=device), use_cache=False)
            count += len(ids)
    finally:
        for handle in handles:
            handle.remove()
    return [float(s / count) for s in sums]


def drop_lowest(scores: Sequence[float], keep: int) -> Chain:
    """The ``keep`` layers of highest score, in their original order (ties: drop the
    later layer first)."""
    order = sorted(range(len(scores)), key=lambda i: (scores[i], -i))
    dropped = set(order[:len(scores) - keep])
    return tuple(i for i in range(len(scores)) if i not in dropped)


# ----------------------------------------------------------------------------- SLEB


class Perplexity:
    """Calibration negative log-likelihood per token of chains, with prefix reuse."""

    def __init__(self, model: torch.nn.Module, token_ids: Sequence[Sequence[int]],
                 cache_bytes: int = 2 << 30):
        from lm_eval_cola.engine.fast import SampleScorer, pack

        self.model = model
        self.device = next(model.parameters()).device
        self.token_ids = [list(ids) for ids in token_ids]
        self.tokens = sum(len(ids) - 1 for ids in self.token_ids)
        share = max(cache_bytes // len(self.token_ids), 1 << 20)
        self.scorers: list[Any] = []
        for ids in self.token_ids:
            sample = pack([(ids[:1], ids[1:])], len(ids) + 1)
            usable = SampleScorer.usable(model, sample)
            self.scorers.append(SampleScorer(model, sample, self.device, share) if usable
                                else None)
        self.evaluations = 0

    def __call__(self, chains: Sequence[Chain]) -> list[float]:
        from lm_eval_cola.engine.fast import score_many

        totals = [0.0] * len(chains)
        jobs = [(c, k) for c in range(len(chains)) for k in range(len(self.scorers))]
        fast = [(c, k) for c, k in jobs if self.scorers[k] is not None]
        for start in range(0, len(fast), JOBS_PER_FORWARD):
            part = fast[start:start + JOBS_PER_FORWARD]
            results = score_many(self.model, [(self.scorers[k], chains[c]) for c, k in part])
            for (c, _), result in zip(part, results, strict=True):
                totals[c] -= result[0][0]
        for c, k in jobs:
            if self.scorers[k] is None:  # a sliding window shorter than the text
                totals[c] += self._plain_nll(chains[c], self.token_ids[k])
        self.evaluations += len(chains)
        return [t / self.tokens for t in totals]

    def _plain_nll(self, chain: Chain, ids: list[int]) -> float:
        import torch

        from lm_eval_cola.engine.apply import chain_applied

        tensor = torch.tensor([ids], device=self.device)
        with torch.no_grad(), chain_applied(self.model, chain):
            logits = self.model(input_ids=tensor, use_cache=False).logits[0, :-1].float()
        logprobs = torch.log_softmax(logits, -1).gather(-1, tensor[0, 1:, None])
        return float(-logprobs.sum())


def sleb(perplexity: Perplexity, num_layers: int, keep: int, oneshot: bool = False
         ) -> tuple[Chain, list[dict[str, Any]]]:
    """(the kept chain, one entry per removal: layer, nll after it)."""
    chain: Chain = tuple(range(num_layers))
    steps: list[dict[str, Any]] = []
    (base,) = perplexity([chain])
    steps.append({"removed": None, "nll": base})
    if oneshot:
        candidates = [chain[:k] + chain[k + 1:] for k in range(num_layers)]
        nll = perplexity(candidates)
        order = sorted(range(num_layers), key=lambda k: (nll[k], k))[:num_layers - keep]
        steps += [{"removed": k, "nll_alone": nll[k]} for k in order]
        return tuple(i for i in chain if i not in set(order)), steps
    bar = tqdm(total=num_layers - keep, desc="SLEB removals", unit="layer")
    while len(chain) > keep:
        candidates = [chain[:k] + chain[k + 1:] for k in range(len(chain))]
        nll = perplexity(candidates)
        best = min(range(len(chain)), key=lambda k: (nll[k], k))
        steps.append({"removed": chain[best], "nll": nll[best]})
        chain = candidates[best]
        bar.update(1)
        bar.set_postfix_str(f"removed {steps[-1]['removed']}, nll {nll[best]:.4f}")
    bar.close()
    return chain, steps
