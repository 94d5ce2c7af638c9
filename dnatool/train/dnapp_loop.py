"""`dnatool train` for `method: dna++`: DNA's block-wise supernet trained without labels.

Each step draws two views of the batch (`dnapp.two_views`, seeded per epoch). The teacher runs
once on both views: its view-A stage outputs are the targets (through each block's teacher
projector, Z) and its view-B outputs, detached, are the blocks' inputs, as in DNA. Every cell of
block k samples one path and its output goes through the block's student projector (Z-hat); the
loss is `dnapp.ssl_loss` summed over cells and blocks. The teacher trains jointly with the
supernet (the paper) unless `train_teacher: false`. LARS (timm) with a linear warm-up and cosine
decay per step, for every block, projector and the teacher.

Checkpoints are DNA's (`RUN/supernet/block_k.pt`, with the projectors inside) plus
`RUN/supernet/teacher.pt` (the teacher's weights and optimiser) when it trains; `--resume`
continues from them. Data-parallel `torchrun` wraps the whole step in DDP.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dnatool.nn.teacher import stage_outputs
from dnatool.train.curves import write_curves
from dnatool.train.dnapp import DnappRecipe, Projector, cosine_factor, lars_lr, ssl_loss, two_views
from dnatool.train.loop import _loader, _steps_per_epoch, global_start_epoch, save_epoch
from dnatool.train.resume import STAGE, check_run_dir, check_world, train_inputs
from dnatool.train.setup import (
    SUPERNET_DIR,
    Setup,
    block_checkpoint,
    build_setup,
    write_teacher_cut,
)
from dnatool.utils import io, runs
from dnatool.utils.distributed import ProcessInfo, barrier, joined
from dnatool.utils.events import Report, quiet
from dnatool.utils.locks import locked

TEACHER_CHECKPOINT = "teacher.pt"


def _lars(params: list[nn.Parameter], recipe: DnappRecipe) -> torch.optim.Optimizer:
    from timm.optim import Lars

    lr = lars_lr(recipe.lr_per_256, recipe.batch_size)
    return Lars(params, lr=lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)


def _schedule(optimizer: torch.optim.Optimizer, recipe: DnappRecipe, steps: int) -> Any:
    total, warmup = steps * recipe.epochs, steps * recipe.warmup_epochs
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: cosine_factor(step, total, warmup)
    )


class DnappBlockTrainer:
    """Block k's supernet block, its two projectors, optimiser, schedule and path generator."""

    def __init__(self, setup: Setup, k: int, device: torch.device, steps: int) -> None:
        recipe: DnappRecipe = setup.recipe  # type: ignore[assignment]
        self.k, self.block = k, setup.supernet.blocks[k].to(device)
        width = setup.teacher.cut.shapes[k][0]
        with torch.random.fork_rng(devices=[]):  # seeded, per block
            torch.manual_seed(recipe.seed * 1000 + 500 + k)
            self.proj_s = Projector(width, recipe.proj_hidden, recipe.proj_out).to(device)
            self.proj_t = Projector(width, recipe.proj_hidden, recipe.proj_out).to(device)
        modules = (self.block, self.proj_s, self.proj_t)
        self.optimizer = _lars([p for m in modules for p in m.parameters()], recipe)
        self.scheduler = _schedule(self.optimizer, recipe, steps)
        self.generator = torch.Generator().manual_seed(recipe.seed * 1000 + k)
        self.weights = recipe.weights
        self.epoch, self.history = 0, []
        self._sums: list[float] = [0.0] * len(self.block.cells)
        self._count = 0

    def loss(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
        """Sum over cells of the SSL loss of one sampled path each against the teacher's Z."""
        paths = [cell.sample_path(self.generator) for cell in self.block.cells]
        shared, z = self.block.prepare(x), self.proj_t(target)
        losses = [
            ssl_loss(z, self.proj_s(cell(shared, path)), self.weights)[0]
            for cell, path in zip(self.block.cells, paths, strict=True)
        ]
        values = [float(v.detach()) for v in losses]
        self._sums = [s + v for s, v in zip(self._sums, values, strict=True)]
        self._count += 1
        return torch.stack(losses).sum(), values

    def end_epoch(self) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        self.history += [
            [self.epoch, c, s / max(1, self._count), lr] for c, s in enumerate(self._sums)
        ]
        self._sums, self._count = [0.0] * len(self.block.cells), 0
        self.epoch += 1

    def state(self) -> dict[str, Any]:
        return {
            "block": self.k,
            "epoch": self.epoch,
            "history": self.history,
            "state_dict": _cpu(self.block.state_dict()),
            "projectors": {
                "student": _cpu(self.proj_s.state_dict()),
                "teacher": _cpu(self.proj_t.state_dict()),
            },
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load(self, data: dict[str, Any]) -> None:
        self.block.load_state_dict(data["state_dict"])
        self.proj_s.load_state_dict(data["projectors"]["student"])
        self.proj_t.load_state_dict(data["projectors"]["teacher"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        self.generator.set_state(data["generator"])
        self.epoch, self.history = int(data["epoch"]), list(data["history"])


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items()}


class TeacherTrainer:
    """The jointly trained teacher: its optimiser and schedule, checkpointed with the blocks."""

    def __init__(self, setup: Setup, steps: int) -> None:
        recipe: DnappRecipe = setup.recipe  # type: ignore[assignment]
        self.model = setup.teacher.model
        self.model.requires_grad_(True)
        self.optimizer = _lars(list(self.model.parameters()), recipe)
        self.scheduler = _schedule(self.optimizer, recipe, steps)
        self.epoch = 0

    def state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "state_dict": _cpu(self.model.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }

    def load(self, data: dict[str, Any]) -> None:
        self.model.load_state_dict(data["state_dict"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        self.epoch = int(data["epoch"])


def teacher_checkpoint(run: Path) -> Path:
    return Path(run) / SUPERNET_DIR / TEACHER_CHECKPOINT


@locked("out")  # one writer per run directory
def run_dnapp(
    recipe: DnappRecipe, out: str | Path, report: Report | None = None, resume: bool = False
) -> dict[str, Any]:
    """Train every block of a DNA++ supernet (and the teacher); returns the final losses."""
    report = report or quiet
    out = Path(out)
    check_world(recipe, int(os.environ.get("WORLD_SIZE", "1")))
    inputs = train_inputs(recipe)
    check_run_dir(out, recipe, inputs, resume)
    with joined(recipe.device) as dist:
        return _train(recipe, out, report, inputs, dist)


def _train(
    recipe: DnappRecipe, out: Path, report: Report, inputs: dict[str, Path], dist: ProcessInfo
) -> dict[str, Any]:
    setup = build_setup(recipe)
    device = dist.device
    setup.teacher.to(device)
    steps = _steps_per_epoch(setup, dist)
    trainers = {
        k: DnappBlockTrainer(setup, k, device, steps) for k in range(len(setup.space.blocks))
    }
    teacher = TeacherTrainer(setup, steps) if recipe.train_teacher else None
    _load(out, trainers, teacher)
    if dist.is_main:
        STAGE.start(out, recipe, inputs, setup.space)
        write_teacher_cut(out, setup)
    start = global_start_epoch(trainers, dist, recipe.epochs)
    report("start", task="train", total=steps * max(0, recipe.epochs - start))
    began = time.time()
    step_module = _StepModule(setup, trainers, teacher)
    wrapped = _wrap(step_module, dist)
    for epoch in range(start, recipe.epochs):
        _epoch(setup, step_module, wrapped, trainers, teacher, dist, epoch, steps, report)
        save_epoch(out, trainers, dist, "data", epoch)
        if teacher is not None and dist.is_main:
            io.save_checkpoint(teacher_checkpoint(out), "dnapp_teacher", teacher.state())
        barrier(dist)
        if dist.is_main:
            write_curves(out, len(setup.space.blocks))
    return _final(out, setup, trainers, dist, time.time() - began)


def _load(
    out: Path, trainers: dict[int, DnappBlockTrainer], teacher: TeacherTrainer | None
) -> None:
    for k, trainer in trainers.items():
        if block_checkpoint(out, k).is_file():
            trainer.load(io.load_checkpoint(block_checkpoint(out, k), "supernet_block"))
    if teacher is not None and teacher_checkpoint(out).is_file():
        teacher.load(io.load_checkpoint(teacher_checkpoint(out), "dnapp_teacher"))


class _StepModule(nn.Module):
    """Everything one step trains, as one module (what DDP wraps): the teacher on both views,
    then every block's cells and projectors; returns the summed loss and per-block cell losses."""

    def __init__(
        self, setup: Setup, trainers: dict[int, DnappBlockTrainer], teacher: TeacherTrainer | None
    ) -> None:
        super().__init__()
        self.setup, self.trainers = setup, trainers
        self.blocks = nn.ModuleList(
            [nn.ModuleList([t.block, t.proj_s, t.proj_t]) for t in trainers.values()]
        )
        self.teacher = setup.teacher.model if teacher is not None else None

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, dict]:
        cut = self.setup.teacher.cut.stages
        if self.teacher is not None:
            self.teacher.train()
            outs = stage_outputs(self.teacher, torch.cat([a, b]), last=max(cut))
            feats = self.setup.teacher.cut.select(outs)
            targets = [f[: len(a)] for f in feats]
            inputs = [b, *(f[len(a) :].detach() for f in feats[:-1])]
        else:
            targets = self.setup.teacher(a)
            inputs = [b, *self.setup.teacher(b)[:-1]]
        total, losses = torch.zeros((), device=a.device), {}
        for k, trainer in self.trainers.items():
            loss, losses[k] = trainer.loss(inputs[k], targets[k])
            total = total + loss
        return total, losses


def _wrap(module: _StepModule, dist: ProcessInfo) -> nn.Module:
    from dnatool.utils.distributed import wrap

    return wrap(module, dist, find_unused_parameters=True)


def _epoch(
    setup: Setup,
    step_module: _StepModule,
    wrapped: nn.Module,
    trainers: dict[int, DnappBlockTrainer],
    teacher: TeacherTrainer | None,
    dist: ProcessInfo,
    epoch: int,
    steps: int,
    report: Report,
) -> None:
    if all(t.epoch > epoch for t in trainers.values()):
        report("advance", task="train", n=steps, status=f"epoch {epoch + 1} already done")
        return
    for t in trainers.values():
        t.block.train(), t.proj_s.train(), t.proj_t.train()
    optimizers = [t.optimizer for t in trainers.values()]
    schedulers = [t.scheduler for t in trainers.values()]
    if teacher is not None:
        optimizers.append(teacher.optimizer)
        schedulers.append(teacher.scheduler)
    views = torch.Generator().manual_seed(setup.recipe.seed * 100_003 + epoch)
    loader, _ = _loader(setup, dist, epoch)
    for step, (images, _) in enumerate(loader):
        if step >= steps:
            break
        a, b = two_views(images.to(dist.device, non_blocking=True), views)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        total, losses = wrapped(a, b)
        total.backward()
        for optimizer, scheduler in zip(optimizers, schedulers, strict=True):
            optimizer.step()
            scheduler.step()
        status = " ".join(f"b{k}:{sum(v) / len(v):.3g}" for k, v in losses.items())
        report("advance", task="train", status=f"epoch {epoch + 1} {status}")
    for t in trainers.values():
        t.end_epoch()
    if teacher is not None:
        teacher.epoch += 1
    report("log", message=f"epoch {epoch + 1}/{setup.recipe.epochs} done")


def _final(
    out: Path,
    setup: Setup,
    trainers: dict[int, DnappBlockTrainer],
    dist: ProcessInfo,
    seconds: float,
) -> dict[str, Any]:
    results = {
        "epochs": setup.recipe.epochs,
        "seconds": round(seconds, 2),
        "final_loss": {
            str(k): [h[2] for h in t.history if h[0] == t.epoch - 1] for k, t in trainers.items()
        },
    }
    if dist.is_main:
        outputs = [str(block_checkpoint(Path("."), k)) for k in range(len(setup.space.blocks))]
        if setup.recipe.train_teacher:
            outputs.append(str(teacher_checkpoint(Path("."))))
        runs.finish_run(
            out, outputs + ["teacher.json", "curves/loss.csv", "curves/loss.png"], results
        )
    return results
