"""torchrun integration: DDP data parallelism (gloo on CPU, NCCL on GPU) or blocks per rank."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as td

    if not td.is_initialized():
        td.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
    return Dist(rank=td.get_rank(), world=td.get_world_size(), local_rank=local)


def barrier(dist: Dist) -> None:
    if dist.enabled:
        import torch.distributed as td

        td.barrier()


def shutdown(dist: Dist) -> None:
    if dist.enabled:
        import torch.distributed as td

        td.destroy_process_group()


def pick_device(requested: str, dist: Dist) -> str:
    if requested == "cpu" or requested == "auto" and not torch.cuda.is_available():
        return "cpu"
    if not torch.cuda.is_available():
        from dnatool.errors import RunFailure

        raise RunFailure("device 'cuda' requested but CUDA is not available on this machine")
    return f"cuda:{dist.local_rank}"


def write_rank_checksums(run, dist: Dist, trainers: dict) -> None:
    """Each rank records a checksum of its blocks' weights, so a test can prove ranks agree."""
    from pathlib import Path

    from dnatool.utils import io

    sums = {str(k): float(sum(p.detach().double().abs().sum() for p in t.block.parameters()))
            for k, t in trainers.items()}
    io.write_json(Path(run) / "ranks" / f"rank_{dist.rank}.json", {"rank": dist.rank, "world": dist.world,
                                                                   "checksums": sums})
