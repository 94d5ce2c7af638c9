"""`dnatool search` as a library call: score lists + costs + budgets -> winner, top-K and front.

Costs of every rated path are computed once (params / MACs from timm modules, latency from the
table), the objective is `sum_k lambda_k * score_k`, and the exact solver is chosen by the shape of
the request: one budget and one answer -> the merged Pareto front; several budgets or top-K ->
branch-and-bound on the fronts; `algorithm="dfs"` -> the paper's walk.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnatool.arch.space import SearchSpace
from dnatool.errors import BadInput
from dnatool.search import costs as C
from dnatool.search.inputs import ScoreList
from dnatool.search.problem import (
    COST_NAMES,
    Problem,
    Solution,
    check_feasible,
    infeasible_together,
    make_problem,
)

Report = Callable[..., None]
ALGORITHMS = ("exact", "dfs")


@dataclass
class SearchResult:
    """Everything `search.json`, the plot and the `--json` summary are made of."""

    space: SearchSpace
    winner: dict[str, Any]
    top: list[dict[str, Any]]
    front: list[dict[str, Any]]
    front_axis: str
    budget: dict[str, float]
    requested: dict[str, float]
    margin: float
    weights: list[float]
    algorithm: str
    seconds: float
    cost_seconds: float
    evaluated_space_size: int
    extra: dict[str, Any] = field(default_factory=dict)


def table_params_macs(
    space: SearchSpace, lut: Any
) -> tuple[tuple[int, int] | None, list[np.ndarray | None]]:
    """Params and MACs stored in the latency table under the same keys as its latencies (so
    a latency search needs no torch), or (None, []) when the table has no counts."""
    if lut is None or not hasattr(lut, "layer_costs"):
        return None, []
    fixed = lut.fixed_costs(space)
    layers = [lut.layer_costs(space, k) for k in range(len(space.blocks))]
    if fixed is None or any(layer is None for layer in layers):
        return None, []
    return fixed, layers


def path_costs(
    space: SearchSpace, lists: list[ScoreList], lut: C.LatencyTable | None, report: Report
) -> dict[str, tuple[float, list[np.ndarray]]]:
    """Fixed cost and per-path cost arrays for params, MACs and (with a table) latency."""
    fixed_pm, layers = table_params_macs(space, lut)
    if fixed_pm is None:
        report("log", message="search: params and MACs of every op")
        fixed_pm, layers = C.fixed_params_macs(space), [None] * len(lists)
    pm = [
        C.path_params_macs(space, k, lst.paths, layers[k]).astype(np.float64)
        for k, lst in enumerate(lists)
    ]
    out = {
        "params": (float(fixed_pm[0]), [a[:, 0] for a in pm]),
        "macs": (float(fixed_pm[1]), [a[:, 1] for a in pm]),
    }
    if lut is not None:
        report("start", task="latency of every path", total=len(lists))
        lat = []
        for k, lst in enumerate(lists):
            lat.append(C.path_latency_ms(lut, space, k, lst.cells, lst.paths))
            report("advance", task="latency of every path")
        out["latency_ms"] = (float(lut.fixed_latency_ms(space)), lat)
    return out


def build_problem(
    lists: list[ScoreList],
    costs: dict[str, tuple[float, list[np.ndarray]]],
    names: list[str],
    budget: dict[str, float],
    weights: list[float],
) -> Problem:
    scores = [w * lst.scores for w, lst in zip(weights, lists, strict=True)]
    per_block = [np.stack([costs[n][1][k] for n in names], axis=1) for k in range(len(lists))]
    return make_problem(
        scores,
        per_block,
        np.array([costs[n][0] for n in names]),
        np.array([budget.get(n, np.inf) for n in names]),
        tuple(names),
    )


def check_request(
    space: SearchSpace,
    budgets: dict[str, float],
    lut: Any,
    weights: list[float] | None,
    margin: float,
    top: int,
    algorithm: str,
) -> list[float]:
    """Bad combinations are refused before any work; returns the block weights."""
    unknown = sorted(set(budgets) - set(COST_NAMES))
    if unknown:
        raise BadInput(f"unknown budget {unknown[0]!r} (known: {', '.join(COST_NAMES)})")
    if not budgets:
        raise BadInput("give at least one budget: --latency, --params or --macs")
    if "latency_ms" in budgets and lut is None:
        raise BadInput("--latency needs a latency table: pass --lut LUT (from `dnatool profile`)")
    if not 0 <= margin < 1:
        raise BadInput(f"--margin must be in [0, 1), got {margin:g}")
    if top < 1:
        raise BadInput(f"--top must be >= 1, got {top}")
    if algorithm not in ALGORITHMS:
        raise BadInput(f"unknown algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})")
    if algorithm == "dfs" and top != 1:
        raise BadInput("--algorithm dfs finds the single best architecture; use --top 1 with it")
    weights = [1.0] * len(space.blocks) if weights is None else [float(w) for w in weights]
    if len(weights) != len(space.blocks) or not all(np.isfinite(w) and w >= 0 for w in weights):
        raise BadInput(f"--weights needs {len(space.blocks)} non-negative numbers (one per block)")
    return weights


def solve(problem: Problem, top: int, algorithm: str) -> list[Solution]:
    """The exact answer by the fastest exact method for the request's shape."""
    from dnatool.search.bnb import branch_and_bound
    from dnatool.search.dfs import paper_dfs
    from dnatool.search.pareto import pareto_winner

    if algorithm == "dfs":
        best = paper_dfs(problem)
        return [best] if best else []
    if problem.dims == 1 and top == 1:
        best = pareto_winner(problem)[1]
        return [best] if best else []
    return branch_and_bound(problem, top)


