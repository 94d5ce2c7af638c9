"""BossNAS rating (method.md section 7): every path of a block against its population centre.

On fixed view pairs of the rating images (seeded, the same for every path), each path of block k
runs on the target network's block input (blocks 0..k-1 on their best paths) and is projected,
unnormalised; the centre is the mean projection over all paths of the block. A path's score is
its mean squared distance to the centre of the other view, averaged over both directions, divided
by the block's mean score: lower is better, and each block's scores average 1, so blocks weigh
alike in the sum `search` minimises. Before a path is scored its BatchNorm statistics (path
modules and projector) are reset and refilled from one fixed training batch, as the released code
does. The recalibration is shared across prefixes: a layer's refilled statistics depend only on
the calibration batch's train-mode output of the layers before it, so a depth-first walk of each
cell's path tree refills and runs every prefix once (c + c^2 + ... + c^L layer evaluations instead
of L c^L) and gives exactly the per-path scores (`shared=False`, the oracle the tests compare).
Scores are written as the score lists every search reads (`rate/score_lists.py`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dnatool.arch.space import Choice
from dnatool.data import Splits
from dnatool.rate.score_lists import SCORES_DIR, STAGE, ScoreList, write_score_list
from dnatool.train.bossnas import (
    BossnasRecipe,
    BossNet,
    Routes,
    block_paths,
    block_routes,
    entry_width,
    routes_after,
)
from dnatool.train.dnapp import two_views
from dnatool.utils import io, runs
from dnatool.utils.events import Report, quiet
from dnatool.utils.locks import locked


@dataclass(frozen=True)
class BlockRating:
    choices: list[Choice]
    scores: np.ndarray  # relative distance to the population centre, lower is better
    layer_evals: int = 0  # supernet layers run (per rating view set) to score every path

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


def _refill(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Reset `module`'s BatchNorm statistics, refill them from `x` (one batch: exact) and return
    its train-mode output, which is what the next module's statistics are refilled from."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    module.train()
    y = module(x)
    module.eval()
    return y


@dataclass
class _Inputs:
    """One node of a cell's path tree: the calibration batch's train-mode output and both rating
    views' eval-mode outputs of a prefix."""

    calib: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor


def _step(module: nn.Module, x: _Inputs, size: int) -> _Inputs:
    calib = _refill(module, x.calib)
    return _Inputs(calib, _batched(module, x.a, size), _batched(module, x.b, size))


def _project_path(
    net: BossNet, k: int, choice: Choice, in_width: int, x: _Inputs, size: int, evals: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-path recalibration (the oracle): refill every module of the path, then project."""
    width = net.space.blocks[k].cells[choice[0]].width
    modules = net.path_modules(k, choice, in_width)
    for module in [*modules, net.projectors[k][str(width)]]:
        x = _step(module, x, size)
    evals[0] += len(modules)
    return x.a, x.b


def _project_cell(
    net: BossNet, k: int, cell: int, in_width: int, x: _Inputs, size: int, evals: list[int]
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every path of one cell in `block_paths` order, walking the cell's path tree depth-first:
    each prefix is refilled and run once for all the paths below it."""
    spec = net.space.blocks[k].cells[cell]
    module = net.supernet.blocks[k][cell].layer_module
    projector = net.projectors[k][str(spec.width)]
    options = net.space.blocks[k].layer_options(cell)

    def walk(depth: int, x: _Inputs) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for op in options[depth]:
            y = _step(module(depth, op, in_width), x, size)
            evals[0] += 1
            if depth + 1 < spec.layers:
                yield from walk(depth + 1, y)
            else:
                z = _step(projector, y, size)
                yield z.a, z.b

    yield from walk(0, x)


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
    shared: bool = True,
    routes: Routes | None = None,
) -> BlockRating:
    """Every path of block k against the population centre (on a copy: BN recalibration must not
    touch the trained target); `batches`: `rating_batches`, when the caller rates every block;
    `shared=False` recalibrates and runs each path on its own (same scores, more work); `routes`:
    the input route per width (`block_routes`; default: the chain `best`). In a fabric each cell
    runs on the route ending at the scale it is entered at; the centre is over every path."""
    net = copy.deepcopy(target).eval()
    va, vb, calib = batches or rating_batches(splits, recipe, device)
    size = recipe.rate_batch_size
    routes = routes if routes is not None else block_routes(net.space, k, best, [])
    inputs: dict[int, _Inputs] = {}

    def block_input(c: int) -> tuple[int, _Inputs]:
        width = entry_width(net.space, k, c, routes)
        if width not in inputs:
            route = routes[width]
            inputs[width] = _Inputs(
                net.prefix(calib, route, k),
                _batched(lambda v: net.prefix(v, route, k), va, size),
                _batched(lambda v: net.prefix(v, route, k), vb, size),
            )
        return width, inputs[width]

    choices = list(block_paths(net.space, k))
    report("start", task=f"rate block {k}", total=len(choices))
    za, zb, evals = [], [], [0]
    if shared:
        cells = range(len(net.space.blocks[k].cells))
        projected = (
            z for c in cells for z in _project_cell(net, k, c, *block_input(c), size, evals)
        )
    else:
        projected = (_project_path(net, k, c, *block_input(c[0]), size, evals) for c in choices)
    for a, b in projected:
        za.append(a)
        zb.append(b)
        report("advance", task=f"rate block {k}")
    za_all, zb_all = torch.stack(za), torch.stack(zb)  # (paths, images, dim)
    centre_a, centre_b = za_all.mean(0), zb_all.mean(0)
    raw = (
        (za_all - centre_b).pow(2).sum(-1).mean(-1) + (zb_all - centre_a).pow(2).sum(-1).mean(-1)
    ) / 2
    scores = (raw / raw.mean()).cpu().numpy()
    return BlockRating(choices, scores, evals[0])


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
    ends: list[Routes] = []
    summary = {}
    batches = rating_batches(state.splits, recipe, device)
    for k in range(blocks):
        began = time.time()
        routes = block_routes(state.space, k, best, ends)
        rated = rate_block(
            state.target, state.splits, k, best, recipe, device, report, batches, routes=routes
        )
        write_score_list(run, k, rated.score_list())
        best.append(rated.best)
        ends.append(routes_after(state.space, k, routes, rated.choices, rated.scores))
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
            "layer_evals": rated.layer_evals,
            "seconds": round(time.time() - began, 2),
        }
    io.write_json(run / SCORES_DIR / "summary.json", summary)
    if state.space.fabric is not None:  # the route of the last block's best path
        best = ends[-1][state.space.blocks[-1].cells[best[-1][0]].width]
    runs.finish_run(
        run / SCORES_DIR,
        [f"block_{k}.npz" for k in range(blocks)] + ["summary.json"],
        {"best": [[c, list(p)] for c, p in best], "warning": warning},
    )
    return summary
