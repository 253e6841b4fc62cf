"""Run a Hugging Face decoder-only model with its layers arranged as a chain.

The model's own ``forward`` does the work (embeddings, masks, rotary tables,
final norm, LM head), so every supported architecture keeps its quirks. For
the length of a ``with chain_applied(model, chain):`` block we only swap:

- the decoder's layer list for one ``ChainPosition`` per chain position, each
  wrapping the (shared) original layer;
- the config's layer count and layer types (``num_hidden_layers``, ``layer_types``)
  so the model loops
  over the whole chain, builds one KV-cache slot per chain position, and hands
  each position the attention mask of its own layer type (sliding vs full).

Each ``ChainPosition`` sets its layer's ``layer_idx`` to the chain position
while the layer runs, so a repeated layer writes its own cache slot instead of
overwriting the first visit's, and a chain that skips layer 0 still fills slot
0 (HF's ``get_seq_length()`` reads slot 0). On exit the model is the untouched
model again.

What differs between architectures (where the layers are, which modules hold
``layer_idx``, the config attributes, the cache keyword) is data: one entry per
``model_type`` in ``architectures.yaml`` (see ``architectures.py``).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from torch import nn

from lm_eval_cola.chains.syntax import Chain, validate_chain
from lm_eval_cola.engine import architectures
from lm_eval_cola.engine.architectures import Architecture, UnsupportedArchitectureError

logger = logging.getLogger(__name__)

__all__ = [
    "ChainPosition", "ChainedLayers", "LayerStack", "UnsupportedArchitectureError",
    "architecture_of", "chain_applied", "chain_positions", "find_layers", "model_type",
]


@dataclass(frozen=True)
class LayerStack:
    """Where a model keeps its decoder layers."""

    parent: nn.Module
    attribute: str
    layers: nn.ModuleList
    architecture: Architecture

    @property
    def num_layers(self) -> int:
        return len(self.layers)


def _unwrap(model: nn.Module) -> nn.Module:
    # PEFT keeps the real model behind get_base_model(); everything else is used as is.
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def model_type(model: nn.Module) -> str:
    return getattr(getattr(_unwrap(model), "config", None), "model_type", type(model).__name__)


def architecture_of(model: nn.Module) -> Architecture:
    """The model's entry in ``architectures.yaml``, or a one-line error listing the supported."""
    return architectures.get(model_type(model))


def _layer_list(model: nn.Module, arch: Architecture) -> tuple[nn.Module, str, Any]:
    parent: nn.Module = _unwrap(model)
    *parents, attribute = arch.layers_path
    for name in parents:
        parent = getattr(parent, name)
    return parent, attribute, getattr(parent, attribute)


def find_layers(model: nn.Module) -> LayerStack:
    """Locate the decoder layer list, or raise a one-line error listing what is supported."""
    arch = architecture_of(model)
    parent, attribute, layers = _layer_list(model, arch)
    if isinstance(layers, ChainedLayers):
        raise RuntimeError("a chain is already applied to this model; chains do not nest")  # noqa: TRY004
    if len(layers):
        _index_owners(layers[0], arch)  # fail here, not half-way through a forward
    return LayerStack(parent=parent, attribute=attribute, layers=layers, architecture=arch)


def _index_owners(layer: nn.Module, arch: Architecture) -> list[nn.Module]:
    """The modules of ``layer`` whose ``layer_idx`` picks its KV-cache slot."""
    owners = []
    for path in arch.layer_idx:
        module = layer
        for name in filter(None, path.split(".")):
            module = getattr(module, name, None)
        if not isinstance(module, nn.Module) or not hasattr(module, "layer_idx"):
            # The data no longer matches this transformers version: a silently shared
            # cache slot would give wrong generations, so refuse.
            raise UnsupportedArchitectureError(
                f"{arch.model_type}: decoder layer {type(layer).__name__} has no "
                f"{(path + '.') if path else ''}layer_idx ({architectures.DATA_FILE}: layer_idx)"
            )
        owners.append(module)
    return owners


class ChainPosition(nn.Module):
    """One position of a chain: runs a shared layer as if it sat at ``position``."""

    def __init__(self, layer: nn.Module, position: int, architecture: Architecture):
        super().__init__()
        self.layer = layer
        self.position = position
        self.architecture = architecture
        # Plain attributes, not submodules: they belong to `layer` already.
        self._owners = tuple(_index_owners(layer, architecture))
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

    def forward(self, *args, **kwargs):
        if self.replay is not None:
            if self.replay_cache is not None:
                self.cache_of(kwargs).layers[self.position] = copy.copy(self.replay_cache)
            return self.replay
        if self.around is not None:
            return self.around(self._run, args, kwargs)
        return self._run(args, kwargs)

    def _run(self, args: tuple, kwargs: dict[str, Any]) -> Any:
        owners = self._owners
        saved = [m.layer_idx for m in owners]
        for module in owners:
            module.layer_idx = self.position
        try:
            output = self.layer(*args, **kwargs)
        finally:
            for module, index in zip(owners, saved, strict=True):
                module.layer_idx = index
        if self.on_output is not None:
            self.on_output(self.position, output, self.cache_of(kwargs))
        return output

    def cache_of(self, kwargs: dict[str, Any]) -> Any:
        """The KV cache the layer was handed (its keyword differs across versions)."""
        for name in self.architecture.layer_cache_keywords:
            if kwargs.get(name) is not None:
                return kwargs[name]
        return None


class ChainedLayers(nn.ModuleList):
    """The temporary layer list: marks a model as running a chain."""


# Chains swap model state, so two threads must not run chains on one model at once.
_LOCK = threading.RLock()


def chain_positions(model: nn.Module) -> list[ChainPosition]:
    """The positions of the chain applied right now (inside ``chain_applied``)."""
    _, _, layers = _layer_list(model, architecture_of(model))
    if not isinstance(layers, ChainedLayers):
        raise RuntimeError("no chain is applied to this model")
    return list(layers)


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
    arch = stack.architecture
    config = _unwrap(model).config
    originals = list(stack.layers)
    saved_count = getattr(config, arch.layer_count)
    types_name = arch.layer_types
    saved_types = getattr(config, types_name, None) if types_name else None
    with _LOCK:
        setattr(
            stack.parent,
            stack.attribute,
            ChainedLayers(ChainPosition(originals[i], p, arch) for p, i in enumerate(chain)),
        )
        try:
            setattr(config, arch.layer_count, len(chain))
            if saved_types is not None:
                setattr(config, types_name, [saved_types[i] for i in chain])
            yield chain
        finally:
            setattr(stack.parent, stack.attribute, stack.layers)
            setattr(config, arch.layer_count, saved_count)
            if saved_types is not None:
                setattr(config, types_name, saved_types)
