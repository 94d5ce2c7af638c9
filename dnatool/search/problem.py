"""The search problem as plain arrays, and the one total order every solver uses.

Block k offers `n_k` candidates (rated paths) with a weighted score and a cost vector (one entry per
constrained quantity). An architecture picks one candidate per block; its score and costs are
left folds in block order (`fixed + c_0 + c_1 + ...`, `0 + s_0 + s_1 + ...`), computed the same
way by every solver so that float sums, and therefore ties, agree bit for bit. Architectures are
ordered by (score, costs in order, candidate indices lexicographically): ties are broken by lower
cost, then by the earlier candidates of the score lists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dnatool.errors import BadInput

COST_NAMES = ("latency_ms", "params", "macs")


class BlockShape:
    """Sizes shared by the plain and the coupled problem (both hold `scores` and `names`)."""

    scores: tuple[np.ndarray, ...]
    names: tuple[str, ...]

    @property
    def blocks(self) -> int:
        return len(self.scores)

    @property
    def dims(self) -> int:
        return len(self.names)

    @property
    def size(self) -> int:
        """Architectures covered: the product of the candidate counts."""
        return math.prod(len(s) for s in self.scores)


@dataclass(frozen=True)
class Problem(BlockShape):
    """Weighted scores `(n_k,)` and costs `(n_k, D)` per block, fixed costs `(D,)`, budgets `(D,)`."""

    scores: tuple[np.ndarray, ...]
    costs: tuple[np.ndarray, ...]
    fixed: np.ndarray
    budget: np.ndarray
    names: tuple[str, ...]

    def totals(self, indices: tuple[int, ...]) -> tuple[float, np.ndarray]:
        """Score and costs of one architecture, folded exactly as the solvers fold them."""
        score, cost = 0.0, self.fixed.astype(np.float64)
        for k, i in enumerate(indices):
            score = score + self.scores[k][i]
            cost = cost + self.costs[k][i]
        return float(score), cost


@dataclass(frozen=True)
class Solution:
    """One architecture: its candidate index per block, its score and its cost vector."""

    indices: tuple[int, ...]
    score: float
    costs: tuple[float, ...]

    @property
    def key(self) -> tuple:
        return (self.score, *self.costs, *self.indices)


def make_problem(
    scores: list[np.ndarray],
    costs: list[np.ndarray],
    fixed: np.ndarray,
    budget: np.ndarray,
    names: tuple[str, ...],
) -> Problem:
    """Validate shapes once so solvers can trust them."""
    fixed = np.asarray(fixed, dtype=np.float64).reshape(-1)
    budget = np.asarray(budget, dtype=np.float64).reshape(-1)
    if not (len(names) == len(fixed) == len(budget)) or len(scores) != len(costs) or not scores:
        raise BadInput(
            "search problem: names, fixed costs and budgets must have one entry per quantity"
        )
    s = tuple(np.ascontiguousarray(x, dtype=np.float64).reshape(-1) for x in scores)
    c = tuple(np.ascontiguousarray(x, dtype=np.float64) for x in costs)
    c = tuple(x[:, None] if x.ndim == 1 and len(names) == 1 else x for x in c)
    if any(x.ndim != 2 or x.shape[1] != len(names) for x in c):
        raise BadInput(f"search problem: costs must be (candidates x {len(names)}) per block")
    if any(len(a) == 0 or len(a) != len(b) for a, b in zip(s, c, strict=True)):
        raise BadInput("search problem: every block needs at least one candidate with costs")
    if not all(np.isfinite(a).all() for a in s + c):
        raise BadInput("search problem: scores and costs must be finite")
    return Problem(scores=s, costs=c, fixed=fixed, budget=budget, names=tuple(names))


def tolerances(problem: Problem) -> tuple[float, np.ndarray]:
    """Slack for bounds computed in another summation order: pruning stays conservative."""
    score_scale = sum(float(np.abs(s).max()) for s in problem.scores) + 1.0
    cost_scale = np.abs(problem.fixed) + sum(np.abs(c).max(axis=0) for c in problem.costs)
    finite = np.where(np.isfinite(problem.budget), np.abs(problem.budget), 0.0)
    return 1e-9 * score_scale, 1e-9 * (np.maximum(cost_scale, finite) + 1.0)


def min_totals(problem: Problem) -> np.ndarray:
    """Smallest achievable value of each cost, each on its own, folded as `totals` folds it (so
    a budget equal to the fastest front point is feasible, to the last bit)."""
    total = problem.fixed.astype(np.float64)
    for c in problem.costs:
        total = total + c.min(axis=0)
    return total


def check_feasible(problem: Problem, units: dict[str, str] | None = None) -> None:
    """One-line BadInput naming the smallest achievable cost when a budget cannot be met alone."""
    lowest = min_totals(problem)
    for d, name in enumerate(problem.names):
        if lowest[d] > problem.budget[d]:
            raise BadInput(
                f"no architecture fits {name} <= {_fmt(name, problem.budget[d])}: "
                f"the smallest achievable {name} is {_fmt(name, lowest[d], up=True)}"
            )


def infeasible_together(problem: Problem) -> BadInput:
    """The error when each budget can be met alone but not all at once."""
    lowest = min_totals(problem)
    parts = ", ".join(
        f"{n} <= {_fmt(n, problem.budget[d])} (smallest alone {_fmt(n, lowest[d], up=True)})"
        for d, n in enumerate(problem.names)
    )
    return BadInput(f"no architecture meets all budgets together: {parts}")


def _fmt(name: str, value: float, up: bool = False) -> str:
    """`up`: a smallest achievable cost is rounded up, so that typing it back as the budget fits."""
    if name == "latency_ms":
        if up and value > 0:
            scale = 10.0 ** (3 - math.floor(math.log10(value)))
            value = math.ceil(value * scale) / scale
        return f"{value:.4g} ms"
    from dnatool.utils.units import format_count

    if up:
        return f"{math.ceil(value)} ({format_count(value)})"
    return format_count(value)