def search(
    space: SearchSpace,
    lists: list[ScoreList],
    budgets: dict[str, float],
    *,
    lut: C.LatencyTable | None = None,
    weights: list[float] | None = None,
    top: int = 1,
    margin: float = 0.0,
    algorithm: str = "exact",
    report: Report | None = None,
) -> SearchResult:
    """The exact best architecture(s) under every budget (each scaled by `1 - margin`)."""
    from dnatool.search.pareto import merge_fronts

    report = report or (lambda event, **fields: None)
    weights = check_request(space, budgets, lut, weights, margin, top, algorithm)
    start = time.perf_counter()
    costs = path_costs(space, lists, lut, report)
    cost_seconds = time.perf_counter() - start
    names = [n for n in COST_NAMES if n in budgets]
    budget = {n: float(budgets[n]) * (1.0 - margin) for n in names}
    problem = build_problem(lists, costs, names, budget, weights)
    check_feasible(problem)
    start = time.perf_counter()
    found = solve(problem, top, algorithm)
    if not found:
        raise infeasible_together(problem)
    axis = "latency_ms" if "latency_ms" in costs else names[0]
    front = merge_fronts(build_problem(lists, costs, [axis], {}, weights), 0)
    seconds = time.perf_counter() - start
    report(
        "log",
        message=f"search: {algorithm} solved {problem.size:,} architectures in {seconds:.3f} s",
    )
    describe = _describer(space, lists, costs, weights)
    front_entries = [describe(front.indices(i)) for i in range(len(front))]
    return SearchResult(
        space=space,
        winner=describe(found[0].indices, arch=True),
        top=[describe(s.indices) for s in found],
        front=front_entries,
        front_axis=axis,
        budget=budget,
        requested={n: float(budgets[n]) for n in names},
        margin=margin,
        weights=weights,
        algorithm=algorithm,
        seconds=seconds,
        cost_seconds=cost_seconds,
        evaluated_space_size=problem.size,
    )


def _describer(
    space: SearchSpace,
    lists: list[ScoreList],
    costs: dict[str, tuple[float, list[np.ndarray]]],
    weights: list[float],
) -> Callable[..., dict[str, Any]]:
    """Turns candidate indices into a result entry; totals folded like the solvers fold them."""

    def describe(indices: tuple[int, ...], arch: bool = False) -> dict[str, Any]:
        choices = [lst.choice(i) for lst, i in zip(lists, indices, strict=True)]
        score = 0.0
        for w, lst, i in zip(weights, lists, indices, strict=True):
            score = score + w * lst.scores[i]
        entry: dict[str, Any] = {
            "choices": [[c, list(p)] for c, p in choices],
            "score": float(score),
            "block_scores": [float(lst.scores[i]) for lst, i in zip(lists, indices, strict=True)],
        }
        for name in COST_NAMES:
            if name in costs:
                total = costs[name][0]
                for k, i in enumerate(indices):
                    total = total + costs[name][1][k][i]
                entry[name] = float(total) if name == "latency_ms" else int(round(total))
            else:
                entry[name] = None
        if arch:
            entry = {"arch": space.to_arch(choices).to_dict(), **entry}
        return entry

    return describe
