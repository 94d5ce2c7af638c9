"""`dnatool bench rate`: prefix sharing against naive per-path evaluation, in one run.

One cell of `layers` layers with the space's ops (default: 4 layers of the DNA space's 6 MBConv
ops, 1296 paths), random weights and inputs; both methods score every path on the same batches.
The layer-evaluation count alone predicts L*c^L / (c + ... + c^L) = 5184 / 1554 = 3.34x.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from dnatool.arch.space import load_space
from dnatool.nn.supernet import Cell
from dnatool.rate.feature_sharing import score_cell_naive, score_cell_shared


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
) -> dict[str, Any]:
    """Time both evaluations of every path of one cell; scores must be identical."""
    torch.manual_seed(seed)
    cell = Cell(
        in_chs=width, width=width, out_chs=width, layers=layers, space=load_space(space), k=block
    ).eval()
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
    began = time.perf_counter()
    shared = score_cell_shared(cell, data, "std", calib)
    shared_seconds = time.perf_counter() - began
    began = time.perf_counter()
    naive = score_cell_naive(cell, data, "std", calib)
    naive_seconds = time.perf_counter() - began
    ops = cell.num_ops
    return {
        "speedup": naive_seconds / shared_seconds,
        "identical": shared.scores() == naive.scores(),
        "layers": layers,
        "ops": ops,
        "paths": ops**layers,
        "shared_seconds": shared_seconds,
        "naive_seconds": naive_seconds,
        "shared_layer_evals": shared.layer_evals,
        "naive_layer_evals": naive.layer_evals,
        "predicted_speedup": naive.layer_evals / shared.layer_evals,
        "setup": {
            "space": space,
            "block": block,
            "width": width,
            "size": size,
            "batch": batch,
            "batches": batches,
            "bn_recalibrate": recalibrate,
            "threads": torch.get_num_threads(),
        },
    }
