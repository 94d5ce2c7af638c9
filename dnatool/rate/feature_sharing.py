"""Feature-sharing evaluation (DNA, CVPR 2020, Algorithm 1).

A cell of depth L with c ops has c^L paths. Walking them depth-first, the output of each prefix is
computed once and reused by the c^(L-j) paths below it, so layer evaluations fall from L*c^L to
c + c^2 + ... + c^L (4 layers, 6 ops: 5184 -> 1554, 3.3x). `score_cell_naive` evaluates each
path on its own and is the oracle the shared walk must equal exactly.

Score: relative L1, |Y - Yhat|_1 / (K * D(Y)), D the teacher feature's standard deviation per batch
(the released code) or its variance (the paper's text). Optional BN recalibration, as in the
released code: before a candidate op scores, its BatchNorm statistics are reset to those of one
calibration batch propagated through the same prefix, so it too is shared by all paths below.
The calibration batch is the same for every rating batch, so each prefix's recalibrated
statistics are computed once and reloaded on later batches (identical values, a third of the
work; the cache holds two BN vectors per op per prefix, ~200 MB for dna-mbconv's 5-layer cells).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from dnatool.nn.supernet import Cell

NORMS = ("std", "var")


@dataclass
class CellScores:
    """Score sums per path over the batches seen so far (and the layer evaluations spent)."""

    sums: dict[tuple[int, ...], float] = field(default_factory=dict)
    count: int = 0
    layer_evals: int = 0
    recalibrations: int = 0
    calibrated: dict[tuple[int, ...], list[torch.Tensor]] = field(default_factory=dict, repr=False)
    calibration: torch.Tensor | None = field(default=None, repr=False)

    def add(self, path: tuple[int, ...], score: float, weight: int) -> None:
        self.sums[path] = self.sums.get(path, 0.0) + score * weight

    def scores(self) -> dict[tuple[int, ...], float]:
        return {path: total / self.count for path, total in self.sums.items()}


def relative_l1(output: torch.Tensor, target: torch.Tensor, norm: str = "std") -> float:
    """Mean absolute error divided by the target's std (or variance) over the batch."""
    spread = target.std() if norm == "std" else target.var()
    return float((output - target).abs().mean() / spread)


Metric = Callable[[torch.Tensor, torch.Tensor], float]


def path_score(output: torch.Tensor, target: torch.Tensor, norm: str | Metric) -> float:
    """DNA's relative L1 (`norm` "std" / "var"), or any metric of (path output, target): DNA++
    passes its self-supervised distance through its projectors."""
    return norm(output, target) if callable(norm) else relative_l1(output, target, norm)


def _norms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of `module`, in a fixed order (the cache relies on it)."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def recalibrate(module: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Reset `module`'s BN statistics to those of `batch`, then return its eval-mode output."""
    for bn in _norms(module):
        bn.reset_running_stats()
        bn.momentum = None
    module.train()
    module(batch)
    module.eval()
    return module(batch)


@torch.no_grad()
def score_cell_shared(
    cell: Cell,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    norm: str | Metric = "std",
    calibration: torch.Tensor | None = None,
) -> CellScores:
    """Every path of `cell`, depth-first with prefix sharing, over all `(input, target)` batches."""
    cell.eval()
    result = CellScores()
    for x, target in batches:
        score_batch(cell, x, target, result, norm, calibration)
    return result


@torch.no_grad()
def score_batch(
    cell: Cell,
    x: torch.Tensor,
    target: torch.Tensor,
    result: CellScores,
    norm: str | Metric = "std",
    calibration: torch.Tensor | None = None,
) -> None:
    """Add one batch's scores of every path of `cell` to `result` (prefix-shared walk).

    With `calibration`, BN statistics are recalibrated per prefix on the first batch and reused
    from `result`'s cache on the next ones (the cache is reset if `calibration` changes).
    """
    if calibration is not result.calibration:
        result.calibrated, result.calibration = {}, calibration
    _visit(cell, 0, (), x, calibration, target, norm, result)
    result.count += x.shape[0]


def _visit(
    cell: Cell,
    depth: int,
    prefix: tuple[int, ...],
    x: torch.Tensor,
    calib: torch.Tensor | None,
    target: torch.Tensor,
    norm: str | Metric,
    result: CellScores,
) -> None:
    for index in cell.options[depth]:
        op = cell.layers[depth][index]
        path = prefix + (index,)
        calib_out = _calibrate(op, path, calib, result) if result.calibration is not None else None
        out = op(x)
        result.layer_evals += 1
        if depth + 1 == cell.depth:
            result.add(path, path_score(cell.adapter(out), target, norm), x.shape[0])
        else:
            _visit(cell, depth + 1, path, out, calib_out, target, norm, result)


def _calibrate(
    op: nn.Module, path: tuple[int, ...], calib: torch.Tensor | None, result: CellScores
) -> torch.Tensor | None:
    """Give `op` the BN statistics of prefix `path`: reloaded from the cache (returns None, the
    layers below are cached too) or recalibrated on `calib` and cached (returns op(calib))."""
    cached = result.calibrated.get(path)
    if cached is not None:
        buffers = [b for bn in _norms(op) for b in (bn.running_mean, bn.running_var)]
        for buffer, value in zip(buffers, cached, strict=True):
            buffer.copy_(value)
        return None
    if calib is None:
        raise RuntimeError(f"no cached BN statistics for prefix {path} and no calibration input")
    out = recalibrate(op, calib)
    result.recalibrations += 1
    result.calibrated[path] = [
        b.clone() for bn in _norms(op) for b in (bn.running_mean, bn.running_var)
    ]
    return out


def all_paths(cell: Cell) -> Iterator[tuple[int, ...]]:
    """Paths in the same (lexicographic) order as the depth-first walk."""
    import itertools

    return itertools.product(*cell.options)


@torch.no_grad()
def score_cell_naive(
    cell: Cell,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    norm: str | Metric = "std",
    calibration: torch.Tensor | None = None,
) -> CellScores:
    """Every path on its own (L layer evaluations per path): the oracle for the shared walk."""
    cell.eval()
    result = CellScores()
    batches = list(batches)
    for x, target in batches:
        for path in all_paths(cell):
            h, calib = x, calibration
            for layer, op_index in zip(cell.layers, path):
                op = layer[op_index]
                if calib is not None:
                    calib = recalibrate(op, calib)
                    result.recalibrations += 1
                h = op(h)
                result.layer_evals += 1
            result.add(path, path_score(cell.adapter(h), target, norm), x.shape[0])
        result.count += x.shape[0]
    return result
