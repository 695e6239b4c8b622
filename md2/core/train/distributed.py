"""Data-parallel training on several GPUs or machines through torch.distributed, launched with torchrun.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; md2 then joins the process group (NCCL on CUDA, gloo on the
CPU), wraps every network in DistributedDataParallel and gives each process its own shard of every epoch.
Gradients are averaged over processes, so N processes with --batch-size B train like one process with a
batch of N x B (BatchNorm statistics stay per process, as on the reference's single GPU). Only rank 0 logs
and saves. Every function here is a collective: all ranks call it at the same point of the loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from md2.core.inference import resolve_device
from md2.errors import UsageError

NO_BAD_STEP = 2**62
"""Stand-in for "no non-finite loss yet" in :func:`first_bad_step` (the minimum over ranks is taken)."""


@dataclass(frozen=True)
class Placement:
    """Where this process runs: its rank among ``world_size`` processes and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: str | None = None) -> int:
    value = os.environ.get(name, default)
    if value is None:
        raise UsageError(f"WORLD_SIZE is set but {name} is not: launch distributed training with torchrun")
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name} must be an integer, got {value!r}") from None


def setup(device_name: str = "auto") -> Placement:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise one process on
    ``device_name``. On CUDA each process takes the GPU numbered by its LOCAL_RANK."""
    world_size = _env_int("WORLD_SIZE", "1")
    device = resolve_device(device_name)
    if world_size <= 1:
        return Placement(0, 1, 0, device)
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK", "0")
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Placement(rank, world_size, local_rank, device)


def teardown(placement: Placement) -> None:
    if placement.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap(models: nn.ModuleDict, placement: Placement) -> nn.ModuleDict:
    """Each network in DistributedDataParallel; the same ModuleDict when alone.

    ``find_unused_parameters`` stays off (it costs a graph traversal every step): every trainable parameter
    of every network takes part in every step's loss (tested for every variant); the encoders' unused ImageNet
    classifier is frozen, so DDP does not wait for its gradient.
    """
    if not placement.distributed:
        return models
    ids = [placement.device.index] if placement.device.type == "cuda" else None
    return nn.ModuleDict({name: nn.parallel.DistributedDataParallel(module, device_ids=ids)
                          for name, module in models.items()})


def first_bad_step(bad_step: torch.Tensor, placement: Placement) -> int:
    """The smallest ``bad_step`` over all processes, as a Python int (one host synchronisation)."""
    value = bad_step.detach().clone()
    if placement.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return int(value)


def mean_over_ranks(values: dict[str, torch.Tensor], placement: Placement) -> dict[str, torch.Tensor]:
    """Each 0-d tensor averaged over all processes (for logging the whole batch's losses)."""
    if not placement.distributed:
        return values
    names = sorted(values)
    stacked = torch.stack([values[name].detach().float() for name in names])
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
    stacked /= placement.world_size
    return dict(zip(names, stacked.unbind()))


def gather(value: object, placement: Placement) -> list:
    """``value`` of every rank, in rank order (picklable objects, e.g. random generator states)."""
    if not placement.distributed:
        return [value]
    gathered: list = [None] * placement.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(placement: Placement) -> None:
    if placement.distributed:
        dist.barrier()
