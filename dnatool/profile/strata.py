"""Architectures spread over a cost range, from the exact cheapest to the exact dearest.

Random architectures of a large space cluster in the middle of its latency range (30 random
`dna-mbconv-small` networks span 11-16 ms of a 8-20 ms range), where a constant predictor already
scores well. Validation and calibration networks are therefore stratified: the exact cheapest
and dearest architectures (dynamic programming over the blocks and their interface widths, as
search solves them), and between them networks whose cost hits evenly spaced targets (a seeded
local search from a random architecture, block by block).

Costs come as per-layer grids (`arch.paths.grid_arrays`): the table's calibrated latencies for
validation, MACs for calibration (known before anything is measured).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dnatool.arch.paths import (
    all_paths,
    block_with_holes,
    entry_blocked,
    out_states,
    sum_along_paths,
)
from dnatool.arch.space import Choice, SearchSpace


@dataclass(frozen=True)
class Costs:
    """Per-path costs of every block per input state, and the fixed cost per head width."""

    cells: list[np.ndarray]  # (n_k,) cell of each path of block k
    paths: list[np.ndarray]  # (n_k, max_layers) op indices, padded with -1
    block: list[np.ndarray]  # (S_k, n_k) cost of each path on each input state
    nxt: list[np.ndarray]  # (n_k,) input state of block k+1 (or the head) after each path
    fixed: np.ndarray  # (S_head,) stem + head cost per width entering the head

    def total(self, index: list[int]) -> float:
        """Cost of one architecture given by path indices, one per block."""
        state, cost = 0, 0.0
        for k, i in enumerate(index):
            cost += float(self.block[k][state, i])
            state = int(self.nxt[k][i])
        return cost + float(self.fixed[state])

    def choices(self, index: list[int]) -> list[Choice]:
        return [
            (int(self.cells[k][i]), tuple(int(op) for op in self.paths[k][i] if op >= 0))
            for k, i in enumerate(index)
        ]

    def index_of(self, choices: list[Choice]) -> list[int]:
        result = []
        for k, (cell, path) in enumerate(choices):
            row = np.full(self.paths[k].shape[1], -1)
            row[: len(path)] = path
            hit = np.flatnonzero((self.cells[k] == cell) & (self.paths[k] == row).all(axis=1))
            result.append(int(hit[0]))
        return result


def path_costs(
    space: SearchSpace,
    grids: Callable[[int], tuple[np.ndarray, np.ndarray]],
    fixed: Callable[[int], float],
) -> Costs:
    """`Costs` from per-layer grids of each block (`grids(k)`) and the fixed cost per head width."""
    cells, paths, block, nxt = [], [], [], []
    for k in range(len(space.blocks)):
        c, p = all_paths(space, k)
        first, later = grids(k)
        cells.append(c)
        paths.append(p)
        block.append(
            block_with_holes(sum_along_paths(first, later, c, p), entry_blocked(space, k, c))
        )
        nxt.append(out_states(space, k, c))
    head = np.array([fixed(w) for w in space.in_widths(len(space.blocks))], dtype=float)
    return Costs(cells, paths, block, nxt, head)


def extremes(costs: Costs) -> tuple[list[int], list[int]]:
    """Path indices of the exact cheapest and the exact dearest architecture (DP over states)."""
    result = []
    for sign in (1.0, -1.0):
        value = sign * costs.fixed  # best cost from the head on, per head state
        picks = []
        for k in reversed(range(len(costs.block))):
            # (S_k, n_k); a fabric's impossible pairs (+inf) stay impossible for either sign
            signed = np.where(np.isfinite(costs.block[k]), sign * costs.block[k], np.inf)
            total = signed + value[costs.nxt[k]][None, :]
            best = np.argmin(total, axis=1)
            picks.append(best)
            value = total[np.arange(len(best)), best]
        picks.reverse()
        state, index = 0, []
        for k, best in enumerate(picks):
            index.append(int(best[state]))
            state = int(costs.nxt[k][index[-1]])
        result.append(index)
    return result[0], result[1]


def _toward(
    costs: Costs, index: list[int], target: float, rng: np.random.Generator, sweeps: int = 4
) -> list[int]:
    """Block by block, move an architecture's cost toward `target` (random candidates per block,
    ties broken at random, so different seeds give different networks of the same cost)."""
    index = list(index)
    blocks = len(index)
    for _ in range(sweeps):
        for k in rng.permutation(blocks):
            states = [0]
            for j, i in enumerate(index):
                states.append(int(costs.nxt[j][i]))
            before = sum(float(costs.block[j][states[j], index[j]]) for j in range(k))
            n = len(costs.cells[k])
            cand = rng.permutation(n)[: min(n, 512)]
            here = costs.block[k][states[k], cand]
            nxt = costs.nxt[k][cand]
            if k + 1 < blocks:
                follow = costs.block[k + 1][nxt, index[k + 1]]
                after = sum(
                    float(costs.block[j][states[j], index[j]]) for j in range(k + 2, blocks)
                ) + float(costs.fixed[states[blocks]])
            else:
                follow, after = costs.fixed[nxt], 0.0
            miss = np.abs(before + here + follow + after - target)
            if np.isfinite(miss).any():  # else keep the block's pick (no candidate fits the route)
                index[k] = int(cand[np.argmin(miss + 1e-9 * rng.random(len(cand)))])
    return index


def stratified(
    space: SearchSpace,
    costs: Costs,
    n: int,
    seed: int,
    exclude: frozenset[str] | set[str] = frozenset(),
    ends: bool = True,
) -> list[list[Choice]]:
    """n distinct architectures whose costs are evenly spaced over [cheapest, dearest] (`ends`:
    the two extremes themselves included), none of them in `exclude` (`samples.choices_text`)."""
    from dnatool.profile.samples import choices_text

    lo_index, hi_index = extremes(costs)
    lo, hi = costs.total(lo_index), costs.total(hi_index)
    if ends:
        targets = np.linspace(lo, hi, n) if n > 1 else np.array([lo])
    else:
        targets = lo + (hi - lo) * (np.arange(n) + 1) / (n + 1)
    rng = np.random.default_rng([seed, 5])
    seen, result = set(exclude), []
    for j, target in enumerate(targets):
        start = None
        if ends and j == 0:
            start = lo_index
        elif ends and j == n - 1:
            start = hi_index
        for attempt in range(20):
            if start is not None and attempt == 0:
                index = start
            else:
                begin = costs.index_of(space.sample(rng))
                index = _toward(costs, begin, float(target), rng)
            choices = costs.choices(index)
            if choices_text(choices) not in seen:
                break
        seen.add(choices_text(choices))
        result.append(choices)
    return result


def latency_costs(space: SearchSpace, table: Any) -> Costs:
    """Costs priced by a latency table (calibrated: what `predict_ms` says)."""
    return path_costs(
        space,
        lambda k: table.layer_latency_ms(space, k),
        lambda w: table.fixed_latency_ms(space, w),
    )


def mac_costs(space: SearchSpace) -> Costs:
    """Costs in MACs (counted on the meta device), for choosing calibration networks before
    anything is measured; the fixed part is the head's 1x1 conv and classifier per width."""
    from dnatool.arch.paths import grid_arrays
    from dnatool.nn.counts import layer_counts

    def head(width: int) -> float:
        res = space.head_input(width)[1]
        return float(width * space.head * res * res + space.head * space.num_classes)

    return path_costs(
        space,
        lambda k: grid_arrays(space, k, lambda layer: layer_counts(layer, space.act)[1]),
        head,
    )
