"""BossNAS (Li et al., ICCV 2021; method.md section 7): block-wise self-supervised supernet
training by ensemble bootstrapping, without any teacher.

An online supernet and its EMA copy (the target). Per step and block, `paths` paths are sampled
(`fair`: at every layer position each op exactly once across the paths when there are as many
paths as ops, as the released code does on the MBConv space; `random`: uniform). Every sampled
online path, on one view, predicts the *ensemble* target: the mean over the sampled paths of the
target's l2-normalised projections of the other view; the loss is the symmetric BYOL loss
(2 - 2 cos per term). Blocks train one after another, each for `epochs` epochs with its own
momentum schedule (`momentum` -> 1 on a cosine) and its own LARS warm-up + cosine learning rate;
block k's input is the student's own blocks 0..k-1 running their best paths (rated at the end of
their stage); under `schedule: sequential` those earlier blocks keep training, under `frozen` they
stay fixed.

The supernet is the SPOS supernet's module tree (`nn.spos.SposSupernet`: stem, fixed stages, one
module per candidate op, next-block first layers per input width), so a path's modules are the
standalone network's and the search reads the same score lists as DNA's. Per block there is a
projector for each cell output width (global pool, Linear-BN-ReLU-Linear, as DNA++'s) and one
predictor (Linear-BN-ReLU-Linear).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np
import torch
from torch import nn

from dnatool.arch.space import Choice, SearchSpace
from dnatool.config import resumable
from dnatool.errors import BadInput
from dnatool.nn.spos import SposSupernet
from dnatool.train.dnapp import Projector

SAMPLINGS = ("fair", "random")
SCHEDULES = ("sequential", "frozen")


@dataclass(frozen=True)
class BossnasRecipe:
    """`method: bossnas`. Defaults follow the released code where the paper is silent: 4 paths,
    fair sampling, momentum 0.99 -> 1, projector in -> 4096 -> 256 and predictor 256 -> 4096 -> 256
    (scaled down in the tiny recipes), LARS 4.8 per 4096 images, weight decay 1e-6, 1 warm-up
    epoch then cosine, restarted per block; the paper trains every block 20 epochs."""

    method: str = "bossnas"
    space: str = "dna-mbconv"
    data: str = "imagenet"
    resolution: int | None = None
    rate_per_class: int = 50
    epochs: int = 20  # per block
    batch_size: int = 64
    paths: int = 4
    sampling: str = "fair"
    schedule: str = "sequential"
    momentum: float = 0.99
    proj_hidden: int = 4096
    proj_out: int = 256
    pred_hidden: int = 4096
    lr_per_256: float = 0.3
    weight_decay: float = 1e-6
    warmup_epochs: int = 1
    max_steps_per_epoch: int | None = None
    workers: int = resumable(4)
    threads: int | None = resumable(None)
    seed: int = 0
    device: str = resumable("auto")
    rate_batch_size: int = resumable(100)

    def __post_init__(self) -> None:
        if self.method != "bossnas":
            raise BadInput(f"a BossNAS recipe has method 'bossnas', got {self.method!r}")
        for name, allowed in (
            ("sampling", SAMPLINGS),
            ("schedule", SCHEDULES),
            ("device", ("auto", "cpu", "cuda")),
        ):
            if getattr(self, name) not in allowed:
                raise BadInput(
                    f"recipe key {name!r} must be one of {', '.join(allowed)}, "
                    f"got {getattr(self, name)!r}"
                )
        for name in ("epochs", "batch_size", "paths", "rate_per_class", "rate_batch_size"):
            if getattr(self, name) < 1:
                raise BadInput(f"recipe key {name!r} must be >= 1")
        if self.paths < 2:
            raise BadInput("recipe key 'paths' must be >= 2: the target is an ensemble of paths")
        if not 0 <= self.momentum < 1:
            raise BadInput("recipe key 'momentum' must be in [0, 1)")
        if min(self.proj_hidden, self.proj_out, self.pred_hidden) < 1 or self.lr_per_256 <= 0:
            raise BadInput("recipe needs proj_hidden, proj_out, pred_hidden >= 1, lr_per_256 > 0")
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            raise BadInput("recipe keys weight_decay and warmup_epochs must be >= 0")


# ---- path sampling ------------------------------------------------------------------------------


def sample_paths(
    space: SearchSpace,
    k: int,
    n: int,
    fair: bool,
    generator: torch.Generator,
    cells: Sequence[int] | None = None,
) -> list[Choice]:
    """`n` paths of block k. Fair: at each layer position the paths take the ops of a fresh
    random permutation in turn (every op once per `len(ops)` paths); cells are drawn uniformly
    (from `cells` when given: a fabric step's cells entered at one scale)."""
    block = space.blocks[k]
    n_ops, depth = len(block.ops), max(cell.layers for cell in block.cells)
    pool = list(range(len(block.cells))) if cells is None else list(cells)
    picked = torch.randint(0, len(pool), (n,), generator=generator).tolist()
    cells = [pool[i] for i in picked]
    if fair:
        columns = []
        for _ in range(depth):
            order: list[int] = []
            while len(order) < n:
                order += torch.randperm(n_ops, generator=generator).tolist()
            columns.append(order[:n])
        ops = [[columns[i][p] for i in range(depth)] for p in range(n)]
    else:
        ops = torch.randint(0, n_ops, (n, depth), generator=generator).tolist()
    return [(c, _allowed(block.layer_options(c), ops[p])) for p, c in enumerate(cells)]


def _allowed(options: tuple[tuple[int, ...], ...], ops: list[int]) -> tuple[int, ...]:
    """The drawn ops, each folded into the ops its layer allows (a fabric layer at a scale
    without attention has one op: every draw lands on it; elsewhere draws are kept as they are)."""
    return tuple(o[op % len(o)] if op not in o else op for o, op in zip(options, ops))


def block_paths(space: SearchSpace, k: int) -> Iterator[Choice]:
    """Every (cell, path) of block k, cells in order, ops in lexicographic order."""
    block = space.blocks[k]
    for c in range(len(block.cells)):
        for path in product(*block.layer_options(c)):
            yield c, tuple(path)


# ---- the networks -----------------------------------------------------------------------------


def _mlp(in_dim: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, out),
    )


