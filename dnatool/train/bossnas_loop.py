"""`dnatool train` for `method: bossnas` (the algorithm: `train/bossnas.py`).

Blocks are trained one after another; at the end of block k's stage it is rated against its
population centre (`rate/bossnas.py`) and its best path becomes part of block k+1's input. One
checkpoint, `RUN/supernet/bossnas.pt`, is rewritten atomically after every epoch (online and
target networks, the block's optimiser and schedule, the view generator, the best paths so far),
so `--resume` continues at the epoch a kill interrupted. Single process (no torchrun yet).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, RandomSampler

from dnatool.arch.space import Choice, load_space
from dnatool.data import load_splits
from dnatool.train.bossnas import (
    BossnasRecipe,
    BossNet,
    check_space,
    ema_update,
    ensemble_loss,
    sample_paths,
    target_momentum,
)
from dnatool.train.dnapp import cosine_factor, lars_lr, two_views
from dnatool.train.resume import STAGE, check_run_dir, train_inputs
from dnatool.train.setup import SUPERNET_DIR
from dnatool.utils import io, runs
from dnatool.utils.events import Report, quiet
from dnatool.utils.locks import locked

CHECKPOINT = Path(SUPERNET_DIR) / "bossnas.pt"
KIND = "bossnas_supernet"


def checkpoint_path(run: str | Path) -> Path:
    return Path(run) / CHECKPOINT


class BossState:
    """Everything a BossNAS run is: both networks, where the schedule stands, the best paths."""

    def __init__(self, recipe: BossnasRecipe, device: torch.device) -> None:
        self.recipe = recipe
        self.space = load_space(recipe.space)
        check_space(self.space)
        self.splits = load_splits(
            recipe.data,
            recipe.resolution or self.space.resolution,
            recipe.rate_per_class,
            recipe.seed,
            augment=False,  # the two views are BossNAS's augmentation
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed)
            self.online = BossNet(self.space, recipe, self.splits.num_classes).to(device)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        self.device = device
        self.block, self.epoch = 0, 0  # the next epoch to train
        self.best: list[Choice] = []
        self.history: list[list[float]] = []  # [block, epoch, loss, lr, momentum]
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.views = torch.Generator().manual_seed(recipe.seed * 7919 + 1)
        self.paths = torch.Generator().manual_seed(recipe.seed * 7919 + 2)

    def steps_per_epoch(self) -> int:
        n = len(self.splits.train) // self.recipe.batch_size or 1
        cap = self.recipe.max_steps_per_epoch
        return min(n, cap) if cap else n

    def new_optimizer(self) -> None:
        """A fresh LARS optimiser and warm-up + cosine schedule for the block starting now."""
        from timm.optim import Lars

        recipe, k = self.recipe, self.block
        params = [
            *self.online.projectors[k].parameters(),
            *self.online.predictors[k].parameters(),
        ]
        if recipe.schedule == "frozen":
            params += [p for cell in self.online.supernet.blocks[k] for p in cell.parameters()]
            if k == 0:
                s = self.online.supernet
                params += [*s.conv_stem.parameters(), *s.bn1.parameters(), *s.fixed.parameters()]
        else:
            params += list(self.online.supernet.parameters())
        lr = lars_lr(recipe.lr_per_256, recipe.batch_size)
        self.optimizer = Lars(params, lr=lr, momentum=0.9, weight_decay=recipe.weight_decay)
        steps = self.steps_per_epoch()
        total, warmup = steps * recipe.epochs, steps * recipe.warmup_epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: cosine_factor(step, total, warmup)
        )

    def state(self) -> dict[str, Any]:
        def cpu(module: torch.nn.Module) -> dict[str, torch.Tensor]:
            return {k: v.detach().cpu() for k, v in module.state_dict().items()}

        return {
            "block": self.block,
            "epoch": self.epoch,
            "best": [[c, list(p)] for c, p in self.best],
            "history": self.history,
            "online": cpu(self.online),
            "target": cpu(self.target),
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "views": self.views.get_state(),
            "paths": self.paths.get_state(),
        }

    def load(self, data: dict[str, Any]) -> None:
        self.online.load_state_dict(data["online"])
        self.target.load_state_dict(data["target"])
        self.block, self.epoch = int(data["block"]), int(data["epoch"])
        self.best = [(int(c), tuple(int(op) for op in p)) for c, p in data["best"]]
        self.history = [list(r) for r in data["history"]]
        self.views.set_state(data["views"])
        self.paths.set_state(data["paths"])
        if self.block < len(self.space.blocks) and data["optimizer"] is not None:
            self.new_optimizer()
            assert self.optimizer is not None
            self.optimizer.load_state_dict(data["optimizer"])
            self.scheduler.load_state_dict(data["scheduler"])


@locked("out")  # one writer per run directory
def run_bossnas(
    recipe: BossnasRecipe, out: str | Path, report: Report | None = None, resume: bool = False
) -> dict[str, Any]:
    """Train every block of a BossNAS supernet in turn; returns the per-block best paths."""
    from dnatool.rate.bossnas import rate_block

    report = report or quiet
    out = Path(out)
    inputs = train_inputs(recipe)
    check_run_dir(out, recipe, inputs, resume)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    use_cuda = recipe.device != "cpu" and torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    state = BossState(recipe, device)
    if checkpoint_path(out).is_file():
        state.load(io.load_checkpoint(checkpoint_path(out), KIND))
    STAGE.start(out, recipe, inputs, state.space)
    blocks, steps = len(state.space.blocks), state.steps_per_epoch()
    report(
        "log",
        message=f"bossnas: space {state.space.name}, {blocks} blocks x {recipe.epochs} epochs, "
        f"{recipe.paths} {recipe.sampling} paths per step, {recipe.schedule} schedule",
        always=True,
    )
    report("start", task="train", total=steps * (blocks * recipe.epochs - _done(state)))
    began = time.time()
    while state.block < blocks:
        k = state.block
        if state.optimizer is None:  # a block's stage starts (a resumed one has its own)
            state.new_optimizer()
        while state.epoch < recipe.epochs:
            loss = _epoch(state, steps, report)
            state.epoch += 1
            row = state.history[-1]
            report(
                "log",
                message=f"block {k} epoch {state.epoch}/{recipe.epochs}: loss {loss:.4f} "
                f"(lr {row[3]:.3g}, target momentum {row[4]:.4f})",
            )
            io.save_checkpoint(checkpoint_path(out), KIND, state.state())
        rated = rate_block(state.target, state.splits, k, state.best, recipe, device)
        state.best.append(rated.best)
        report("log", message=f"block {k}: best path {rated.best} of {len(rated.choices)}")
        state.block, state.epoch, state.optimizer, state.scheduler = k + 1, 0, None, None
        io.save_checkpoint(checkpoint_path(out), KIND, state.state())
    _write_curves(out, state.history)
    results = {
        "epochs_per_block": recipe.epochs,
        "seconds": round(time.time() - began, 2),
        "best": [[c, list(p)] for c, p in state.best],
        "final_loss": {str(int(r[0])): r[2] for r in state.history if r[1] == recipe.epochs - 1},
    }
    runs.finish_run(out, [str(CHECKPOINT), "curves/loss.csv", "curves/loss.png"], results)
    return results


def _done(state: BossState) -> int:
    return state.block * state.recipe.epochs + state.epoch


def _epoch(state: BossState, steps: int, report: Report) -> float:
    recipe, k = state.recipe, state.block
    assert state.optimizer is not None
    sampler = RandomSampler(
        state.splits.train,
        generator=torch.Generator().manual_seed(recipe.seed * 1009 + k * 101 + state.epoch),
    )
    loader = DataLoader(
        state.splits.train,
        batch_size=recipe.batch_size,
        sampler=list(sampler),
        num_workers=recipe.workers,
        drop_last=True,
    )
    state.online.train()
    state.target.train()
    in_width = state.online.in_width(state.best, k)
    total_steps = steps * recipe.epochs
    frozen = recipe.schedule == "frozen"
    losses, momentum = [], recipe.momentum
    for step, (images, _) in enumerate(loader):
        if step >= steps:
            break
        a, b = two_views(images.to(state.device), state.views)
        with torch.set_grad_enabled(not frozen):
            xa, xb = state.online.prefix(a, state.best, k), state.online.prefix(b, state.best, k)
        with torch.no_grad():
            ta, tb = state.target.prefix(a, state.best, k), state.target.prefix(b, state.best, k)
        paths = sample_paths(state.space, k, recipe.paths, recipe.sampling == "fair", state.paths)
        loss = ensemble_loss(state.online, state.target, k, paths, xa, xb, ta, tb, in_width)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        state.scheduler.step()
        momentum = target_momentum(recipe.momentum, state.epoch * steps + step + 1, total_steps)
        ema_update(state.online, state.target, momentum)
        losses.append(float(loss.detach()))
        report("advance", task="train", status=f"block {k} loss {losses[-1]:.3f}")
    mean = sum(losses) / max(len(losses), 1)
    lr = state.optimizer.param_groups[0]["lr"]
    state.history.append([k, state.epoch, mean, lr, momentum])
    return mean


def _write_curves(run: Path, history: list[list[float]]) -> None:
    """Per-epoch loss of every block's stage as `RUN/curves/loss.{csv,png}`."""
    from dnatool.utils.plots import new_figure, save_png

    lines = ["block,epoch,loss,lr,momentum"] + [
        f"{int(b)},{int(e)},{loss:.6f},{lr:.6g},{m:.6f}" for b, e, loss, lr, m in history
    ]
    io.write_text(run / "curves" / "loss.csv", "\n".join(lines) + "\n")
    fig = new_figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for block in sorted({int(r[0]) for r in history}):
        rows = [r for r in history if int(r[0]) == block]
        ax.plot([r[1] + 1 for r in rows], [r[2] for r in rows], marker="o", label=f"block {block}")
    ax.set_xlabel("epoch of the block's stage")
    ax.set_ylabel("ensemble BYOL loss")
    ax.legend()
    save_png(fig, run / "curves" / "loss.png")
