"""Driving a model's own forward one layer call at a time (the batched fast paths:
``fast.py``, ``flat_rows.py``, ``batch_generate.py``): each chain position's layer call is
wrapped by a function that picks the rows it runs, and the forward stops after the last
layer, before the final norm and head."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch

from lm_eval_cola.chains.syntax import Chain
from lm_eval_cola.engine.apply import architecture_of, chain_applied, chain_positions


class LayersDone(Exception):
    """Raised after the last scheduled step: the final norm and LM head run later."""


def drive_steps(model: torch.nn.Module, layers: Chain, steps: Sequence[Any],
                around: Callable[..., Any], inputs: dict[str, Any]) -> None:
    """The model's own forward over ``layers``, chain position ``n`` wrapped by
    ``around(steps[n], last, ...)``; the last step raises ``LayersDone``, so nothing after
    the layers (norm, head) runs."""
    with chain_applied(model, layers):
        for n, (position, step) in enumerate(zip(chain_positions(model), steps, strict=True)):
            position.around = functools.partial(around, step, n == len(steps) - 1)
        try:
            model(**inputs)
        except LayersDone:
            pass
        else:  # pragma: no cover - the last step always raises
            raise RuntimeError("the batched forward ended before its last step")


def select_in(value: Any, index: torch.Tensor, dim: int, size: int) -> Any:
    """``value`` (a layer's keyword arguments) cut to ``index`` along ``dim``: every tensor
    of at least 2 dimensions whose ``dim`` has ``size`` (the batch's rows, or the packed
    sequence's tokens: masks, rotary tables, position ids), in dicts, tuples and lists."""
    if isinstance(value, torch.Tensor):
        if value.dim() >= 2 and value.shape[dim] == size:
            # With a device map the mask and rotary tables stay where the model made them
            # (its first device) while ``index`` follows the hidden state.
            return value.index_select(dim, index.to(value.device))
        return value
    if isinstance(value, dict):
        return {k: select_in(v, index, dim, size) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return type(value)(select_in(v, index, dim, size) for v in value)
    return value


def note_layer_output(model: torch.nn.Module, output: Any) -> None:
    """Learn (``probe``) or check (a pinned ``layer_output``) what the layers return."""
    declared = architecture_of(model).layer_output
    returned = "tuple" if isinstance(output, tuple) else "tensor"
    if declared == "probe":
        _PROBED_OUTPUTS[type(model)] = returned
    elif declared != returned:
        raise RuntimeError(
            f"architectures.yaml says {architecture_of(model).model_type} decoder layers "
            f"return a {declared}, but this one returned a {returned}; set layer_output: probe"
        )


def layer_output(model: torch.nn.Module, hidden: torch.Tensor) -> Any:
    """``hidden`` as the model's decoder layers return it (a tensor, or a tuple in
    models whose layers return one)."""
    declared = architecture_of(model).layer_output
    if declared == "probe":
        # Every stored row came from a layer run of this model class, so it is known.
        declared = _PROBED_OUTPUTS.get(type(model), "tensor")
    return (hidden,) if declared == "tuple" else hidden


# model class -> what its decoder layers returned ("tensor" or "tuple"), for `probe` entries
_PROBED_OUTPUTS: dict[type, str] = {}
