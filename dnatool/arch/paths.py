"""Per-layer values of a block as arrays, and their sums along every path, in numpy.

A layer's cost (latency, params, MACs) depends only on its op, its cell, its depth in the cell
and, for the first layer, the block's input width (`SearchSpace.layer_grid`). So each cost is a
pair of arrays, `first (S, C, O, ...)` over input states, cells and ops and `later
(C, L - 1, O, ...)` over cells, depths 1..L-1 and ops, and a path's cost is
`first[s, cell, op_0] + later[cell, 0, op_1] + later[cell, 1, op_2] + ...`, folded layer by layer
in path order so that a float sum is the same as a table's own per-path figure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dnatool.arch.space import Layer, SearchSpace


def grid_arrays(
    space: SearchSpace, k: int, value: Callable[[Layer], Any], dtype: Any = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """`value` of every layer of block k's grid as (first (S, C, O, ...), later (C, L - 1, O, ...),
    L the deepest cell's layers); rows past a cell's depth and grid holes (a fabric's routes that
    do not exist, `entry_blocked`) are zero: no path reads them."""
    grid = space.layer_grid(k)
    layers = [x for state in grid.first for cell in state for x in cell]
    layers += [x for rows in grid.later for row in rows for x in row]
    shape = np.shape(value(next(x for x in layers if x is not None)))
    hole = np.zeros(shape, dtype=dtype)

    def values(row: tuple[Layer | None, ...]) -> list[Any]:
        return [hole if layer is None else value(layer) for layer in row]

    first = np.array([[values(cell) for cell in state] for state in grid.first], dtype=dtype)
    cells, ops = first.shape[1:3]
    depth = max(len(rows) for rows in grid.later)
    later = np.zeros((cells, depth, ops, *first.shape[3:]), dtype=dtype)
    for c, rows in enumerate(grid.later):
        for d, row in enumerate(rows):
            later[c, d] = np.array(values(row), dtype=dtype)
    return first, later


def entry_blocked(space: SearchSpace, k: int, cells: np.ndarray) -> np.ndarray | None:
    """(S, n) True where input state s cannot enter the listed cell (a fabric cell is entered
    from one scale only); None when every state enters every cell. Costs are +inf there."""
    if space.fabric is None:
        return None
    states = space.in_widths(k)
    allowed = [set(space.cell_in_widths(k, c)) for c in range(len(space.blocks[k].cells))]
    return np.array(
        [[w not in allowed[c] for c in np.asarray(cells, dtype=np.int64)] for w in states],
        dtype=bool,
    )


def block_with_holes(total: np.ndarray, blocked: np.ndarray | None) -> np.ndarray:
    """Per-path sums (S, n, ...) as float64 with +inf where the state cannot enter the cell."""
    if blocked is None:
        return total
    mask = blocked.reshape(*blocked.shape, *([1] * (total.ndim - 2)))
    return np.where(mask, np.inf, total.astype(np.float64))


def sum_along_paths(
    first: np.ndarray, later: np.ndarray, cells: np.ndarray, paths: np.ndarray
) -> np.ndarray:
    """(S, n, ...) per-path sums for every input state, paths as rows of op indices padded -1."""
    cells = np.asarray(cells, dtype=np.int64)
    paths = np.asarray(paths, dtype=np.int64)
    total = first[:, cells, paths[:, 0]]
    for d, column in enumerate(paths[:, 1:].T):
        value = later[cells, d, np.maximum(column, 0)]
        mask = (column >= 0).reshape(-1, *([1] * (value.ndim - 1)))
        total = total + np.where(mask, value, 0)[None]
    return total


def all_paths(space: SearchSpace, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (cell, path) of block k: `cells` (n,) and `paths` (n, max_layers) padded with -1."""
    block = space.blocks[k]
    width = max(cell.layers for cell in block.cells)
    cells, paths = [], []
    for index, cell in enumerate(block.cells):
        options = block.layer_options(index)
        picks = np.indices(tuple(len(o) for o in options)).reshape(cell.layers, -1).T
        grid = np.stack([np.asarray(o)[picks[:, d]] for d, o in enumerate(options)], axis=1)
        cells.append(np.full(len(grid), index, dtype=np.int64))
        paths.append(np.pad(grid, ((0, 0), (0, width - cell.layers)), constant_values=-1))
    return np.concatenate(cells), np.concatenate(paths).astype(np.int64)


def state_index(space: SearchSpace, k: int, widths: np.ndarray) -> np.ndarray:
    """Index into `in_widths(k)` of each width (the interface state of block k)."""
    states = np.asarray(space.in_widths(k))
    return np.searchsorted(states, np.asarray(widths))


def out_states(space: SearchSpace, k: int, cells: np.ndarray) -> np.ndarray:
    """The input state of block k+1 (or of the head) that each listed cell of block k leads to."""
    widths = np.array([c.width for c in space.blocks[k].cells])[np.asarray(cells, dtype=np.int64)]
    return state_index(space, k + 1, widths)
