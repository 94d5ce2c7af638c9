"""Exact top-K under any number of budgets: branch-and-bound on per-cost Pareto fronts.

Candidates that can never fit, or that K others beat on score and every cost, are dropped first.
The walk then picks one candidate per block in order; a partial choice is abandoned as soon as
`partial score + bound(remaining budgets)` exceeds the K-th best score found, where the bound is
the best score the remaining blocks reach under each budget alone (the suffix Pareto fronts of
`pareto.py`, exact when there is one budget) and the largest of those is taken. Children are
visited best bound first, so the first leaf is usually the optimum and the rest is pruned.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from dnatool.search.pareto import block_front, front_bound, suffix_fronts
from dnatool.search.problem import Problem, Solution, make_problem, tolerances

WITNESSES = 192


@dataclass
class _Best:
    """The `top` best solutions so far, sorted by the total order."""

    top: int
    items: list[Solution] = field(default_factory=list)

    @property
    def threshold(self) -> float:
        return self.items[-1].score if len(self.items) >= self.top else np.inf

    def offer(self, solution: Solution) -> None:
        keys = [s.key for s in self.items]
        self.items.insert(bisect.bisect(keys, solution.key), solution)
        del self.items[self.top :]


def prefilter(problem: Problem, k: int, top: int) -> np.ndarray:
    """Candidate indices of block k worth walking: fits with the cheapest other blocks, and fewer
    than `top` witnesses beat it on score and on every cost (each such witness yields a better
    architecture, so `top` of them rule it out of the top-K)."""
    _, tol_c = tolerances(problem)
    others = problem.fixed + sum(c.min(axis=0) for j, c in enumerate(problem.costs) if j != k)
    s, c = problem.scores[k], problem.costs[k]
    cand = np.flatnonzero((others + c <= problem.budget + tol_c).all(axis=1))
    if len(cand) <= top:
        return cand
    order = np.lexsort((cand, *c[cand].T[::-1], s[cand]))
    pos = np.empty(len(cand), dtype=np.int64)
    pos[order] = np.arange(len(cand))
    sub = make_problem([s[cand]], [c[cand]], problem.fixed, problem.budget, problem.names)
    fronts = [block_front(sub, 0, d) for d in range(problem.dims)]
    spread = order[np.linspace(0, len(cand) - 1, min(WITNESSES, len(cand))).astype(np.int64)]
    wit = np.unique(np.concatenate([order[:WITNESSES], spread, *fronts]))
    beaten = np.zeros(len(cand), dtype=np.int64)
    for lo in range(0, len(cand), 2048):
        p = slice(lo, lo + 2048)
        dominated = (c[cand[wit]][None, :, :] <= c[cand[p]][:, None, :]).all(axis=2)
        beaten[p] = (dominated & (pos[wit][None, :] < pos[p][:, None])).sum(axis=1)
    return cand[beaten < top]


def branch_and_bound(problem: Problem, top: int = 1) -> list[Solution]:
    """The `top` best feasible architectures (empty when none fits), exactly."""
    cands = [prefilter(problem, k, top) for k in range(problem.blocks)]
    if any(len(c) == 0 for c in cands):
        return []
    sub = make_problem(
        [problem.scores[k][c] for k, c in enumerate(cands)],
        [problem.costs[k][c] for k, c in enumerate(cands)],
        problem.fixed,
        problem.budget,
        problem.names,
    )
    walk = _Walk(sub, cands, top)
    walk.visit(0, 0.0, sub.fixed.astype(np.float64), ())
    return walk.best.items


class _Walk:
    """The depth-first walk over blocks with front-based bounds."""

    def __init__(self, problem: Problem, cands: list[np.ndarray], top: int) -> None:
        self.p, self.cands, self.best = problem, cands, _Best(top)
        self.tol_s, self.tol_c = tolerances(problem)
        self.fronts = [suffix_fronts(problem, d) for d in range(problem.dims)]
        self.nodes = 0

    def visit(self, k: int, partial: float, cost: np.ndarray, picked: tuple[int, ...]) -> None:
        self.nodes += 1
        s = partial + self.p.scores[k]
        c = cost + self.p.costs[k]
        if k == self.p.blocks - 1:
            self._leaves(s, c, picked)
            return
        remaining = self.p.budget - c + self.tol_c
        bound = s + np.max(
            [front_bound(f[k + 1], remaining[:, d]) for d, f in enumerate(self.fronts)], axis=0
        )
        open_ = np.flatnonzero(bound <= self.best.threshold + self.tol_s)
        for i in open_[np.argsort(bound[open_], kind="stable")]:
            if bound[i] > self.best.threshold + self.tol_s:
                break
            self.visit(k + 1, s[i], c[i], (*picked, int(i)))

    def _leaves(self, s: np.ndarray, c: np.ndarray, picked: tuple[int, ...]) -> None:
        ok = np.flatnonzero((c <= self.p.budget).all(axis=1) & (s <= self.best.threshold))
        if len(ok) == 0:
            return
        order = ok[np.lexsort((ok, *c[ok].T[::-1], s[ok]))][: self.best.top]
        for i in order:
            chosen = (*picked, int(i))
            indices = tuple(int(self.cands[k][j]) for k, j in enumerate(chosen))
            self.best.offer(Solution(indices, float(s[i]), tuple(float(v) for v in c[i])))
