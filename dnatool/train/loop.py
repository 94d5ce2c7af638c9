"""The per-block training loop: one teacher pass per batch feeds every block; checkpoints per
block after every epoch (atomic), `resume` continues a killed run, events go to `report`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from dnatool.config import to_dict
from dnatool.errors import BadInput
from dnatool.train.curves import write_curves
from dnatool.train.dna import AllCells, dna_step
from dnatool.train.recipe import TrainRecipe
from dnatool.train.setup import Setup, block_checkpoint, build_setup, write_teacher_cut
from dnatool.utils import io, runs
from dnatool.utils.distributed import ProcessInfo, barrier, teardown, wrap
from dnatool.utils.distributed import setup as setup_process

Report = Callable[..., None]


class BlockTrainer:
    """Optimiser, schedule, path generator and history of one block (its checkpoint content)."""

    def __init__(self, setup: Setup, k: int, device: torch.device, dist: ProcessInfo) -> None:
        recipe = setup.recipe
        self.k, self.block = k, setup.supernet.blocks[k].to(device)
        lr = recipe.block_lr(k, len(setup.space.blocks))
        self.optimizer = torch.optim.Adam(
            self.block.parameters(), lr=lr, weight_decay=recipe.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(
            self.optimizer, gamma=recipe.lr_decay
        )
        self.generator = torch.Generator().manual_seed(recipe.seed * 1000 + k)
        self.epoch, self.history = 0, []
        step = AllCells(self.block)
        self.step_module = (
            step
            if recipe.distributed == "blocks"
            else wrap(step, dist, find_unused_parameters=True)
        )
        self._sums: list[float] = [0.0] * len(self.block.cells)
        self._count = 0

    def step(self, x: torch.Tensor, target: torch.Tensor) -> list[float]:
        losses = dna_step(self.step_module, self.block, x, target, self.generator, self.optimizer)
        self._sums = [s + v for s, v in zip(self._sums, losses, strict=True)]
        self._count += 1
        return losses

    def end_epoch(self) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        self.history += [
            [self.epoch, c, s / max(1, self._count), lr] for c, s in enumerate(self._sums)
        ]
        self._sums, self._count = [0.0] * len(self.block.cells), 0
        self.scheduler.step()
        self.epoch += 1

    def state(self) -> dict[str, Any]:
        return {
            "block": self.k,
            "epoch": self.epoch,
            "history": self.history,
            "state_dict": {k: v.detach().cpu() for k, v in self.block.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load(self, data: dict[str, Any]) -> None:
        self.block.load_state_dict(data["state_dict"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        self.generator.set_state(data["generator"])
        self.epoch, self.history = int(data["epoch"]), list(data["history"])


def owned_blocks(num_blocks: int, dist: ProcessInfo, mode: str) -> list[int]:
    """All blocks (data parallel) or block k on rank k % world (blocks on different ranks)."""
    if mode == "blocks" and dist.distributed:
        return [k for k in range(num_blocks) if k % dist.world == dist.rank]
    return list(range(num_blocks))


def _loader(setup: Setup, dist: ProcessInfo, epoch: int) -> DataLoader:
    recipe = setup.recipe
    data = setup.splits.train
    if dist.distributed and recipe.distributed == "data":
        sampler = DistributedSampler(
            data, num_replicas=dist.world, rank=dist.rank, seed=recipe.seed
        )
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(data, generator=torch.Generator().manual_seed(recipe.seed + epoch))
    return DataLoader(
        data,
        batch_size=recipe.batch_size,
        sampler=sampler,
        num_workers=recipe.workers,
        drop_last=len(data) >= recipe.batch_size * 2,
    )


def run_train(
    recipe: TrainRecipe, out: str | Path, report: Report | None = None, resume: bool = False
) -> dict[str, Any]:
    """Train every block of the supernet; returns the final per-block losses."""
    report = report or (lambda event, **fields: None)
    out = Path(out)
    dist = setup_process(recipe.device)
    try:
        return _train(recipe, out, report, resume, dist, dist.device)
    finally:
        teardown(dist)


def _train(
    recipe: TrainRecipe,
    out: Path,
    report: Report,
    resume: bool,
    dist: ProcessInfo,
    device: torch.device,
) -> dict[str, Any]:
    existing = sorted((out / "supernet").glob("block_*.pt"))
    if existing and not resume:
        raise BadInput(
            f"{out} already holds supernet checkpoints: pass --resume or choose another --out"
        )
    setup = build_setup(recipe)
    setup.teacher.to(device)
    trainers = {
        k: BlockTrainer(setup, k, device, dist)
        for k in owned_blocks(len(setup.space.blocks), dist, recipe.distributed)
    }
    for k, trainer in trainers.items():
        if block_checkpoint(out, k).is_file():
            trainer.load(io.load_checkpoint(block_checkpoint(out, k), "supernet_block"))
    if dist.is_main:
        runs.start_run(
            out,
            "train",
            to_dict(recipe),
            inputs=[recipe.data] if Path(recipe.data).is_file() else [],
        )
        write_teacher_cut(out, setup.teacher)
    report(
        "log",
        message=f"teacher: {setup.teacher.name}; cut: "
        + ", ".join(
            f"block {c['block']} <- stage {c['teacher_stage']} {'x'.join(map(str, c['shape']))}"
            for c in setup.teacher.cut.describe()
        ),
        always=True,
    )
    start = min(t.epoch for t in trainers.values())
    steps = _steps_per_epoch(setup, dist)
    report("start", task="train", total=steps * (recipe.epochs - start))
    began = time.time()
    for epoch in range(start, recipe.epochs):
        _epoch(setup, trainers, dist, device, epoch, steps, report)
        for k, trainer in trainers.items():
            if trainer.epoch == epoch + 1:
                io.save_checkpoint(block_checkpoint(out, k), "supernet_block", trainer.state())
        barrier(dist)
        if dist.is_main:
            write_curves(out, len(setup.space.blocks))
    results = _final(out, setup, trainers, dist, time.time() - began)
    return results


def _steps_per_epoch(setup: Setup, dist: ProcessInfo) -> int:
    steps = len(_loader(setup, dist, 0))
    cap = setup.recipe.max_steps_per_epoch
    return min(steps, cap) if cap else steps


def _epoch(
    setup: Setup,
    trainers: dict[int, BlockTrainer],
    dist: ProcessInfo,
    device: torch.device,
    epoch: int,
    steps: int,
    report: Report,
) -> None:
    active = {k: t for k, t in trainers.items() if t.epoch == epoch}
    for t in active.values():
        t.block.train()
    for step, (images, _) in enumerate(_loader(setup, dist, epoch)):
        if step >= steps:
            break
        images = images.to(device, non_blocking=True)
        targets = setup.teacher(images)
        inputs = [images, *targets[:-1]]
        losses = {k: t.step(inputs[k], targets[k]) for k, t in active.items()}
        status = " ".join(f"b{k}:{sum(v) / len(v):.3g}" for k, v in losses.items())
        report("advance", task="train", status=f"epoch {epoch + 1} {status}")
    for t in active.values():
        t.end_epoch()
    report("log", message=f"epoch {epoch + 1}/{setup.recipe.epochs} done")


def _final(
    out: Path, setup: Setup, trainers: dict[int, BlockTrainer], dist: ProcessInfo, seconds: float
) -> dict[str, Any]:
    if dist.distributed:
        _write_rank_checksums(out, dist, trainers)
    results = {
        "epochs": setup.recipe.epochs,
        "seconds": round(seconds, 2),
        "final_loss": {
            str(k): [h[2] for h in t.history if h[0] == t.epoch - 1] for k, t in trainers.items()
        },
    }
    if dist.is_main:
        outputs = [str(block_checkpoint(Path("."), k)) for k in range(len(setup.space.blocks))]
        runs.finish_run(
            out, outputs + ["teacher.json", "curves/loss.csv", "curves/loss.png"], results
        )
    return results


def _write_rank_checksums(run: Path, dist: ProcessInfo, trainers: dict[int, BlockTrainer]) -> None:
    """Each rank records a checksum of its blocks' weights, so a test can prove ranks agree."""
    sums = {
        str(k): float(sum(p.detach().double().abs().sum() for p in t.block.parameters()))
        for k, t in trainers.items()
    }
    io.write_json(
        run / "ranks" / f"rank_{dist.rank}.json",
        {"rank": dist.rank, "world": dist.world, "checksums": sums},
    )
