"""Process setup for training and retraining: one plain process, or DDP under `torchrun`.

`torchrun` sets WORLD_SIZE / RANK / LOCAL_RANK; then the process group uses NCCL on GPUs and gloo
on CPUs. Without them (or with WORLD_SIZE=1) nothing distributed is touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ProcessInfo:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(device: str = "auto") -> ProcessInfo:
    """Join torchrun's process group when there is one; pick this process's device.

    `device` is "auto" (CUDA when available), "cpu" or "cuda" (an error without CUDA).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda" and not torch.cuda.is_available():
        from dnatool.errors import RunFailure

        raise RunFailure("device 'cuda' requested but CUDA is not available on this machine")
    cuda = device != "cpu" and torch.cuda.is_available()
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world <= 1:
        return ProcessInfo(0, 1, 0, device)
    import torch.distributed as dist

    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return ProcessInfo(dist.get_rank(), dist.get_world_size(), local, device, owns)


@contextmanager
def joined(device: str = "auto") -> Iterator[ProcessInfo]:
    """`setup` for the length of a job, then `teardown` however the job ends."""
    info = setup(device)
    try:
        yield info
    finally:
        teardown(info)


def teardown(info: ProcessInfo) -> None:
    if info.owns_group:
        import torch.distributed as dist

        dist.destroy_process_group()


def all_sum(values: list[float], info: ProcessInfo) -> list[float]:
    """Sum a few numbers over all processes (validation counts, losses)."""
    if not info.distributed:
        return values
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_object(value: object, info: ProcessInfo) -> object:
    """Rank 0's `value` on every process (a decision only rank 0 computes, like a rating)."""
    if not info.distributed:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: ProcessInfo) -> None:
    if info.distributed:
        import torch.distributed as dist

        dist.barrier()


def wrap(
    model: torch.nn.Module, info: ProcessInfo, find_unused_parameters: bool = False
) -> torch.nn.Module:
    """DistributedDataParallel around `model` under torchrun; the model itself otherwise.

    Supernet steps use only the sampled path's ops, hence `find_unused_parameters` there.
    """
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(
        model, device_ids=ids, find_unused_parameters=find_unused_parameters
    )
