"""Run a Hugging Face decoder-only model with its layers arranged as a chain.

The model's own ``forward`` does the work (embeddings, masks, rotary tables,
final norm, LM head), so every supported architecture keeps its quirks. For
the length of a ``with chain_applied(model, chain):`` block we only swap:

- the decoder's layer list for one ``ChainPosition`` per chain position, each
  wrapping the (shared) original layer;
- ``config.num_hidden_layers`` and ``config.layer_types`` so the model loops
  over the whole chain, builds one KV-cache slot per chain position, and hands
  each position the attention mask of its own layer type (sliding vs full).

Each ``ChainPosition`` sets its layer's ``layer_idx`` to the chain position
while the layer runs, so a repeated layer writes its own cache slot instead of
overwriting the first visit's, and a chain that skips layer 0 still fills slot
0 (HF's ``get_seq_length()`` reads slot 0). On exit the model is the untouched
model again.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lm_eval_cola.chain import Chain, validate_chain
from lm_eval_cola.errors import UserError

logger = logging.getLogger(__name__)

# model_type -> attribute path (from the CausalLM object) of the decoder layer list.
# Each entry is covered by tests/test_engine.py with a tiny random model.
SUPPORTED_ARCHITECTURES: dict[str, str] = {
    "llama": "model.layers",
    "mistral": "model.layers",
    "mixtral": "model.layers",
    "qwen2": "model.layers",
    "qwen2_moe": "model.layers",
    "qwen3": "model.layers",
    "qwen3_moe": "model.layers",
    "gemma": "model.layers",
    "gemma2": "model.layers",
    "gemma3_text": "model.layers",
    "phi3": "model.layers",
    "olmo": "model.layers",
    "olmo2": "model.layers",
    "granite": "model.layers",
}


class UnsupportedArchitectureError(UserError):
    """The model's architecture is not one the chain engine knows how to rearrange."""


@dataclass(frozen=True)
class LayerStack:
    """Where a model keeps its decoder layers."""

    parent: nn.Module
    attribute: str
    layers: nn.ModuleList

    @property
    def num_layers(self) -> int:
        return len(self.layers)


def _unwrap(model: nn.Module) -> nn.Module:
    # PEFT keeps the real model behind get_base_model(); everything else is used as is.
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def model_type(model: nn.Module) -> str:
    return getattr(getattr(_unwrap(model), "config", None), "model_type", type(model).__name__)


def find_layers(model: nn.Module) -> LayerStack:
    """Locate the decoder layer list, or raise a one-line error listing what is supported."""
    model = _unwrap(model)
    kind = model_type(model)
    path = SUPPORTED_ARCHITECTURES.get(kind)
    if path is None:
        raise UnsupportedArchitectureError(
            f"unsupported architecture {kind!r}; "
            f"supported: {', '.join(sorted(SUPPORTED_ARCHITECTURES))}"
        )
    parent: nn.Module = model
    *parents, attribute = path.split(".")
    for name in parents:
        parent = getattr(parent, name)
    layers = getattr(parent, attribute)
    if isinstance(layers, ChainedLayers):
        raise RuntimeError("a chain is already applied to this model; chains do not nest")  # noqa: TRY004
    return LayerStack(parent=parent, attribute=attribute, layers=layers)


def num_layers(model: nn.Module) -> int:
    return find_layers(model).num_layers


