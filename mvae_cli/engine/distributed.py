"""Data parallelism for the one training loop: ranks, sharding, gradient reduction, launch.

Every rank holds the whole model and the whole dataset split; each step's global batch
(``recipe.batch_size`` rows of the epoch's shuffled order, the same on every rank) is cut
into ``world.size`` contiguous shards, one per rank. Each rank weights its mean loss by its
share of the batch, and the gradients are summed over ranks, so the step equals the
single-process step on the combined batch (up to the order of floating-point sums).
Rank 0 alone validates and writes checkpoints and metrics.

Launch is torchrun-style: ``MASTER_ADDR``/``MASTER_PORT``/``RANK``/``WORLD_SIZE``/
``LOCAL_RANK`` in the environment (``torchrun`` sets them; :func:`launch` does too, with the
calling process as rank 0 and ``nproc - 1`` spawned ranks). gloo on CPU, NCCL on CUDA.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


# Rank 0 validates and writes checkpoints while the others wait in the next collective.
TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class World:
    """This process's place among the ranks; ``World()`` is a single process."""

    rank: int = 0
    size: int = 1

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def current_world() -> World:
    """The initialised process group's rank and size, or a single process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def shard(index: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's contiguous part of a global batch ``long[B]`` (sizes differ by at most one)."""
    return torch.tensor_split(index, world.size)[world.rank] if world.active else index


def broadcast_parameters(model: torch.nn.Module, world: World) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if world.active:
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)


def all_reduce_gradients(model: torch.nn.Module, world: World) -> None:
    """Sum every parameter's gradient over the ranks, in one flat buffer.

    A parameter no rank touched keeps ``grad = None`` (so Adam skips it, as it would in one
    process); one touched on some ranks only counts zeros for the others.
    """
    if not world.active:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params] + [has])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        p.grad = flat[offset:offset + p.numel()].view_as(p).clone()
        offset += p.numel()
    for p, touched in zip(params, flat[offset:].tolist()):
        if touched == 0:
            p.grad = None


def all_reduce_sum(values: torch.Tensor, world: World) -> torch.Tensor:
    """``values`` summed over the ranks (returned as is in one process)."""
    if world.active:
        values = values.clone()
        dist.all_reduce(values)
    return values


def gather_objects(value: Any, world: World) -> list[Any]:
    """``[value of rank 0, value of rank 1, …]`` on every rank."""
    if not world.active:
        return [value]
    out = [None] * world.size
    dist.all_gather_object(out, value)
    return out


def backend_for(device_type: str) -> str:
    return "nccl" if device_type == "cuda" else "gloo"


def init_from_env(device_type: str) -> World:
    """Join the process group described by the torchrun environment variables (if any)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or (dist.is_available() and dist.is_initialized()):
        return current_world()
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend_for(device_type), timeout=TIMEOUT)
    return current_world()
