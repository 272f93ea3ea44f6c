"""Where this process stands in a run: one process, or a rank of a ``torchrun`` job.

Under ``torchrun`` (WORLD_SIZE > 1) the ranks join one process group (gloo on CPU, NCCL on
GPU); everything else in the harness asks a :class:`Dist` instead of the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist

from hcm.core.device import resolve_device

T = TypeVar("T")


@dataclass
class Dist:
    """This process's place in a (possibly one-process) run."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_name: str) -> Dist:
    """Join the process group started by torchrun (WORLD_SIZE > 1), else a one-process run."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), device)
    return Dist(0, 1, device)


def gather(d: Dist, value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (a one-element list in a one-process run)."""
    if d.world == 1:
        return [value]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, value)
    return out


def max_over_ranks(values: list[float], d: Dist) -> list[float]:
    """The element-wise maximum of ``values`` over every rank, in one all-reduce (flags all ranks act on)."""
    if d.world == 1:
        return list(values)
    flags = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return flags.tolist()


def agreed(make: Callable[[], T]) -> T:
    """``make()`` on rank 0, its result shared with every rank (e.g. a new run folder)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return make()
    box = [make() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()
