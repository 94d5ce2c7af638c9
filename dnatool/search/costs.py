"""Per-path costs: params and MACs from timm's own modules, latency from a table.

A path's params / MACs are the sums of its layers' counts; each layer is built by the same timm
builder as the standalone network (`build_op`) at its input width and resolution, cached per
(in_chs, block string, resolution), counted on the meta device. The fixed part (stem, fixed stages, head, classifier) is the
whole network minus its searchable layers, so `fixed + sum of path costs` equals `count_params` /
`count_macs` of `space.to_arch(choices)` exactly (tests check it).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from dnatool.arch.space import Choice, SearchSpace
from dnatool.arch.spec import BlockSpec, parse_block


@runtime_checkable
class LatencyTable(Protocol):
    """What search needs from a latency table (`dnatool.profile.lut.load_lut`).

    Optional: `layer_latency_ms(space, k) -> (2, n_ops)` array, the fast path of `path_latency_ms`.
    """

    def path_latency_ms(self, space: SearchSpace, k: int, choice: Choice) -> float: ...

    def fixed_latency_ms(self, space: SearchSpace) -> float: ...


def layer_spec(space: SearchSpace, k: int, op: int, first: bool) -> BlockSpec:
    """The block string of op `op` of block k as the first layer of a cell (stride) or a later one."""
    block = space.blocks[k]
    return BlockSpec(
        type="ir",
        out=block.width,
        kernel=block.ops[op].kernel,
        stride=block.stride if first else 1,
        exp=block.ops[op].exp,
        se=space.se,
    )


def layer_input(space: SearchSpace, k: int, first: bool) -> tuple[int, int]:
    """(channels, spatial size) entering a first or later layer of block k."""
    res = space.block_in_resolution(k)
    if first:
        return space.block_in_width(k), res
    return space.blocks[k].width, math.ceil(res / space.blocks[k].stride)


def meta_counts(build: Callable[[], Any], input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(params, MACs) of a module built on the meta device: the same count as `count_params` /
    `count_macs` (tests check it) without allocating weights or running convolutions."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dnatool.nn.timm_adapter import count_params

    with torch.device("meta"):
        module = build().eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(torch.zeros(*input_shape, device="meta"))
    return count_params(module), counter.get_total_flops() // 2


@functools.lru_cache(maxsize=4096)
def layer_cost(in_chs: int, block: str, act: str, resolution: int) -> tuple[int, int]:
    """(params, MACs) of one timm block at one input size."""
    from dnatool.nn.timm_adapter import build_op

    return meta_counts(
        lambda: build_op(in_chs, parse_block(block), act), (1, in_chs, resolution, resolution)
    )


def layer_table(space: SearchSpace, k: int) -> np.ndarray:
    """int64 (2, n_ops, 2): [first / later layer][op][params, MACs] of block k."""
    table = np.zeros((2, len(space.blocks[k].ops), 2), dtype=np.int64)
    for pos, first in enumerate((True, False)):
        in_chs, res = layer_input(space, k, first)
        for op in range(len(space.blocks[k].ops)):
            table[pos, op] = layer_cost(
                in_chs, layer_spec(space, k, op, first).to_str(), space.act, res
            )
    return table


def path_params_macs(
    space: SearchSpace, k: int, paths: np.ndarray, table: np.ndarray | None = None
) -> np.ndarray:
    """int64 (n, 2) params and MACs of paths (rows of op indices padded with -1) of block k,
    from `table` (the `layer_table` layout, e.g. a latency table's `layer_costs`) or counted."""
    return sum_along_paths(layer_table(space, k) if table is None else table, paths)


def sum_along_paths(layers: np.ndarray, paths: np.ndarray) -> np.ndarray:
    """Per-layer values `layers[first / later][op, ...]` summed along each path (rows of op
    indices padded with -1), one layer at a time in path order, so a float sum is the same fold
    as the table's own per-path figure."""
    paths = np.asarray(paths, dtype=np.int64)
    total = layers[0][paths[:, 0]]
    for column in paths[:, 1:].T:
        later = layers[1][np.maximum(column, 0)]
        mask = (column >= 0).reshape(-1, *([1] * (later.ndim - 1)))
        total = total + np.where(mask, later, 0)
    return total


@functools.lru_cache(maxsize=16)
def fixed_params_macs(space: SearchSpace) -> tuple[int, int]:
    """Params and MACs of everything outside the searchable layers (stem, fixed stages, head)."""
    from dnatool.nn.timm_adapter import build_model

    choices = [(0, (0,) * block.cells[0].layers) for block in space.blocks]
    arch = space.to_arch(choices)
    whole = np.array(
        meta_counts(
            lambda: build_model(arch), (1, space.in_chans, space.resolution, space.resolution)
        )
    )
    searchable = sum(
        path_params_macs(space, k, np.array([p]))[0] for k, (_, p) in enumerate(choices)
    )
    fixed = whole - searchable
    return int(fixed[0]), int(fixed[1])


def path_latency_ms(
    table: LatencyTable, space: SearchSpace, k: int, cells: np.ndarray, paths: np.ndarray
) -> np.ndarray:
    """Latency of every listed path of block k, from the table.

    A table with `layer_latency_ms(space, k)` (the (2, n_ops) latency of each op as a cell's
    first / later layer) is summed along the paths in array form, layer by layer in path order
    (the same float as its `path_latency_ms`); any other table is asked path by path.
    """
    per_layer = getattr(table, "layer_latency_ms", None)
    if per_layer is None:
        return _latency_path_by_path(table, space, k, cells, paths)
    return sum_along_paths(np.asarray(per_layer(space, k), dtype=np.float64), paths)


def _latency_path_by_path(
    table: LatencyTable, space: SearchSpace, k: int, cells: np.ndarray, paths: np.ndarray
) -> np.ndarray:
    out = np.empty(len(cells), dtype=np.float64)
    for i, (cell, row) in enumerate(zip(cells.tolist(), paths.tolist(), strict=True)):
        out[i] = table.path_latency_ms(space, k, (cell, tuple(op for op in row if op >= 0)))
    return out
