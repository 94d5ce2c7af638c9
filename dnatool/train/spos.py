"""SPOS training (Guo et al., ECCV 2020): the whole-space supernet, one sampled path per step,
cross-entropy on labels, SGD with linear lr decay (the released code's recipe).

Paths come from a generator seeded by (seed, epoch, step), so every DDP rank samples the same path
in a step and a resumed run samples what the killed one would have. `sampling: flops` is the
released code's FLOPs-constrained sampler: pick one of `flops_bins` MACs bins uniformly, then draw
uniform paths until one falls in it (`flops_timeout` tries, then any path). A checkpoint
(`RUN/supernet/spos.pt`, atomic) is written after every epoch; `--resume` continues from it.
"""

from __future__ import annotations

import csv
import io as _io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from dnatool.arch.space import Choice, SearchSpace, load_space
from dnatool.data import Splits, epoch_loader, load_splits
from dnatool.nn.spos import SposSupernet
from dnatool.train.recipe import SposRecipe
from dnatool.train.resume import STAGE, check_run_dir, train_inputs
from dnatool.utils import io, runs
from dnatool.utils.distributed import ProcessInfo, all_sum, barrier, joined, wrap
from dnatool.utils.events import Report, quiet
from dnatool.utils.locks import locked

KIND = "spos_supernet"
CHECKPOINT = Path("supernet") / "spos.pt"
FLOPS_SAMPLES = 1000  # uniform paths whose MACs quantiles give the default bin range
SEEN_RECORDED = 256


def checkpoint_path(run: str | Path) -> Path:
    return Path(run) / CHECKPOINT


def is_spos_run(run: str | Path) -> bool:
    """A training run whose recipe is SPOS's (its manifest says `method: spos`)."""
    return runs.run_method(run) == "spos"


class ChoiceCounts:
    """Params and MACs of whole architectures from the per-layer count grids
    (`search.costs.layer_table`: timm's modules counted on the meta device) plus the fixed part
    per head width; `macs(choices)` is what the FLOPs-bin sampler bins."""

    def __init__(self, space: SearchSpace) -> None:
        from dnatool.search.costs import fixed_params_macs, layer_table

        self.space = space
        self.tables = [layer_table(space, k) for k in range(len(space.blocks))]
        heads = space.in_widths(len(space.blocks))
        self.fixed = {w: np.array(fixed_params_macs(space, w), dtype=np.int64) for w in heads}

    def __call__(self, choices: list[Choice]) -> tuple[int, int]:
        widths = self.space.chain_widths(choices)
        total = self.fixed[widths[-1]].copy()
        for k, (cell, path) in enumerate(choices):
            first, later = self.tables[k]
            total += first[self.space.in_widths(k).index(widths[k]), cell, path[0]]
            for d, op in enumerate(path[1:]):
                total += later[cell, d, op]
        return int(total[0]), int(total[1])

    def macs(self, choices: list[Choice]) -> int:
        return self(choices)[1]


def step_rng(seed: int, epoch: int, step: int) -> np.random.Generator:
    """The generator of one training step's path (the same on every rank and after a resume)."""
    return np.random.default_rng([seed, epoch, step])


def flops_range(
    space: SearchSpace, macs: Callable[[list[Choice]], int], seed: int
) -> tuple[float, float]:
    """The 1%..99% MACs quantiles of uniform paths: bins where uniform sampling can land (the
    released code hard-codes 290-360 MFLOPs for its ImageNet space)."""
    rng = np.random.default_rng([seed, FLOPS_SAMPLES])
    values = [macs(space.sample(rng)) for _ in range(FLOPS_SAMPLES)]
    low, high = np.quantile(values, [0.01, 0.99])
    return float(low), float(high)


def flops_bin_sampler(
    space: SearchSpace,
    macs: Callable[[list[Choice]], int],
    bounds: tuple[float, float],
    bins: int,
    timeout: int,
) -> Callable[[np.random.Generator], list[Choice]]:
    """The released code's `get_uniform_sample_cand`: a uniform bin, uniform paths until one
    lands in it, any path after `timeout` tries."""
    edges = np.linspace(bounds[0], bounds[1], bins + 1)

    def sample(rng: np.random.Generator) -> list[Choice]:
        b = int(rng.integers(bins))
        for _ in range(timeout):
            choices = space.sample(rng)
            if edges[b] <= macs(choices) <= edges[b + 1]:
                return choices
        return space.sample(rng)

    return sample