class BossNet(nn.Module):
    """Supernet + per-block projectors (one per cell output width) + per-block predictors. The
    target is a second BossNet whose predictors are unused."""

    def __init__(self, space: SearchSpace, recipe: BossnasRecipe, num_classes: int) -> None:
        super().__init__()
        self.space = space
        self.supernet = SposSupernet(space, num_classes)
        self.projectors = nn.ModuleList(
            [
                nn.ModuleDict(
                    {
                        str(w): Projector(w, recipe.proj_hidden, recipe.proj_out)
                        for w in sorted({cell.width for cell in block.cells})
                    }
                )
                for block in space.blocks
            ]
        )
        self.predictors = nn.ModuleList(
            [_mlp(recipe.proj_out, recipe.pred_hidden, recipe.proj_out) for _ in space.blocks]
        )

    def prefix(self, images: torch.Tensor, best: Sequence[Choice], k: int) -> torch.Tensor:
        """Stem, fixed stages and blocks 0..k-1 on their best paths: block k's input."""
        s = self.supernet
        x = s.fixed(s.bn1(s.conv_stem(images)))
        for block in s.path_modules(list(best[:k])):
            for module in block:
                x = module(x)
        return x

    def in_width(self, best: Sequence[Choice], k: int) -> int:
        return self.space.chain_widths(list(best[:k]))[-1]

    def path_modules(self, k: int, choice: Choice, in_width: int) -> list[nn.Module]:
        cell, path = choice
        return self.supernet.blocks[k][cell].path_modules(path, in_width)

    def project(self, x: torch.Tensor, k: int, choice: Choice, in_width: int) -> torch.Tensor:
        """Block k's path `choice` on its input x, then the projector of its output width."""
        for module in self.path_modules(k, choice, in_width):
            x = module(x)
        width = self.space.blocks[k].cells[choice[0]].width
        return self.projectors[k][str(width)](x)


