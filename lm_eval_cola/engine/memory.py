"""The fast paths' two memory budgets, given or chosen from the device when the runner is
built (right after the model loads, so the weights are already off the free memory).

- ``cache_bytes`` (``prefix_cache_bytes``): the stored outputs after chain prefixes, shared
  by the samples in flight (``prefix_store.PrefixStore``);
- ``kv_bytes`` (``generation_kv_bytes``): the KV slots of the generation rows decoding at
  once (``batch_generate.Admission``).

With layers on several devices the free memory is the first device's (the embedding's).

A budget left unset is ``FREE_SHARE`` of the device's free memory on CUDA
(``torch.cuda.mem_get_info``): the two together take half of it, and the other half is left
for what neither budget bounds (a batched forward's activations, LM-head chunks, the
allocator's slack). Elsewhere (CPU, or a device whose free memory torch cannot tell) an
unset budget is ``CPU_DEFAULT_BYTES``, the size both had before they followed the device.
Neither budget changes a result in exact numerics (a sample's scores and tokens do not
depend on what else is stored or decoding), so they are neutral for a run's identity.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)

CPU_DEFAULT_BYTES = 1 << 30
# Each unset budget's share of the device's free memory at model load.
FREE_SHARE = 0.25
# Never less than this from the free memory (a nearly full device still gets a store).
MIN_AUTO_BYTES = 1 << 26

_logged: set[tuple[str, int, int]] = set()  # budgets logged already (once per choice)


@dataclass(frozen=True)
class MemoryBudgets:
    """The two budgets in bytes, and where the unset ones came from."""

    cache_bytes: int
    kv_bytes: int
    source: str  # "given", or how an unset budget was chosen


def model_device(model: Any) -> torch.device:
    """Where the model's first weights sit: with layers on several devices
    (``parallelize=True``) the embedding's, where the stores' first positions live."""
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):  # a stand-in without weights
        return torch.device("cpu")


def free_device_bytes(device: Any) -> int | None:
    """Free bytes on ``device`` when it is a CUDA device, else None."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def resolve_budgets(device: Any, cache_bytes: int | None,
                    kv_bytes: int | None) -> MemoryBudgets:
    """The budgets for a model on ``device``: given values unchanged, unset (None) ones
    from the device's free memory (CUDA) or ``CPU_DEFAULT_BYTES``. Logs the choice once."""
    if cache_bytes is not None and kv_bytes is not None:
        return MemoryBudgets(cache_bytes, kv_bytes, "given")
    free = free_device_bytes(device)
    if free is None:
        auto, source = CPU_DEFAULT_BYTES, f"{torch.device(device).type}: 1 GiB each"
    else:
        auto = max(int(free * FREE_SHARE), MIN_AUTO_BYTES)
        source = f"{FREE_SHARE:g} of {free / 2**30:.1f} GiB free on {device} each"
    budgets = MemoryBudgets(auto if cache_bytes is None else cache_bytes,
                            auto if kv_bytes is None else kv_bytes, source)
    key = (source, budgets.cache_bytes, budgets.kv_bytes)
    if key not in _logged:
        _logged.add(key)
        logger.info("memory budgets: prefix_cache_bytes=%d%s, generation_kv_bytes=%d%s "
                    "(unset ones: %s)", budgets.cache_bytes,
                    "" if cache_bytes is None else " (given)", budgets.kv_bytes,
                    "" if kv_bytes is None else " (given)", source)
    return budgets