class ChainPosition(nn.Module):
    """One position of a chain: runs a shared layer as if it sat at ``position``."""

    def __init__(self, layer: nn.Module, position: int):
        super().__init__()
        self.layer = layer
        self.position = position
        # Prefix reuse (see fast.py, fast_generate.py): a stored output replaces running
        # the layer (and a stored KV-cache slot is put back in place), and `on_output`
        # sees each output computed here with the cache the layer wrote to.
        self.replay: Any = None
        self.replay_cache: Any = None
        self.on_output: Callable[[int, Any, Any], None] | None = None
        # Batched search (fast.py): `around(run, args, kwargs)` runs in place of the
        # layer and decides itself which batch rows `run(args, kwargs)` computes.
        self.around: Callable[..., Any] | None = None

    @property
    def attention_type(self) -> str | None:
        # Some models (Qwen2, Mistral with sliding windows) pick the mask by this attribute.
        return getattr(self.layer, "attention_type", None)

    def _indexed_modules(self) -> list[nn.Module]:
        owners = [self.layer]
        for name in ("self_attn", "attention", "attn"):
            sub = getattr(self.layer, name, None)
            if isinstance(sub, nn.Module):
                owners.append(sub)
        return [m for m in owners if hasattr(m, "layer_idx")]

    def forward(self, *args, **kwargs):
        if self.replay is not None:
            if self.replay_cache is not None:
                _cache_of(kwargs).layers[self.position] = copy.copy(self.replay_cache)
            return self.replay
        if self.around is not None:
            return self.around(self._run, args, kwargs)
        return self._run(args, kwargs)

    def _run(self, args: tuple, kwargs: dict[str, Any]) -> Any:
        owners = self._indexed_modules()
        saved = [m.layer_idx for m in owners]
        for module in owners:
            module.layer_idx = self.position
        try:
            output = self.layer(*args, **kwargs)
        finally:
            for module, index in zip(owners, saved, strict=True):
                module.layer_idx = index
        if self.on_output is not None:
            self.on_output(self.position, output, _cache_of(kwargs))
        return output


def _cache_of(kwargs: dict[str, Any]) -> Any:
    """The KV cache a decoder layer was handed (its keyword differs across versions)."""
    for name in ("cache", "past_key_values", "past_key_value"):
        if kwargs.get(name) is not None:
            return kwargs[name]
    return None


class ChainedLayers(nn.ModuleList):
    """The temporary layer list: marks a model as running a chain."""


# Chains swap model state, so two threads must not run chains on one model at once.
_LOCK = threading.RLock()


def chain_positions(model: nn.Module) -> list[ChainPosition]:
    """The positions of the chain applied right now (inside ``chain_applied``)."""
    stack = _unwrap(model)
    for name in SUPPORTED_ARCHITECTURES[model_type(stack)].split("."):
        stack = getattr(stack, name)
    if not isinstance(stack, ChainedLayers):
        raise RuntimeError("no chain is applied to this model")
    return list(stack)


@contextmanager
def chain_applied(model: nn.Module, chain: Sequence[int] | None) -> Iterator[Chain]:
    """Run ``model`` with its decoder layers arranged as ``chain`` inside the block.

    ``None`` means the identity chain, which leaves the model as it is.
    """
    stack = find_layers(model)
    total = stack.num_layers
    if chain is None:
        yield tuple(range(total))
        return
    chain = validate_chain(chain, total, max_length=max(len(chain), 1))
    config = _unwrap(model).config
    originals = list(stack.layers)
    saved_count = config.num_hidden_layers
    saved_types = getattr(config, "layer_types", None)
    with _LOCK:
        setattr(
            stack.parent,
            stack.attribute,
            ChainedLayers(ChainPosition(originals[i], p) for p, i in enumerate(chain)),
        )
        try:
            config.num_hidden_layers = len(chain)
            if saved_types is not None:
                config.layer_types = [saved_types[i] for i in chain]
            yield chain
        finally:
            setattr(stack.parent, stack.attribute, stack.layers)
            config.num_hidden_layers = saved_count
            if saved_types is not None:
                config.layer_types = saved_types


@torch.no_grad()
def chain_logits(model: nn.Module, input_ids: torch.Tensor, chain: Sequence[int] | None,
                 **kwargs) -> torch.Tensor:
    """Logits of ``model`` over ``input_ids`` with the layers arranged as ``chain``."""
    with chain_applied(model, chain):
        return model(input_ids=input_ids, **kwargs).logits