Routes = dict[int, list[Choice]]


def block_routes(
    space: SearchSpace, k: int, best: Sequence[Choice], ends: Sequence[Routes]
) -> Routes:
    """Block k's input, per input width: the route (choices of blocks 0..k-1) that feeds it. In
    a fabric every width has its own, the best-rated route ending there (`ends[k - 1]`);
    elsewhere it is the one chain of best paths, whatever width the cells could take."""
    if space.fabric is None or k == 0:
        return {space.chain_widths(list(best[:k]))[-1]: list(best[:k])}
    return ends[k - 1]


def entry_width(space: SearchSpace, k: int, cell: int, routes: Routes) -> int:
    """The input width cell `cell` of block k runs on, given the routes that feed the block."""
    return next(w for w in routes if space.fabric is None or w in space.cell_in_widths(k, cell))


def routes_after(
    space: SearchSpace, k: int, routes: Routes, choices: Sequence[Choice], scores: np.ndarray
) -> Routes:
    """The routes feeding block k+1: for each width block k can end in, its best-scored path
    ending there, after the route that feeds that path's cell (ties: the earlier path)."""
    out: Routes = {}
    for i in np.argsort(scores, kind="stable"):
        cell, path = choices[int(i)]
        width = space.blocks[k].cells[cell].width
        if width not in out:
            out[width] = [*routes[entry_width(space, k, cell, routes)], (cell, tuple(path))]
    return dict(sorted(out.items()))


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """2 - 2 cos(prediction, target), averaged over the batch (target already detached)."""
    p = nn.functional.normalize(prediction, dim=1)
    t = nn.functional.normalize(target, dim=1)
    return (2 - 2 * (p * t).sum(dim=1)).mean()


def ensemble_loss(
    online: BossNet,
    target: BossNet,
    k: int,
    paths: Sequence[Choice],
    xa: torch.Tensor,
    xb: torch.Tensor,
    ta: torch.Tensor,
    tb: torch.Tensor,
    in_width: int,
) -> torch.Tensor:
    """Symmetric BYOL loss of every sampled online path against the ensemble target (the mean
    over the sampled paths of the target's normalised projections of the other view)."""
    with torch.no_grad():
        za = torch.stack(
            [nn.functional.normalize(target.project(ta, k, p, in_width), dim=1) for p in paths]
        ).mean(0)
        zb = torch.stack(
            [nn.functional.normalize(target.project(tb, k, p, in_width), dim=1) for p in paths]
        ).mean(0)
    loss = torch.zeros((), device=xa.device)
    for p in paths:
        qa = online.predictors[k](online.project(xa, k, p, in_width))
        qb = online.predictors[k](online.project(xb, k, p, in_width))
        loss = loss + byol_loss(qa, zb) + byol_loss(qb, za)
    return loss / len(paths)


def target_momentum(base: float, step: int, total: int) -> float:
    """BYOL's schedule: `base` at the start of a block's stage, cosine up to 1 at its end."""
    return 1 - (1 - base) * (math.cos(math.pi * min(step, total) / max(total, 1)) + 1) / 2


@torch.no_grad()
def ema_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    for o, t in zip(online.parameters(), target.parameters(), strict=True):
        t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
    for o, t in zip(online.buffers(), target.buffers(), strict=True):
        t.copy_(o)


def projection_std(z: torch.Tensor) -> float:
    """Mean per-channel std of l2-normalised projections x sqrt(D): about 1 when spread out,
    0 when collapsed to one point."""
    z = nn.functional.normalize(z, dim=1)
    return float(z.std(dim=0).mean() * math.sqrt(z.shape[1]))


def check_space(space: SearchSpace) -> None:
    """BossNAS enumerates every path of a block when rating: refuse blocks too large for that."""
    for k, block in enumerate(space.blocks):
        n = block.paths
        if n > 20_000:
            raise BadInput(
                f"block {k} of {space.name!r} has {n:,} paths; BossNAS rates every path against "
                "the population centre: use a space with at most 20,000 paths per block"
            )
