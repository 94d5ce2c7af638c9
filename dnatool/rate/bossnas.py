"""BossNAS rating (method.md section 7): every path of a block against its population centre.

On fixed view pairs of the rating images (seeded, the same for every path), each path of block k
runs on the target network's block input (blocks 0..k-1 on their best paths) and is projected,
unnormalised; the centre is the mean projection over all paths of the block. A path's score is
its mean squared distance to the centre of the other view, averaged over both directions, divided
by the block's mean score: lower is better, and each block's scores average 1, so blocks weigh
alike in the sum `search` minimises. Before a path is scored its BatchNorm statistics (path
modules and projector) are reset and refilled from one fixed training batch, as the released code
does. Scores are written as the score lists every search reads (`rate/score_lists.py`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dnatool.arch.space import Choice
from dnatool.data import Splits
from dnatool.rate.score_lists import SCORES_DIR, STAGE, ScoreList, write_score_list
from dnatool.train.bossnas import BossnasRecipe, BossNet, block_paths
from dnatool.train.dnapp import two_views
from dnatool.utils import io, runs
from dnatool.utils.events import Report, quiet
from dnatool.utils.locks import locked


@dataclass(frozen=True)
class BlockRating:
    choices: list[Choice]
    scores: np.ndarray  # relative distance to the population centre, lower is better

    @property
    def best(self) -> Choice:
        return self.choices[int(np.argmin(self.scores))]

    def score_list(self) -> ScoreList:
        width = max(len(p) for _, p in self.choices)
        paths = np.full((len(self.choices), width), -1, dtype=np.int64)
        for i, (_, path) in enumerate(self.choices):
            paths[i, : len(path)] = path
        cells = np.array([c for c, _ in self.choices], dtype=np.int64)
        return ScoreList(cells, paths, self.scores.astype(np.float64))


def rating_batches(
    splits: Splits, recipe: BossnasRecipe, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed view pairs (of the rating images) and the fixed BN calibration batch (the first
    training batch of a seeded order)."""
    images = torch.stack([splits.rate[i][0] for i in range(len(splits.rate))])
    va, vb = two_views(images, torch.Generator().manual_seed(recipe.seed * 31 + 17))
    order = torch.randperm(
        len(splits.train), generator=torch.Generator().manual_seed(recipe.seed * 31 + 5)
    )[: recipe.batch_size]
    calib = torch.stack([splits.train[int(i)][0] for i in order])
    return va.to(device), vb.to(device), calib.to(device)


def _batched(fn: Any, x: torch.Tensor, size: int) -> torch.Tensor:
    return torch.cat([fn(x[i : i + size]) for i in range(0, len(x), size)])


def _recalibrate(modules: Sequence[nn.Module], x: torch.Tensor) -> None:
    """Reset the BatchNorm statistics of `modules` and refill them from `x` (an exact average)."""
    norms = [
        m
        for module in modules
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    for module in modules:
        module.train()
    for module in modules:
        x = module(x)
    for module in modules:
        module.eval()


@torch.no_grad()
def rate_block(
    target: BossNet,
    splits: Splits,
    k: int,
    best: Sequence[Choice],
    recipe: BossnasRecipe,
    device: torch.device,
    report: Report = quiet,
    batches: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> BlockRating:
    """Every path of block k against the population centre (on a copy: BN recalibration must not
    touch the trained target); `batches`: `rating_batches`, when the caller rates every block."""
    net = copy.deepcopy(target).eval()
    va, vb, calib = batches or rating_batches(splits, recipe, device)
    size = recipe.rate_batch_size
    xa = _batched(lambda v: net.prefix(v, best, k), va, size)
    xb = _batched(lambda v: net.prefix(v, best, k), vb, size)
    xc = net.prefix(calib, best, k)
    in_width = net.in_width(best, k)
    choices = list(block_paths(net.space, k))
    report("start", task=f"rate block {k}", total=len(choices))
    za, zb = [], []
    for choice in choices:
        width = net.space.blocks[k].cells[choice[0]].width
        modules = [*net.path_modules(k, choice, in_width), net.projectors[k][str(width)]]
        _recalibrate(modules, xc)
        za.append(_batched(lambda x, c=choice: net.project(x, k, c, in_width), xa, size))
        zb.append(_batched(lambda x, c=choice: net.project(x, k, c, in_width), xb, size))
        report("advance", task=f"rate block {k}")
    za_all, zb_all = torch.stack(za), torch.stack(zb)  # (paths, images, dim)
    centre_a, centre_b = za_all.mean(0), zb_all.mean(0)
    raw = (
        (za_all - centre_b).pow(2).sum(-1).mean(-1) + (zb_all - centre_a).pow(2).sum(-1).mean(-1)
    ) / 2
    scores = (raw / raw.mean()).cpu().numpy()
    return BlockRating(choices, scores)


@locked("run", SCORES_DIR)  # one writer per RUN/scores
def run_rate_bossnas(run: str | Path, report: Report = quiet) -> dict[str, Any]:
    """Rate every block of a trained BossNAS run with its final weights (block by block: each
    block's best path feeds the next), writing RUN/scores/block_k.npz and summary.json."""
    from dnatool.train.bossnas_loop import KIND, BossState, checkpoint_path
    from dnatool.train.recipe import train_recipe_from_dict

    run = Path(run)
    manifest = runs.read_manifest(run)
    recipe = train_recipe_from_dict(manifest["recipe"])
    device = torch.device("cuda" if recipe.device != "cpu" and torch.cuda.is_available() else "cpu")
    state = BossState(recipe, device)
    state.load(io.load_checkpoint(checkpoint_path(run), KIND))
    blocks = len(state.space.blocks)
    warning = None
    if state.block < blocks:
        warning = f"training stopped in block {state.block} epoch {state.epoch}: rating as it is"
        report("log", message=f"warning: {warning}", always=True)
    STAGE.start(
        STAGE.open(run / SCORES_DIR), {"method": "bossnas"}, {"training run": run / runs.MANIFEST}
    )
    best: list[Choice] = []
    summary = {}
    batches = rating_batches(state.splits, recipe, device)
    for k in range(blocks):
        began = time.time()
        rated = rate_block(state.target, state.splits, k, best, recipe, device, report, batches)
        write_score_list(run, k, rated.score_list())
        best.append(rated.best)
        order = np.argsort(rated.scores)[:5]
        summary[str(k)] = {
            "paths": len(rated.choices),
            "best": [
                {
                    "cell": rated.choices[i][0],
                    "path": list(rated.choices[i][1]),
                    "ops": [state.space.blocks[k].ops[op].name for op in rated.choices[i][1]],
                    "score": float(rated.scores[i]),
                }
                for i in order
            ],
            "seconds": round(time.time() - began, 2),
        }
    io.write_json(run / SCORES_DIR / "summary.json", summary)
    runs.finish_run(
        run / SCORES_DIR,
        [f"block_{k}.npz" for k in range(blocks)] + ["summary.json"],
        {"best": [[c, list(p)] for c, p in best], "warning": warning},
    )
    return summary
