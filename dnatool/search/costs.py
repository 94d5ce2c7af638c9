"""Per-path costs: params and MACs from timm's own modules, latency from a table.

A path's params / MACs are the sums of its layers' counts (`nn.counts.layer_counts`, the counter
`profile` stores in table entries too). The fixed part (stem, fixed stages, head, classifier) is
the whole network minus its searchable layers, so `fixed + sum of path costs` equals
`count_params` / `count_macs` of `space.to_arch(choices)` exactly (tests check it).

Every cost of block k is an array `(S, n)`: one row per input state (`space.in_widths(k)`), since
a cell's first layer costs what the previous block's width makes it cost. The head's cost depends
on the width the last block ends in; on such spaces it is kept apart per width (`head`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from dnatool.arch.paths import block_with_holes, entry_blocked, grid_arrays, sum_along_paths
from dnatool.arch.space import Choice, SearchSpace


@runtime_checkable
class LatencyTable(Protocol):
    """Everything search needs from a latency table: `dnatool.profile.lut.LatencyTable` and the
    SYNTHETIC table implement all of it."""

    def check_space(self, space: SearchSpace) -> None: ...

    def layer_latency_ms(self, space: SearchSpace, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def layer_costs(self, space: SearchSpace, k: int) -> tuple[np.ndarray, np.ndarray] | None: ...

    def stem_latency_ms(self, space: SearchSpace) -> float: ...

    def head_latency_ms(self, space: SearchSpace, width: int | None = None) -> float: ...

    def fixed_latency_ms(self, space: SearchSpace, width: int | None = None) -> float: ...

    def fixed_costs(
        self, space: SearchSpace, width: int | None = None
    ) -> tuple[int, int] | None: ...

    def path_latency_ms(
        self, space: SearchSpace, k: int, choice: Choice, in_width: int | None = None
    ) -> float: ...


@dataclass(frozen=True)
class Costs:
    """One cost of every listed path: `fixed`, `blocks[k]` (S_k, n_k), and `head` (S_N,) when the
    head's cost depends on the last block's width (else it is inside `fixed`)."""

    fixed: float
    blocks: tuple[np.ndarray, ...]
    head: np.ndarray | None = None


def layer_table(space: SearchSpace, k: int) -> tuple[np.ndarray, np.ndarray]:
    """int64 [params, MACs] of every layer of block k's grid (`arch.paths.grid_arrays`)."""
    from dnatool.nn.counts import layer_counts

    return grid_arrays(space, k, lambda layer: layer_counts(layer, space.act), np.int64)


def path_params_macs(
    space: SearchSpace,
    k: int,
    cells: np.ndarray,
    paths: np.ndarray,
    table: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """int64 (S, n, 2) params and MACs of the listed paths of block k on each input state, from
    `table` (the `layer_table` layout, e.g. a latency table's `layer_costs`) or counted; float64
    with +inf on a fabric's impossible (state, cell) pairs."""
    first, later = layer_table(space, k) if table is None else table
    total = sum_along_paths(first, later, cells, paths)
    return block_with_holes(total, entry_blocked(space, k, cells))


@functools.lru_cache(maxsize=16)
def fixed_params_macs(space: SearchSpace, width: int | None = None) -> tuple[int, int]:
    """Params and MACs of everything outside the searchable layers (stem, fixed stages, head
    after a last block of `width`)."""
    from dnatool.nn.counts import layer_counts, meta_counts
    from dnatool.nn.timm_adapter import build_model

    width = space.head_input(width)[0]
    choices = space.example(width)
    arch = space.to_arch(choices)
    whole = np.array(
        meta_counts(
            lambda: build_model(arch), (1, space.in_chans, space.resolution, space.resolution)
        )
    )
    widths = space.chain_widths(choices)
    searchable = sum(
        np.array(layer_counts(layer, space.act))
        for k, choice in enumerate(choices)
        for layer in space.path_layers(k, choice, widths[k])
    )
    fixed = whole - searchable
    return int(fixed[0]), int(fixed[1])


def path_latency_ms(
    table: LatencyTable, space: SearchSpace, k: int, cells: np.ndarray, paths: np.ndarray
) -> np.ndarray:
    """(S, n) latency of every listed path of block k on each input state, from the table's
    per-layer grid, summed layer by layer in path order (the same float as the table's own
    `path_latency_ms`)."""
    first, later = table.layer_latency_ms(space, k)
    total = sum_along_paths(
        np.asarray(first, dtype=np.float64), np.asarray(later, dtype=np.float64), cells, paths
    )
    return block_with_holes(total, entry_blocked(space, k, cells))
