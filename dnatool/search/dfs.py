"""The DNA paper's search (Algorithm 2), kept as the baseline: a pruned depth-first walk.

Each block's list is sorted by score. The walk picks one candidate per block in order, skips a
candidate whose cost, plus the cheapest completion, exceeds a budget, and stops scanning a list as
soon as `partial score + best remaining scores` cannot beat the best architecture found; in the
last block the best feasible candidate is taken and the walk backtracks. It is exact, but its
running time depends on how tight the budget is; `deadline` bounds it.
"""

from __future__ import annotations

import time

import numpy as np

from dnatool.search.problem import Problem, Solution, tolerances


class DfsTimeout(Exception):
    """The walk passed its deadline."""


def paper_dfs(problem: Problem, deadline: float | None = None) -> Solution | None:
    """The best feasible architecture in the solvers' total order (None when none fits)."""
    return _Dfs(problem, deadline).run()


class _Dfs:
    def __init__(self, problem: Problem, deadline: float | None) -> None:
        self.p, self.deadline = problem, deadline
        self.order = [np.lexsort((np.arange(len(s)), s)) for s in problem.scores]
        self.sorted_s = [s[o].tolist() for s, o in zip(problem.scores, self.order, strict=True)]
        self.sorted_c = [c[o] for c, o in zip(problem.costs, self.order, strict=True)]
        mins_s = [float(s.min()) for s in problem.scores] + [0.0]
        mins_c = [c.min(axis=0) for c in problem.costs] + [np.zeros(problem.dims)]
        self.rest_s = np.cumsum(mins_s[::-1])[::-1]
        self.rest_c = np.cumsum(mins_c[::-1], axis=0)[::-1]
        self.tol_s, self.tol_c = tolerances(problem)
        self.best: Solution | None = None
        self.nodes = self.steps = 0

    def run(self) -> Solution | None:
        self.walk(0, 0.0, self.p.fixed.astype(np.float64), ())
        return self.best

    def walk(self, k: int, partial: float, cost: np.ndarray, picked: tuple[int, ...]) -> None:
        self.nodes += 1
        if k == self.p.blocks - 1:
            self.last(partial, cost, picked)
            return
        limit = self.p.budget + self.tol_c - self.rest_c[k + 1]
        costs = self.sorted_c[k]
        for i, s in enumerate(self.sorted_s[k]):
            self.steps += 1
            if (
                self.steps % 8192 == 0
                and self.deadline is not None
                and time.perf_counter() > self.deadline
            ):
                raise DfsTimeout
            score = partial + s
            if self.best is not None and score + self.rest_s[k + 1] > self.best.score + self.tol_s:
                break
            c = cost + costs[i]
            if (c > limit).any():
                continue
            self.walk(k + 1, score, c, (*picked, int(self.order[k][i])))

    def last(self, partial: float, cost: np.ndarray, picked: tuple[int, ...]) -> None:
        k = self.p.blocks - 1
        s = partial + self.p.scores[k]
        c = cost + self.p.costs[k]
        ok = np.flatnonzero((c <= self.p.budget).all(axis=1))
        if len(ok) == 0:
            return
        i = ok[np.lexsort((ok, *c[ok].T[::-1], s[ok]))[0]]
        found = Solution((*picked, int(i)), float(s[i]), tuple(float(v) for v in c[i]))
        if self.best is None or found.key < self.best.key:
            self.best = found
