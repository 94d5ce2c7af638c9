"""`dnatool train` for `method: bossnas` (the algorithm: `train/bossnas.py`).

Blocks are trained one after another; at the end of block k's stage it is rated against its
population centre (`rate/bossnas.py`) and its best path becomes part of block k+1's input. One
checkpoint, `RUN/supernet/bossnas.pt`, is rewritten atomically after every epoch (online and
target networks, the block's optimiser and schedule, the view generator, the best paths so far),
so `--resume` continues at the epoch a kill interrupted. Under `torchrun` the step is data-parallel
(DDP; `batch_size` is per process and the LARS rate follows the global batch): every rank samples
the same paths, draws its own views of its own shard, and applies the same EMA update; rank 0 rates
each finished block and sends its best path to the others, and writes the checkpoint.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from dnatool.arch.space import Choice, load_space
from dnatool.data import load_splits
from dnatool.train.bossnas import (
    BossnasRecipe,
    BossNet,
    Routes,
    block_routes,
    check_space,
    ema_update,
    ensemble_loss,
    routes_after,
    sample_paths,
    target_momentum,
)
from dnatool.train.dnapp import cosine_factor, lars_lr, two_views
from dnatool.train.resume import STAGE, check_run_dir, train_inputs
from dnatool.train.setup import SUPERNET_DIR
from dnatool.utils import io, runs
from dnatool.utils.distributed import (
    ProcessInfo,
    all_sum,
    barrier,
    broadcast_object,
    joined,
    wrap,
)
from dnatool.utils.events import Report, quiet
from dnatool.utils.locks import locked

CHECKPOINT = Path(SUPERNET_DIR) / "bossnas.pt"
KIND = "bossnas_supernet"


def checkpoint_path(run: str | Path) -> Path:
    return Path(run) / CHECKPOINT


class BossState:
    """Everything a BossNAS run is: both networks, where the schedule stands, the best paths."""

    def __init__(self, recipe: BossnasRecipe, device: torch.device, world: int = 1) -> None:
        self.recipe, self.world = recipe, world
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
        self.ends: list[Routes] = []  # per finished block: the best route ending at each width
        self.history: list[list[float]] = []  # [block, epoch, loss, lr, momentum]
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.paths = torch.Generator().manual_seed(recipe.seed * 7919 + 2)

    def steps_per_epoch(self) -> int:
        n = len(self.splits.train) // (self.recipe.batch_size * self.world) or 1
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
        lr = lars_lr(recipe.lr_per_256, recipe.batch_size * self.world)
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
            "ends": [
                {str(w): [[c, list(p)] for c, p in route] for w, route in end.items()}
                for end in self.ends
            ],
            "history": self.history,
            "online": cpu(self.online),
            "target": cpu(self.target),
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "paths": self.paths.get_state(),
        }

    def load(self, data: dict[str, Any]) -> None:
        self.online.load_state_dict(data["online"])
        self.target.load_state_dict(data["target"])
        self.block, self.epoch = int(data["block"]), int(data["epoch"])
        self.best = [(int(c), tuple(int(op) for op in p)) for c, p in data["best"]]
        self.ends = [
            {int(w): [(int(c), tuple(int(op) for op in p)) for c, p in r] for w, r in end.items()}
            for end in data.get("ends", [])
        ]
        self.history = [list(r) for r in data["history"]]
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
    report = report or quiet
    out = Path(out)
    inputs = train_inputs(recipe)
    check_run_dir(out, recipe, inputs, resume)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    with joined(recipe.device) as dist:
        return _train(recipe, out, report, inputs, dist)


def _train(
    recipe: BossnasRecipe, out: Path, report: Report, inputs: dict[str, Path], dist: ProcessInfo
) -> dict[str, Any]:
    from dnatool.rate.bossnas import rate_block

    state = BossState(recipe, dist.device, dist.world)
    if checkpoint_path(out).is_file():
        state.load(io.load_checkpoint(checkpoint_path(out), KIND))
    if dist.is_main:
        STAGE.start(out, recipe, inputs, state.space)
    blocks, steps = len(state.space.blocks), state.steps_per_epoch()
    report(
        "log",
        message=f"bossnas: space {state.space.name}, {blocks} blocks x {recipe.epochs} epochs, "
        f"{recipe.paths} {recipe.sampling} paths per step, {recipe.schedule} schedule"
        + (f", {dist.world} processes" if dist.distributed else ""),
        always=True,
    )
    report("start", task="train", total=steps * (blocks * recipe.epochs - _done(state)))
    began = time.time()
    step = wrap(_Step(state), dist, find_unused_parameters=True)
    while state.block < blocks:
        k = state.block
        if state.optimizer is None:  # a block's stage starts (a resumed one has its own)
            state.new_optimizer()
        while state.epoch < recipe.epochs:
            loss = _epoch(state, step, steps, dist, report)
            state.epoch += 1
            row = state.history[-1]
            report(
                "log",
                message=f"block {k} epoch {state.epoch}/{recipe.epochs}: loss {loss:.4f} "
                f"(lr {row[3]:.3g}, target momentum {row[4]:.4f})",
            )
            _save(out, state, dist)
        rated = None
        routes = block_routes(state.space, k, state.best, state.ends)
        if dist.is_main:
            rating = rate_block(
                state.target, state.splits, k, state.best, recipe, dist.device, routes=routes
            )
            rated = (
                rating.best,
                routes_after(state.space, k, routes, rating.choices, rating.scores),
            )
        best, ends = broadcast_object(rated, dist)
        state.best.append(best)
        state.ends.append(ends)
        report("log", message=f"block {k}: best path {best}")
        state.block, state.epoch, state.optimizer, state.scheduler = k + 1, 0, None, None
        _save(out, state, dist)
    best = state.best
    if state.space.fabric is not None:  # the route of the last block's best path
        best = state.ends[-1][state.space.blocks[-1].cells[best[-1][0]].width]
    results = {
        "epochs_per_block": recipe.epochs,
        "seconds": round(time.time() - began, 2),
        "best": [[c, list(p)] for c, p in best],
        "final_loss": {str(int(r[0])): r[2] for r in state.history if r[1] == recipe.epochs - 1},
    }
    if dist.is_main:
        _write_curves(out, state.history)
        runs.finish_run(out, [str(CHECKPOINT), "curves/loss.csv", "curves/loss.png"], results)
    return results


def _save(out: Path, state: BossState, dist: ProcessInfo) -> None:
    if dist.is_main:
        io.save_checkpoint(checkpoint_path(out), KIND, state.state())
    barrier(dist)


def _done(state: BossState) -> int:
    return state.block * state.recipe.epochs + state.epoch


class _Step(nn.Module):
    """One step's loss as one module (what DDP wraps): the online network's block input and the
    ensemble loss of the sampled paths; the target is held outside the module tree (no
    gradients; EMA-updated after the step)."""

    def __init__(self, state: BossState) -> None:
        super().__init__()
        self.online = state.online
        self.state = state

    def forward(self, a: torch.Tensor, b: torch.Tensor, paths: list, route: list) -> torch.Tensor:
        """The loss of `paths` of the current block on the input `route` feeds it."""
        state, k = self.state, self.state.block
        online, target = self.online, state.target
        with torch.set_grad_enabled(state.recipe.schedule != "frozen"):
            xa, xb = online.prefix(a, route, k), online.prefix(b, route, k)
        with torch.no_grad():
            ta, tb = target.prefix(a, route, k), target.prefix(b, route, k)
        in_width = online.in_width(route, k)
        return ensemble_loss(online, target, k, paths, xa, xb, ta, tb, in_width)


def _epoch(
    state: BossState, step_module: nn.Module, steps: int, dist: ProcessInfo, report: Report
) -> float:
    recipe, k = state.recipe, state.block
    assert state.optimizer is not None
    order = list(
        RandomSampler(
            state.splits.train,
            generator=torch.Generator().manual_seed(recipe.seed * 1009 + k * 101 + state.epoch),
        )
    )
    loader = DataLoader(
        state.splits.train,
        batch_size=recipe.batch_size,
        sampler=order[dist.rank :: dist.world],
        num_workers=recipe.workers,
        drop_last=True,
    )
    # each rank its own view stream, a pure function of (seed, block, epoch, rank): resumable
    views = torch.Generator().manual_seed(
        ((recipe.seed * 7919 + k) * 1009 + state.epoch) * 1024 + dist.rank
    )
    state.online.train()
    state.target.train()
    total_steps = steps * recipe.epochs
    losses, momentum = [], recipe.momentum
    routes = block_routes(state.space, k, state.best, state.ends)
    widths = sorted(routes)
    for i, (images, _) in enumerate(loader):
        if i >= steps:
            break
        a, b = two_views(images.to(state.device), views)
        cells = None
        width = widths[0]
        if len(widths) > 1:  # a fabric: one entry scale per step, its cells, its route
            width = widths[int(torch.randint(0, len(widths), (1,), generator=state.paths))]
            cells = [
                c
                for c in range(len(state.space.blocks[k].cells))
                if width in state.space.cell_in_widths(k, c)
            ]
        fair = recipe.sampling == "fair"
        paths = sample_paths(state.space, k, recipe.paths, fair, state.paths, cells)
        loss = step_module(a, b, paths, routes[width])
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        state.scheduler.step()
        momentum = target_momentum(recipe.momentum, state.epoch * steps + i + 1, total_steps)
        ema_update(state.online, state.target, momentum)
        losses.append(float(loss.detach()))
        report("advance", task="train", status=f"block {k} loss {losses[-1]:.3f}")
    total, count = all_sum([sum(losses), len(losses)], dist)
    mean = total / max(count, 1)
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