def path_sampler(
    space: SearchSpace, recipe: SposRecipe, bounds: tuple[float, float] | None
) -> tuple[Callable[[np.random.Generator], list[Choice]], tuple[float, float] | None]:
    """The recipe's sampler and the MACs range its bins span (None for uniform sampling)."""
    if recipe.sampling == "uniform":
        return space.sample, None
    macs = ChoiceCounts(space).macs
    bounds = bounds or (
        tuple(recipe.flops_range) if recipe.flops_range else flops_range(space, macs, recipe.seed)
    )
    return flops_bin_sampler(space, macs, bounds, recipe.flops_bins, recipe.flops_timeout), bounds


@dataclass
class SposSetup:
    recipe: SposRecipe
    space: SearchSpace
    splits: Splits
    supernet: SposSupernet


def build_spos_setup(recipe: SposRecipe, augment: bool = True) -> SposSetup:
    """Space, data (ImageNet's normalisation for an ImageFolder) and the supernet of a recipe,
    initialised from the recipe's seed (the same weights on every rank and every run)."""
    space = load_space(recipe.space)
    splits = load_splits(
        recipe.data,
        recipe.resolution or space.resolution,
        recipe.rate_per_class,
        recipe.seed,
        augment=augment,
    )
    with torch.random.fork_rng(devices=[]):  # the recipe's seed initialises the weights
        torch.manual_seed(recipe.seed)
        supernet = SposSupernet(space, splits.num_classes)
    return SposSetup(recipe, space, splits, supernet)


