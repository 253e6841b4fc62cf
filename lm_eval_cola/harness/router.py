"""A learned router: which chain to run for a sample, from the model's own hidden states.

The oracle picks each sample's chain with its gold answer; a router must pick it without.
This one is a whole-chain predictor (in the manner of PoLar, not Dr.LLM's per-layer gates):

- **Candidates**: the full chain and the ``K`` chains correct on the most training samples
  of oracle records made on a calibration split (``lm-eval-cola search --split train``,
  ``record_chains=all``).
- **Labels**: whether each candidate answers each training sample correctly. By default
  every candidate is evaluated on every training sample (complete labels); ``labels_from_
  records`` reads them from the records instead, where a search never evaluated a
  candidate on a sample that label is unknown (masked out of the loss, not taken as wrong).
- **Features** (``features.py``): the hidden state after the first ``feature_layers``
  layers of the full chain over the prompt (the requests' shared context: never the
  continuation, never the gold), mean-pooled and at the last token.
- **Model**: one L2-regularised logistic regression per candidate (the chance that it is
  right), on standardised features; the L2 strength is picked by cross-validation.
- **Decision**: the candidate of highest ``p - length_penalty * len / L`` (ties: shorter,
  then the full chain's order). A sample therefore runs its chain, plus the feature layers
  its chain does not start with (``executed_length``): the depth a deployment would pay.

``RouterFile`` is the JSON file ``train-router`` writes and ``cola_router router=FILE``
reads (``Router.for_model`` checks it against the model). This module needs torch only to
fit (``fit``) and to route (``Router.route`` reads the model's hidden states).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lm_eval_cola.chains.syntax import Chain, format_chain, full_chain, parse_chain
from lm_eval_cola.errors import UserError

logger = logging.getLogger(__name__)

ROUTER_KIND = "cola_router"
# up to strengths at which every candidate's logit is about its base rate: a router that
# finds nothing in the features can say so (cross-validation picks the top end)
L2_GRID = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5)


@dataclass
class RouterFile:
    """A trained router and its provenance (see the module docstring)."""

    candidates: list[str]  # chain texts; the first is the full chain
    num_layers: int
    hidden_size: int
    feature_layers: int
    weights: list[list[float]]  # one row per candidate, over the standardised features
    bias: list[float]
    mean: list[float]  # feature standardisation
    scale: list[float]
    length_penalty: float
    model: str = ""
    task: str | None = None
    split: str | None = None
    samples: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    score: dict[str, Any] = field(default_factory=dict)
    kind: str = ROUTER_KIND
    created: str = ""
    version: str = ""

    def __post_init__(self) -> None:
        dims = len(self.mean)
        if not self.candidates or len(self.weights) != len(self.candidates) \
                or len(self.bias) != len(self.candidates) or len(self.scale) != dims \
                or any(len(row) != dims for row in self.weights):
            raise UserError("router file is inconsistent (candidates, weights, bias and "
                            "feature sizes disagree); allowed: a file written by train-router")

    @property
    def chains(self) -> list[Chain]:
        return [parse_chain(c, self.num_layers, 4 * self.num_layers) for c in self.candidates]

    def write(self, path: str | Path) -> None:
        from lm_eval_cola import __version__

        self.created = self.created or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        self.version = self.version or __version__
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self)) + "\n")

    @classmethod
    def read(cls, path: str | Path) -> RouterFile:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise UserError(f"router file {str(path)!r} does not exist; allowed: a file "
                            "written by lm-eval-cola train-router") from None
        except (OSError, ValueError) as err:
            raise UserError(f"router file {str(path)!r} is not readable JSON ({err})") from None
        if not isinstance(data, dict) or data.get("kind") != ROUTER_KIND:
            raise UserError(f"{str(path)!r} is not a router file (kind {ROUTER_KIND!r}); "
                            "allowed: a file written by lm-eval-cola train-router")
        try:
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except TypeError as err:
            raise UserError(f"router file {str(path)!r} lacks a field ({err})") from None


# ----------------------------------------------------------------------------- records


def candidates_from_records(records: Sequence[Any], num_layers: int, k: int) -> list[Chain]:
    """The full chain, then the ``k`` chains correct on the most records (ties: shorter,
    then smaller). A record lists every evaluated chain with ``record_chains=all``; older
    records give their correct chains."""
    counts: Counter[Chain] = Counter()
    for record in records:
        if record.num_layers != num_layers:
            raise UserError(f"records of a {record.num_layers}-layer model cannot train a "
                            f"router for a {num_layers}-layer one")
        for text in _correct_texts(record, num_layers):
            counts[parse_chain(text, num_layers, 4 * num_layers)] += 1
    full = full_chain(num_layers)
    counts.pop(full, None)
    ranked = sorted(counts, key=lambda c: (-counts[c], len(c), c))
    return [full, *ranked[:k]]


def _correct_texts(record: Any, num_layers: int) -> set[str]:
    if record.chains:
        return {e["chain"] for e in record.chains if e.get("correct")}
    texts = set(record.correct_chains) | set(record.pareto)
    if record.best_correct:
        texts.add(record.best_chain)
    if record.full_correct:
        texts.add(format_chain(full_chain(num_layers)))
    return texts


def labels_from_records(records: Sequence[Any], candidates: Sequence[Chain], num_layers: int
                        ) -> tuple[list[list[float]], list[list[bool]]]:
    """(labels, known) per record and candidate, read from ``record.chains`` (needs
    ``record_chains=all``): 1.0 / 0.0 where the record evaluated the candidate, unknown
    (``known`` False) where its search never did."""
    texts = [format_chain(c) for c in candidates]
    labels, known = [], []
    for record in records:
        if not record.chains:
            raise UserError(f"record of doc {record.doc_id} lists no evaluated chains; "
                            "allowed: records made with record_chains=all")
        seen = {e["chain"]: bool(e.get("correct")) for e in record.chains}
        labels.append([float(seen.get(t, False)) for t in texts])
        known.append([t in seen for t in texts])
    return labels, known


# ----------------------------------------------------------------------------- fit


@dataclass(frozen=True)
class Fitted:
    weights: Any  # torch tensors
    bias: Any
    mean: Any
    scale: Any
    l2: float
    cv_loss: dict[float, float]
    held_out_logits: Any  # N x K: each sample's logits from the fold that did not see it


def fit(features: Any, labels: Any, known: Any | None = None,
        l2_grid: Sequence[float] = L2_GRID, folds: int = 5, seed: int = 0) -> Fitted:
    """Per-candidate logistic regressions on standardised ``features`` (N x D) for
    ``labels`` (N x K, 0/1); ``known`` (N x K bool) masks unknown labels out. The L2
    strength is the grid value of least held-out log-loss over ``folds`` folds."""
    import torch

    x = torch.as_tensor(features, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.float64)
    mask = torch.ones_like(y) if known is None else torch.as_tensor(known, dtype=torch.float64)
    n = x.shape[0]
    if n < 2:
        raise UserError(f"a router needs at least 2 training samples, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = [order[i::min(folds, n)] for i in range(min(folds, n))]
    cv_loss: dict[float, float] = {}
    held_out: dict[float, Any] = {}
    for l2 in l2_grid:
        total, count = 0.0, 0.0
        held_out[l2] = torch.zeros_like(y)
        for held in parts:
            train = torch.ones(n, dtype=torch.bool)
            train[held] = False
            model = _fit_one(x[train], y[train], mask[train], l2)
            logits = _logits(model, x[held])
            held_out[l2][held] = logits
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, y[held], weight=mask[held], reduction="sum")
            total += float(loss)
            count += float(mask[held].sum())
        cv_loss[l2] = total / max(count, 1.0)
    best = min(l2_grid, key=lambda l2: (cv_loss[l2], -l2))
    if len(l2_grid) > 1 and best in (min(l2_grid), max(l2_grid)):
        logger.warning("cross-validation picked L2 %g, the end of the grid %s", best,
                       list(l2_grid))
    weights, bias, mean, scale = _fit_one(x, y, mask, best)
    return Fitted(weights, bias, mean, scale, best, cv_loss, held_out[best])


def _fit_one(x: Any, y: Any, mask: Any, l2: float) -> tuple[Any, Any, Any, Any]:
    import torch

    mean = x.mean(0)
    scale = x.std(0, unbiased=False).clamp_min(1e-6)
    z = (x - mean) / scale
    weights = torch.zeros(y.shape[1], x.shape[1], dtype=x.dtype, requires_grad=True)
    bias = torch.zeros(y.shape[1], dtype=x.dtype, requires_grad=True)
    optimiser = torch.optim.LBFGS([weights, bias], max_iter=200, line_search_fn="strong_wolfe")
    count = mask.sum().clamp_min(1.0)

    def closure() -> Any:
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            z @ weights.T + bias, y, weight=mask, reduction="sum") / count
        loss = loss + l2 * (weights ** 2).sum() / x.shape[0]
        loss.backward()
        return loss

    optimiser.step(closure)
    return weights.detach(), bias.detach(), mean, scale


def _logits(model: tuple[Any, Any, Any, Any], x: Any) -> Any:
    weights, bias, mean, scale = model
    return ((x - mean) / scale) @ weights.T + bias


# ----------------------------------------------------------------------------- decide


def sigmoid(value: float) -> float:
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    small = math.exp(value)  # no overflow for very negative logits
    return small / (1.0 + small)


def executed_length(chain: Chain, feature_layers: int) -> int:
    """Layers a sample runs: its chain, plus the feature layers (``0..feature_layers-1``)
    its chain does not start with (those are computed for the features only)."""
    shared = 0
    while shared < min(len(chain), feature_layers) and chain[shared] == shared:
        shared += 1
    return len(chain) + feature_layers - shared


def choose(probabilities: Sequence[float], chains: Sequence[Chain], num_layers: int,
           length_penalty: float) -> int:
    """The index of the candidate of highest ``p - length_penalty * len / L``; ties go to
    the shorter chain, then the earlier candidate (the full chain first)."""
    def key(k: int) -> tuple[float, int, int]:
        value = probabilities[k] - length_penalty * len(chains[k]) / num_layers
        return (-round(value, 12), len(chains[k]), k)

    return min(range(len(chains)), key=key)


@dataclass
class RoutingTally:
    """What a router model reports of its samples: the chains it picked (chain text ->
    samples), their lengths summed, and the layers run counting the feature layers."""

    picks: dict[str, int] = field(default_factory=dict)
    chain_layers: int = 0
    executed_layers: int = 0

    def add(self, chain: Chain, feature_layers: int) -> None:
        text = format_chain(chain)
        self.picks[text] = self.picks.get(text, 0) + 1
        self.chain_layers += len(chain)
        self.executed_layers += executed_length(chain, feature_layers)

    def model_info(self, num_layers: int) -> dict[str, Any]:
        """The ``cola_*`` keys of lm-eval's results config for the routed samples."""
        samples = sum(self.picks.values())

        def ratio(layers: int) -> float | None:
            return round(layers / samples / num_layers, 4) if samples else None

        return {"cola_router_picks": dict(sorted(self.picks.items(), key=lambda kv: -kv[1])),
                "cola_chain_length": round(self.chain_layers / samples, 4) if samples else None,
                "cola_depth_ratio": ratio(self.chain_layers),
                "cola_executed_depth_ratio": ratio(self.executed_layers)}


