"""Process groups for data-parallel training: the same command runs alone or under torchrun.

Under `torchrun` (RANK / WORLD_SIZE / LOCAL_RANK in the environment) a process group is
started: NCCL when training on CUDA, gloo on the CPU. Each process then drives one device;
only rank 0 writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .device import resolve_device
from .errors import MocohdError


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, value):
        """Rank 0's value of a picklable object (a path, a dict of settings), on every rank."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_agree(self, flag: bool) -> bool:
        """True only if `flag` is true on every rank (e.g. 'my data loaded')."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item())


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: str = "auto") -> DistContext:
    """Start the process group when launched by torchrun; otherwise a single-process context."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistContext(0, 1, 0, resolve_device(device))
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise MocohdError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible)",
                              fix="use --nproc_per_node <= the number of GPUs, or --device cpu")
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    return DistContext(rank, world_size, local_rank, resolved)


def shutdown(context: DistContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
