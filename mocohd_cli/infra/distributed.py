"""Process groups: the same command runs alone or under torchrun (training data-parallel; sampling
and evaluation with their batches dealt over the ranks).

Under `torchrun` (RANK / WORLD_SIZE / LOCAL_RANK in the environment) a process group is
started: NCCL when training on CUDA, gloo on the CPU. Each process then drives one device;
only rank 0 writes files.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
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


# -- work split over ranks -------------------------------------------------------------------------
# `mocohd sample` and `mocohd eval` deal their batches round-robin: batch k is rank k % world_size's.
# A batch is the same videos whatever the number of ranks (its composition is fixed by the batch
# size alone), so every rank computes exactly the bytes one process would, and rank 0 puts the
# gathered batches back in their global order before it accumulates or writes anything.
Share = tuple[int, int]  # (rank, world_size): which of the dealt batches are this process's
ALONE: Share = (0, 1)


def share_of(context: DistContext | None) -> Share:
    return ALONE if context is None else (context.rank, context.world_size)


def is_mine(index: int, share: Share | None) -> bool:
    """Whether batch `index` (in the global order) is this process's."""
    rank, world = share or ALONE
    return index % world == rank


_PLAIN = (type(None), bool, int, float, str)


def _check_plain(value) -> None:
    """Only plain data (None, bool, int, float, str in lists, tuples and str-keyed dicts) goes through
    torch's object collectives: they pickle, and nothing else is ever unpickled."""
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_plain(item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"gather_plain takes str keys, got {type(key).__name__}")
            _check_plain(item)
        return
    raise TypeError(f"gather_plain takes plain data only, got {type(value).__name__} (send tensors with "
                    "gather_batches)")


def gather_plain(context: DistContext | None, value) -> list | None:
    """Every rank's `value` (plain data only), in rank order, on rank 0; None on the other ranks."""
    _check_plain(value)
    if context is None or not context.enabled:
        return [value]
    values = [None] * context.world_size
    dist.all_gather_object(values, value)
    return values if context.is_main else None


def dealt_order(per_rank: list[list]) -> list:
    """The batches of every rank (rank r's list holds batches r, r + W, r + 2W, ...) in the global
    order 0, 1, 2, ..."""
    world, total = len(per_rank), sum(len(items) for items in per_rank)
    return [per_rank[k % world][k // world] for k in range(total)]


def gather_batches(context: DistContext | None, batches: list[torch.Tensor]) -> list[torch.Tensor] | None:
    """The tensors every rank made for its dealt batches, in the global batch order, on rank 0
    (None on the others; alone: `batches` itself). Tensors travel as raw bytes (a gloo gather),
    never pickled; their shapes and dtype travel as plain data."""
    if context is None or not context.enabled:
        return list(batches)
    batches = [b.detach().cpu().contiguous() for b in batches]
    metas = gather_plain_all(context, [[list(b.shape) for b in batches],
                                       str(batches[0].dtype).removeprefix("torch.") if batches else None])
    names = {name for _, name in metas if name is not None}
    if len(names) > 1:
        raise MocohdError(f"the ranks made tensors of different types ({', '.join(sorted(names))})")
    dtype = getattr(torch, names.pop()) if names else torch.float32
    sizes = [sum(math.prod(shape) for shape in shapes) for shapes, _ in metas]
    longest = max(1, *sizes)  # gloo wants the same (non-empty) size from every rank
    # NCCL moves only GPU tensors (gloo: CPU ones)
    device = context.device if context.device.type == "cuda" else torch.device("cpu")
    flat = torch.zeros(longest, dtype=dtype)
    if batches:
        flat[:sizes[context.rank]] = torch.cat([b.reshape(-1) for b in batches])
    received = ([torch.empty(longest, dtype=dtype, device=device) for _ in range(context.world_size)]
                if context.is_main else None)
    dist.gather(flat.to(device), received, dst=0)
    if not context.is_main:
        return None
    per_rank = []
    for (shapes, _), size, data in zip(metas, sizes, (data.cpu() for data in received)):
        parts = data[:size].split([math.prod(shape) for shape in shapes]) if shapes else []
        per_rank.append([part.reshape(shape) for part, shape in zip(parts, shapes)])
    return dealt_order(per_rank)


def gather_plain_all(context: DistContext, value) -> list:
    """Every rank's `value` (plain data only), in rank order, on every rank."""
    _check_plain(value)
    values = [None] * context.world_size
    dist.all_gather_object(values, value)
    return values


class RankFailed(MocohdError):
    """An unexpected error on one rank of a torchrun job (not the user's input: exit code 1)."""

    exit_code = 1


@contextmanager
def rank_failures(context: DistContext):
    """Under torchrun, an error on any rank names the rank in its one message (a MocohdError keeps
    its exit code 2, anything else becomes RankFailed, exit 1, its traceback chained for --debug);
    the failing process then exits, and torchrun stops the other ranks at once (they would
    otherwise wait for it in their next collective). A rank whose collective broke because another
    rank went away says only that. Alone, errors pass unchanged."""
    try:
        yield
    except MocohdError as exc:
        if context.enabled:
            exc.message = f"rank {context.rank} of {context.world_size}: {exc.message}"
            exc.args = (exc.render(),)
        raise
    except Exception as exc:
        if not context.enabled:
            raise
        where = f"rank {context.rank} of {context.world_size}"
        if isinstance(exc, dist.DistError) or "gloo" in str(exc).lower() or "connection" in str(exc).lower():
            raise RankFailed(f"{where} stopped: another rank left the job ({type(exc).__name__})",
                             fix="see the other rank's error above") from exc
        raise RankFailed(f"{where} failed: {type(exc).__name__}: {exc}",
                         fix="rerun with `mocohd --debug ...` for the traceback") from exc