class Router:
    """A ``RouterFile`` ready to decide: ``pick(features) -> (index, probabilities)``;
    ``route(lm, requests)``: a sample's chain, counted in ``tally``."""

    def __init__(self, spec: RouterFile):
        self.spec = spec
        self.chains = spec.chains
        self.tally = RoutingTally()

    @classmethod
    def for_model(cls, path: str, num_layers: int, model_config: Any) -> Router:
        """The router of file ``path``, refused in one line when it was trained for a
        model of another layer count or hidden size than this one's."""
        spec = RouterFile.read(path)
        if spec.num_layers != num_layers:
            raise UserError(f"router {path} was trained for a {spec.num_layers}-layer model; "
                            f"this model has {num_layers} layers")
        config = getattr(model_config, "text_config", None) or model_config
        hidden_size = getattr(config, "hidden_size", spec.hidden_size)
        if spec.hidden_size != hidden_size:
            raise UserError(f"router {path} was trained on hidden size {spec.hidden_size}; "
                            f"this model's is {hidden_size}")
        return cls(spec)

    def route(self, lm: Any, requests: Sequence[Any]) -> Chain:
        """The chain for one sample (an lm-eval model's requests of one document), from
        its shared prompt's hidden states: never the continuation, never the gold."""
        from lm_eval_cola.engine.features import hidden_features, prompt_tokens

        layers = self.spec.feature_layers
        chain = self.chains[self.pick(hidden_features(lm, prompt_tokens(lm, requests),
                                                      layers))[0]]
        self.tally.add(chain, layers)
        return chain

    def probabilities(self, features: Sequence[float]) -> list[float]:
        spec = self.spec
        z = [(f - m) / s for f, m, s in zip(features, spec.mean, spec.scale, strict=True)]
        out = []
        for row, b in zip(spec.weights, spec.bias, strict=True):
            logit = b + sum(w * v for w, v in zip(row, z, strict=True))
            out.append(sigmoid(logit))
        return out

    def pick(self, features: Sequence[float]) -> tuple[int, list[float]]:
        probabilities = self.probabilities(features)
        return choose(probabilities, self.chains, self.spec.num_layers,
                      self.spec.length_penalty), probabilities