class SposTrainer:
    """Optimiser and history of the supernet (its checkpoint content)."""

    def __init__(self, setup: SposSetup, device: torch.device, dist: ProcessInfo) -> None:
        from timm.optim import param_groups_weight_decay

        recipe = setup.recipe
        self.model = setup.supernet.to(device)
        self.optimizer = torch.optim.SGD(
            param_groups_weight_decay(self.model, recipe.weight_decay),
            lr=recipe.lr,
            momentum=recipe.momentum,
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        self.step_module = wrap(self.model, dist, find_unused_parameters=True)
        self.epoch, self.history, self.bounds = 0, [], None
        self.sums = np.zeros(3)  # loss * n, correct, n

    def step(self, images: torch.Tensor, labels: torch.Tensor, choices: list[Choice], lr: float):
        """One SGD step on one path. Ops off the path get no gradient (None), so SGD leaves their
        weights and momentum alone, as the released code does."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.step_module(images, choices)
        loss = self.criterion(logits, labels)
        loss.backward()
        self.optimizer.step()
        n = len(labels)
        value = float(loss.detach())
        self.sums += [value * n, float((logits.argmax(1) == labels).sum()), n]
        return value

    def end_epoch(self, lr: float, dist: ProcessInfo) -> None:
        loss, correct, n = all_sum(self.sums.tolist(), dist)
        self.history.append([self.epoch, loss / max(n, 1), 100.0 * correct / max(n, 1), lr])
        self.sums[:] = 0
        self.epoch += 1

    def state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "history": self.history,
            "flops_range": list(self.bounds) if self.bounds else None,
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
        }

    def load(self, data: dict[str, Any]) -> None:
        self.model.load_state_dict(data["state_dict"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.epoch, self.history = int(data["epoch"]), [list(r) for r in data["history"]]
        self.bounds = tuple(data["flops_range"]) if data.get("flops_range") else None


@locked("out")  # one writer per run directory
def run_spos(
    recipe: SposRecipe, out: str | Path, report: Report | None = None, resume: bool = False
) -> dict[str, Any]:
    """Train the SPOS supernet; returns the final loss and train top-1."""
    report = report or quiet
    out = Path(out)
    check_run_dir(out, recipe, train_inputs(recipe), resume)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    with joined(recipe.device) as dist:
        return _train(recipe, out, report, dist)


def _loader(setup: SposSetup, dist: ProcessInfo, epoch: int) -> tuple[DataLoader, list[int]]:
    """A DistributedSampler shard under torchrun, the seeded permutation otherwise."""
    recipe = setup.recipe
    shard = (dist.rank, dist.world) if dist.distributed else None
    return epoch_loader(
        setup.splits.train, recipe.batch_size, recipe.seed, epoch, recipe.workers, shard
    )


def _train(recipe: SposRecipe, out: Path, report: Report, dist: ProcessInfo) -> dict[str, Any]:
    device = dist.device
    setup = build_spos_setup(recipe)
    trainer = SposTrainer(setup, device, dist)
    if checkpoint_path(out).is_file():
        trainer.load(io.load_checkpoint(checkpoint_path(out), KIND))
    sample, trainer.bounds = path_sampler(setup.space, recipe, trainer.bounds)
    if dist.is_main:
        STAGE.start(out, recipe, train_inputs(recipe), setup.space)
    bins = f", MACs bins {trainer.bounds[0]:.4g}..{trainer.bounds[1]:.4g}" if trainer.bounds else ""
    report(
        "log",
        message=f"spos: space {setup.space.name} ({setup.space.distinct:.3g} paths), "
        f"{sum(p.numel() for p in trainer.model.parameters()):,} supernet params, "
        f"{recipe.sampling} sampling{bins}",
        always=True,
    )
    start = trainer.epoch
    if start >= recipe.epochs:
        report(
            "log", message=f"the supernet has trained {recipe.epochs} epochs already", always=True
        )
    elif start > 0:
        report("log", message=f"resuming at epoch {start + 1}/{recipe.epochs}", always=True)
    steps = len(_loader(setup, dist, 0)[0])
    steps = min(steps, recipe.max_steps_per_epoch or steps)
    total = steps * recipe.epochs
    report("start", task="train spos", total=steps * max(0, recipe.epochs - start))
    began, seen = time.time(), None
    for epoch in range(start, recipe.epochs):
        trainer.model.train()
        loader, order = _loader(setup, dist, epoch)
        seen = seen or order[: min(SEEN_RECORDED, steps * recipe.batch_size)]
        lr = recipe.lr
        for step, (images, labels) in enumerate(loader):
            if step >= steps:
                break
            lr = recipe.lr * (1.0 - (epoch * steps + step) / total)
            choices = sample(step_rng(recipe.seed, epoch, step))
            loss = trainer.step(images.to(device), labels.to(device), choices, lr)
            report("advance", task="train spos", status=f"epoch {epoch + 1} loss {loss:.3g}")
        trainer.end_epoch(lr, dist)
        if dist.is_main:
            io.save_checkpoint(checkpoint_path(out), KIND, trainer.state())
            write_spos_curves(out, trainer.history)
        barrier(dist)
        row = trainer.history[-1]
        report(
            "log",
            message=f"epoch {epoch + 1}/{recipe.epochs}: loss {row[1]:.4f}, top-1 {row[2]:.1f}%",
        )
    return _final(out, trainer, dist, time.time() - began, start, seen)


def _final(
    out: Path,
    trainer: SposTrainer,
    dist: ProcessInfo,
    seconds: float,
    start: int,
    seen: list[int] | None,
) -> dict[str, Any]:
    if dist.distributed:
        checksum = float(sum(p.detach().double().abs().sum() for p in trainer.model.parameters()))
        io.write_json(
            out / "ranks" / f"rank_{dist.rank}.json",
            {
                "rank": dist.rank,
                "world": dist.world,
                "checksum": checksum,
                "first_samples": seen or [],
            },
        )
    last = trainer.history[-1] if trainer.history else [None, None, None, None]
    results = {
        "epochs": trainer.epoch,
        "start_epoch": start,
        "seconds": round(seconds, 2),
        "final_loss": last[1],
        "final_train_top1": last[2],
        "flops_range": list(trainer.bounds) if trainer.bounds else None,
    }
    if dist.is_main:
        outputs = [str(CHECKPOINT), "curves/loss.csv", "curves/loss.png"]
        runs.finish_run(out, outputs, results)
    return results


def write_spos_curves(run: Path, history: list[list[float]]) -> None:
    """Per-epoch loss, train top-1 and lr as `RUN/curves/loss.{csv,png}`."""
    from dnatool.utils.plots import new_figure, save_png

    buffer = _io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["epoch", "loss", "train_top1", "lr"])
    writer.writerows(history)
    io.write_text(Path(run) / "curves" / "loss.csv", buffer.getvalue())
    fig = new_figure(figsize=(8, 3))
    axes = fig.subplots(1, 2)
    epochs = [row[0] + 1 for row in history]
    axes[0].plot(epochs, [row[1] for row in history], marker="o")
    axes[0].set_ylabel("cross-entropy (label smoothing)")
    axes[1].plot(epochs, [row[2] for row in history], marker="o", color="tab:green")
    axes[1].set_ylabel("train top-1 (%), sampled paths")
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.suptitle("SPOS supernet", fontsize=9)
    save_png(fig, Path(run) / "curves" / "loss.png", dpi=100)
