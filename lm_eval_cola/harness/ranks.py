"""This process's place in a data-parallel launch, from the launch itself, not device counts.

lm-eval's HFLM turns data parallel on only when it sees several devices, and numbers ranks by
accelerate's *local* process index. Two launches then go wrong: one visible GPU per process
(a scheduler setting ``CUDA_VISIBLE_DEVICES`` per rank) gives every rank world size 1, so each
searches every sample into the same records file; and over several nodes two processes share
a local index, so their records files get one name. The global rank and the world size come
instead from torch.distributed when it is initialised, else accelerate's state, else the
launcher's ``RANK``/``WORLD_SIZE``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from lm_eval_cola.errors import UserError


@dataclass(frozen=True)
class LaunchRanks:
    """A process's global ``rank`` among ``world_size``, and where they were read."""

    rank: int
    world_size: int
    source: str


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"{name}={text!r} is not a whole number; the launcher sets it to "
                        "this process's place (allowed: a whole number >= 0)") from None
    if value < 0:
        raise UserError(f"{name}={value} is negative; allowed: a whole number >= 0")
    return value


def launch_ranks(accelerator: Any = None) -> LaunchRanks:
    """The global rank and world size of this process (``accelerator``: accelerate's
    Accelerator or PartialState, when the model has one)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return LaunchRanks(dist.get_rank(), dist.get_world_size(), "torch.distributed")
    if accelerator is not None and int(getattr(accelerator, "num_processes", 1)) > 1:
        return LaunchRanks(int(accelerator.process_index), int(accelerator.num_processes),
                           "accelerate")
    world_size = max(_env_int("WORLD_SIZE", 1), 1)
    rank = _env_int("RANK", 0)
    if rank >= world_size:
        raise UserError(f"RANK={rank} but WORLD_SIZE={world_size}; allowed: a RANK below "
                        "WORLD_SIZE")
    return LaunchRanks(rank, world_size, "environment")
