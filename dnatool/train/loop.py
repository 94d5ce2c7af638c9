"""The per-block training loop: one teacher pass per batch feeds every block; checkpoints per
block after every epoch (atomic), `resume` continues a killed run, events go to `report`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from dnatool.data import epoch_loader
from dnatool.errors import BadInput
from dnatool.train.curves import write_curves
from dnatool.train.dna import AllCells, dna_step
from dnatool.train.recipe import TrainRecipe
from dnatool.train.resume import STAGE, check_run_dir, check_world, train_inputs
from dnatool.train.setup import Setup, block_checkpoint, build_setup, write_teacher_cut
from dnatool.utils import io, runs
from dnatool.utils.distributed import ProcessInfo, barrier, joined, wrap
from dnatool.utils.events import Report, quiet
from dnatool.utils.locks import locked

SEEN_RECORDED = 256  # sample indices of the first epoch kept per rank in RUN/ranks/


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
        if dist.world > num_blocks:
            raise BadInput(f"distributed=blocks needs at most {num_blocks} processes")
        return [k for k in range(num_blocks) if k % dist.world == dist.rank]
    return list(range(num_blocks))


def _loader(setup: Setup, dist: ProcessInfo, epoch: int) -> tuple[DataLoader, list[int]]:
    """A DistributedSampler shard in data-parallel mode, the whole seeded permutation otherwise
    (every block rank sees all)."""
    recipe = setup.recipe
    shard = (dist.rank, dist.world) if dist.distributed and recipe.distributed == "data" else None
    return epoch_loader(
        setup.splits.train, recipe.batch_size, recipe.seed, epoch, recipe.workers, shard
    )


@locked("out")  # one writer per run directory
def run_train(
    recipe: TrainRecipe, out: str | Path, report: Report | None = None, resume: bool = False
) -> dict[str, Any]:
    """Train every block of the supernet; returns the final per-block losses.

    The process layout and the run directory are checked before any process group or model is
    set up, so every rank refuses a bad setup alike, with one line.
    """
    report = report or quiet
    out = Path(out)
    check_world(recipe, int(os.environ.get("WORLD_SIZE", "1")))
    inputs = train_inputs(recipe)
    check_run_dir(out, recipe, inputs, resume)
    with joined(recipe.device) as dist:
        return _train(recipe, out, report, inputs, dist, dist.device)


def _train(
    recipe: TrainRecipe,
    out: Path,
    report: Report,
    inputs: dict[str, Path],
    dist: ProcessInfo,
    device: torch.device,
) -> dict[str, Any]:
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
        STAGE.start(out, recipe, inputs, setup.space)
        write_teacher_cut(out, setup)
    _report_setup(setup, report)
    start = global_start_epoch(trainers, dist, recipe.epochs)
    if start >= recipe.epochs:
        report(
            "log", message=f"every block has trained {recipe.epochs} epochs already", always=True
        )
    elif start > 0:
        report("log", message=f"resuming at epoch {start + 1}/{recipe.epochs}", always=True)
    steps = _steps_per_epoch(setup, dist)
    report("start", task="train", total=steps * max(0, recipe.epochs - start))
    began, seen = time.time(), None
    for epoch in range(start, recipe.epochs):
        order = _epoch(setup, trainers, dist, device, epoch, steps, report)
        seen = seen or order
        save_epoch(out, trainers, dist, recipe.distributed, epoch)
        barrier(dist)
        if dist.is_main:
            write_curves(out, len(setup.space.blocks))
    return _final(out, setup, trainers, dist, time.time() - began, start, seen)


def _report_setup(setup: Setup, report: Report) -> None:
    """One line: the teacher, its cut, and how the images are normalised."""
    cut = ", ".join(
        f"block {c['block']} <- stage {c['teacher_stage']} {'x'.join(map(str, c['shape']))}"
        for c in setup.teacher.cut.describe()
    )
    pre = setup.splits.preprocess
    mean, std = ([round(v, 4) for v in pre[key]] for key in ("mean", "std"))
    report(
        "log",
        message=f"teacher: {setup.teacher.name}; cut: {cut}; data mean {mean}, std {std}, "
        f"{pre['interpolation']}, crop {pre['crop_pct']}",
        always=True,
    )


def global_start_epoch(trainers: dict[int, BlockTrainer], dist: ProcessInfo, epochs: int) -> int:
    """The first epoch some block of some rank still has to train (all ranks agree on it).

    Every rank then walks the same epochs and so meets the same barriers, however far each of
    its blocks got before a kill; a block already past an epoch sits it out.
    """
    local = min((t.epoch for t in trainers.values()), default=epochs)
    if not dist.distributed:
        return local
    import torch.distributed as tdist

    value = torch.tensor([local], dtype=torch.int64, device=dist.device)
    tdist.all_reduce(value, op=tdist.ReduceOp.MIN)
    return int(value.item())


def save_epoch(
    out: Path, trainers: dict[int, BlockTrainer], dist: ProcessInfo, mode: str, epoch: int
) -> list[int]:
    """Checkpoint the blocks that just finished `epoch`; returns their indices.

    Blocks mode: each rank writes the blocks it owns. Data parallel: the ranks hold identical
    weights, so only rank 0 writes (the caller's barrier holds the others until it is done).
    """
    if dist.distributed and mode == "data" and not dist.is_main:
        return []
    done = [k for k, t in trainers.items() if t.epoch == epoch + 1]
    for k in done:
        io.save_checkpoint(block_checkpoint(out, k), "supernet_block", trainers[k].state())
    return done


def _steps_per_epoch(setup: Setup, dist: ProcessInfo) -> int:
    steps = len(_loader(setup, dist, 0)[0])
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
) -> list[int] | None:
    """Train the blocks still at `epoch` for one epoch; returns the sample indices fed (the first
    SEEN_RECORDED of them), or None when every block of this process is past `epoch`."""
    active = {k: t for k, t in trainers.items() if t.epoch == epoch}
    if not active:
        report("advance", task="train", n=steps, status=f"epoch {epoch + 1} already done")
        return None
    for t in active.values():
        t.block.train()
    loader, order = _loader(setup, dist, epoch)
    for step, (images, _) in enumerate(loader):
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
    return order[: min(SEEN_RECORDED, steps * setup.recipe.batch_size)]


def _final(
    out: Path,
    setup: Setup,
    trainers: dict[int, BlockTrainer],
    dist: ProcessInfo,
    seconds: float,
    start: int,
    seen: list[int] | None,
) -> dict[str, Any]:
    if dist.distributed:
        _write_rank_record(out, dist, trainers, seen)
    results = {
        "epochs": setup.recipe.epochs,
        "start_epoch": start,
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


def _write_rank_record(
    run: Path, dist: ProcessInfo, trainers: dict[int, BlockTrainer], seen: list[int] | None
) -> None:
    """Each rank records a checksum of its blocks' weights and the first training samples it fed
    in its first epoch, so a test (or a user) can check that ranks agree and how data was split."""
    sums = {
        str(k): float(sum(p.detach().double().abs().sum() for p in t.block.parameters()))
        for k, t in trainers.items()
    }
    io.write_json(
        run / "ranks" / f"rank_{dist.rank}.json",
        {"rank": dist.rank, "world": dist.world, "checksums": sums, "first_samples": seen or []},
    )
