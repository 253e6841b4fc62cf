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

import logging
import os
from dataclasses import dataclass
from typing import Any

from lm_eval_cola.errors import UserError

logger = logging.getLogger(__name__)


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


def adopt_launch_ranks(lm: Any) -> None:
    """HFLM turns data parallel on only with several visible GPUs and numbers ranks by the
    node-local index: one GPU per process, CPU processes (gloo) and several nodes would
    search samples twice into colliding records files. Give ``lm`` (an HFLM) the launch's
    global rank and world size (``launch_ranks``) so each rank searches its share."""
    from lm_eval_cola.compat.lm_eval_private import set_data_parallel

    accelerator = getattr(lm, "accelerator", None)
    launched = launch_ranks(accelerator)
    if accelerator is None and launched.world_size > 1 and lm.device.type == "cpu":
        raise UserError(
            f"launched as {launched.world_size} processes (WORLD_SIZE="
            f"{launched.world_size}) but accelerate does not split them on CPU, so each "
            "would search every sample into the same records; set ACCELERATE_USE_CPU=true "
            "(allowed: that, or one process)")
    if accelerator is None or launched.world_size <= 1:
        return  # one process, or no accelerate to gather through (tp_plan: all ranks alike)
    if (lm.rank, lm.world_size) != (launched.rank, launched.world_size):
        logger.info("data parallel rank %d of %d (from %s)", launched.rank,
                    launched.world_size, launched.source)
        set_data_parallel(lm, launched.rank, launched.world_size)
