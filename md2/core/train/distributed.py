"""Multi-GPU / multi-node data parallelism through torch.distributed, launched with torchrun.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; md2 then joins the process group (NCCL on CUDA, gloo on the CPU),
wraps the models in DistributedDataParallel and shards the data. Only rank 0 logs and saves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from md2.core.inference import resolve_device


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


def setup(device_name: str = "auto") -> Placement:
    """Join the process group when launched by torchrun; otherwise a single process on ``device_name``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Placement(0, 1, 0, resolve_device(device_name))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
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
    """Each network in DistributedDataParallel (gradients averaged over processes); unchanged alone."""
    if not placement.distributed:
        return models
    ids = [placement.device.index] if placement.device.type == "cuda" else None
    return nn.ModuleDict({name: nn.parallel.DistributedDataParallel(module, device_ids=ids)
                          for name, module in models.items()})


def all_ranks_finite(loss: torch.Tensor, placement: Placement) -> bool:
    """True when the loss is finite on every process (one host sync: the caller decides how often)."""
    flag = torch.isfinite(loss.detach()).float()
    if placement.distributed:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())
