"""`dnatool bench rate`: prefix sharing against naive per-path evaluation, in one run.

One cell of `layers` layers with the space's ops (default: 4 layers of the DNA space's 6 MBConv
ops, 1296 paths), random weights and inputs; both methods score every path on the same batches.
The layer-evaluation count alone predicts L*c^L / (c + ... + c^L) = 5184 / 1554 = 3.34x.
Both methods run once untimed (warm-up: allocator, kernels, caches), then `repeats` timed rounds
alternate which goes first; the speed-up is the ratio of the medians. Every run's scores must be
identical to the others'.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from dnatool.arch.space import Cell as SpaceCell
from dnatool.arch.space import load_space
from dnatool.nn.supernet import Cell
from dnatool.rate.feature_sharing import CellScores, score_cell_naive, score_cell_shared


def bench_rate(
    space: str = "dna-mbconv",
    block: int = 3,
    layers: int = 4,
    width: int = 16,
    size: int = 8,
    batch: int = 8,
    batches: int = 1,
    recalibrate: bool = False,
    seed: int = 0,
    repeats: int = 5,
) -> dict[str, Any]:
    """Time both evaluations of every path of one cell (median of `repeats` warm runs each)."""
    torch.manual_seed(seed)
    one_cell = load_space(space).with_cells(block, (SpaceCell(layers, width),))
    cell = Cell(one_cell, block, 0, in_chs=width, out_chs=width).eval()
    gen = torch.Generator().manual_seed(seed)
    stride = cell.layers[0][0].conv_dw.stride[0]
    data = [
        (
            torch.randn(batch, width, size, size, generator=gen),
            torch.randn(batch, width, size // stride, size // stride, generator=gen),
        )
        for _ in range(batches)
    ]
    calib = data[0][0] if recalibrate else None
    methods: dict[str, Callable[[], CellScores]] = {
        "shared": lambda: score_cell_shared(cell, data, "std", calib),
        "naive": lambda: score_cell_naive(cell, data, "std", calib),
    }
    first, seconds, identical = _time_alternating(methods, repeats)
    shared_seconds = statistics.median(seconds["shared"])
    naive_seconds = statistics.median(seconds["naive"])
    ops = cell.num_ops
    return {
        "speedup": naive_seconds / shared_seconds,
        "identical": identical,
        "layers": layers,
        "ops": ops,
        "paths": ops**layers,
        "shared_seconds": shared_seconds,
        "naive_seconds": naive_seconds,
        "shared_runs": seconds["shared"],
        "naive_runs": seconds["naive"],
        "shared_layer_evals": first["shared"].layer_evals,
        "naive_layer_evals": first["naive"].layer_evals,
        "predicted_speedup": first["naive"].layer_evals / first["shared"].layer_evals,
        "setup": {
            "space": space,
            "block": block,
            "width": width,
            "size": size,
            "batch": batch,
            "batches": batches,
            "bn_recalibrate": recalibrate,
            "threads": torch.get_num_threads(),
            "warmup": 1,
            "repeats": repeats,
        },
    }


def _time_alternating(
    methods: dict[str, Callable[[], CellScores]], repeats: int
) -> tuple[dict[str, CellScores], dict[str, list[float]], bool]:
    """One untimed run of each method, then `repeats` timed rounds alternating which goes first;
    returns the warm-up results, every timing, and whether all runs gave the same scores."""
    first = {name: run() for name, run in methods.items()}
    reference = next(iter(first.values())).scores()
    identical = all(result.scores() == reference for result in first.values())
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    for round_ in range(repeats):
        for name in list(methods)[:: 1 if round_ % 2 == 0 else -1]:
            began = time.perf_counter()
            result = methods[name]()
            seconds[name].append(time.perf_counter() - began)
            identical = identical and result.scores() == reference
    return first, seconds, identical
