"""Exact Pareto fronts (cost against score) of the whole space, merged block by block.

The front of a sum of independent choices is contained in the sum of the fronts, so the front of
blocks 0..k is the Pareto-pruned Minkowski sum of the front of 0..k-1 and the front of block k
(a multiple-choice knapsack solved for every budget at once). Each merge is one vectorised outer
sum and one sort; dominated points are dropped before the next block. Pruning follows the solvers'
total order (score, cost, candidate indices), so the point kept for any budget is exactly the
optimum brute force returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dnatool.search.problem import Problem, Solution, tolerances


@dataclass(frozen=True)
class Front:
    """Front points sorted by cost (ascending) with strictly decreasing score, and back-pointers."""

    cost: np.ndarray
    score: np.ndarray
    parents: tuple[np.ndarray, ...]
    picks: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.cost)

    def indices(self, point: int) -> tuple[int, ...]:
        """Candidate index per block of front point `point` (follow the back-pointers)."""
        out = []
        for parents, picks in zip(reversed(self.parents), reversed(self.picks), strict=True):
            out.append(int(picks[point]))
            point = int(parents[point])
        return tuple(reversed(out))

    def best_within(self, budget: float) -> int | None:
        """The front point with the best score among those with cost <= budget."""
        point = int(np.searchsorted(self.cost, budget, side="right")) - 1
        return point if point >= 0 else None


def prune(cost: np.ndarray, score: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points, by cost; ties keep the smallest `code` (lex order)."""
    order = np.lexsort((code, score, cost))
    s = score[order]
    best_before = np.minimum.accumulate(np.concatenate(([np.inf], s[:-1])))
    return order[s < best_before]


def block_front(problem: Problem, k: int, dim: int) -> np.ndarray:
    """Candidate indices of block k on its own front along cost `dim`."""
    n = len(problem.scores[k])
    return prune(problem.costs[k][:, dim], problem.scores[k], np.arange(n, dtype=np.int64))


def merge_fronts(problem: Problem, dim: int = 0, cap: float = np.inf) -> Front:
    """The whole-space front along cost `dim`; points costlier than `cap` (given the cheapest
    completion of the remaining blocks) are dropped, since they can never fit the budget."""
    rest = np.cumsum([c[:, dim].min() for c in problem.costs][::-1])[::-1]
    rest = np.append(rest[1:], 0.0)
    cost = np.array([problem.fixed[dim]], dtype=np.float64)
    score = np.zeros(1)
    rank = np.zeros(1, dtype=np.int64)
    parents, picks = [], []
    for k in range(problem.blocks):
        cand = block_front(problem, k, dim)
        bc, bs = problem.costs[k][cand, dim], problem.scores[k][cand]
        sum_cost = (cost[:, None] + bc[None, :]).reshape(-1)
        sum_score = (score[:, None] + bs[None, :]).reshape(-1)
        code = (rank[:, None] * len(problem.scores[k]) + cand[None, :]).reshape(-1)
        keep = prune(sum_cost, sum_score, code)
        keep = keep[sum_cost[keep] + rest[k] <= cap]
        parents.append(keep // len(cand))
        picks.append(cand[keep % len(cand)])
        cost, score = sum_cost[keep], sum_score[keep]
        rank = np.argsort(np.argsort(code[keep], kind="stable"), kind="stable").astype(np.int64)
    return Front(cost=cost, score=score, parents=tuple(parents), picks=tuple(picks))


def suffix_fronts(problem: Problem, dim: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each k, the front (cost, best score) of blocks k..N-1 alone, without fixed costs:
    `bound(k, r)` = best score the remaining blocks reach within budget r (exact for one cost)."""
    fronts = [(np.zeros(1), np.zeros(1))]
    for k in reversed(range(problem.blocks)):
        cand = block_front(problem, k, dim)
        cost, score = fronts[0]
        sum_cost = (problem.costs[k][cand, dim][:, None] + cost[None, :]).reshape(-1)
        sum_score = (problem.scores[k][cand][:, None] + score[None, :]).reshape(-1)
        keep = prune(sum_cost, sum_score, np.zeros(len(sum_cost), dtype=np.int64))
        fronts.insert(0, (sum_cost[keep], sum_score[keep]))
    return fronts


def front_bound(front: tuple[np.ndarray, np.ndarray], remaining: np.ndarray) -> np.ndarray:
    """Best score reachable within each remaining budget (inf where nothing fits)."""
    cost, score = front
    point = np.searchsorted(cost, remaining, side="right") - 1
    return np.where(point >= 0, score[np.maximum(point, 0)], np.inf)


def pareto_winner(problem: Problem) -> tuple[Front, Solution | None]:
    """Exact optimum for a single budget: the best front point within it."""
    front = merge_fronts(problem, 0, cap=float(problem.budget[0] + tolerances(problem)[1][0]))
    point = front.best_within(float(problem.budget[0]))
    if point is None:
        return front, None
    return front, Solution(
        indices=front.indices(point),
        score=float(front.score[point]),
        costs=(float(front.cost[point]),),
    )
