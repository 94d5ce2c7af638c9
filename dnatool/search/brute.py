"""Brute force: every architecture of a small problem, the oracle the exact solvers are tested against."""

from __future__ import annotations

import numpy as np

from dnatool.errors import BadInput
from dnatool.search.problem import Problem, Solution

MAX_SIZE = 5_000_000


def brute_force(problem: Problem, top: int = 1) -> list[Solution]:
    """The `top` best feasible architectures in the solvers' total order (empty if none fits)."""
    if problem.size > MAX_SIZE:
        raise BadInput(
            f"brute force is for small problems ({problem.size:,} > {MAX_SIZE:,} architectures)"
        )
    score = np.zeros(())
    cost = problem.fixed.astype(np.float64)
    for s, c in zip(problem.scores, problem.costs, strict=True):
        # Broadcasting adds element by element in block order: the same left fold as the solvers.
        score = score[..., None] + s
        cost = cost[..., None, :] + c
    score = score.reshape(-1)
    cost = cost.reshape(-1, problem.dims)
    feasible = np.flatnonzero((cost <= problem.budget).all(axis=1))
    shape = tuple(len(s) for s in problem.scores)
    idx = np.unravel_index(feasible, shape)
    keys = [
        *reversed(idx),
        *(cost[feasible, d] for d in reversed(range(problem.dims))),
        score[feasible],
    ]
    order = feasible[np.lexsort(keys)][:top] if len(feasible) else feasible
    flat = np.unravel_index(order, shape)
    return [
        Solution(
            indices=tuple(int(a[j]) for a in flat),
            score=float(score[i]),
            costs=tuple(float(v) for v in cost[i]),
        )
        for j, i in enumerate(order)
    ]
