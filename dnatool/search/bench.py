"""`dnatool bench search`: the exact method against the paper's walk on the same problems.

Both solvers get the same SYNTHETIC score lists and SYNTHETIC latency table (realistic shapes, not
measurements) and a series of latency budgets spread between the cheapest and the costliest
architecture. The walk's time grows steeply as budgets tighten, so each walk has a deadline;
problems where it ran out are counted at the deadline (the speedup is then a lower bound).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dnatool.arch.space import load_space
from dnatool.search.costs import Costs, path_latency_ms
from dnatool.search.coupled import CoupledProblem, coupled_dfs
from dnatool.search.dfs import DfsTimeout, paper_dfs
from dnatool.search.engine import build_problem, solve
from dnatool.search.problem import Problem
from dnatool.search.synthetic import LABEL, SyntheticLatencyTable, synthetic_score_lists
from dnatool.utils.events import quiet

FRACTIONS = (0.55, 0.6, 0.65, 0.7, 0.8, 0.9)


def latency_problems(
    space_name: str, fractions: Sequence[float], seed: int = 0
) -> tuple[int, list[Problem | CoupledProblem]]:
    """One single-budget problem per fraction of the [cheapest, costliest] latency range (coupled
    spaces: of the range between the sums of the cheapest and costliest candidates)."""
    space, _, problems = latency_setup(space_name, fractions, seed)
    return space.size, problems


def latency_setup(
    space_name: str, fractions: Sequence[float], seed: int = 0
) -> tuple[Any, list[Any], list[Problem | CoupledProblem]]:
    """The space, its SYNTHETIC score lists and `latency_problems`' problems."""
    space = load_space(space_name)
    table = SyntheticLatencyTable(seed=seed)
    lists = synthetic_score_lists(space, seed)
    lat = tuple(
        path_latency_ms(table, space, k, lst.cells, lst.paths) for k, lst in enumerate(lists)
    )
    heads = space.in_widths(len(space.blocks))
    costs = {
        "latency_ms": Costs(float(table.fixed_latency_ms(space)), lat)
        if len(heads) == 1
        else Costs(
            float(table.stem_latency_ms(space)),
            lat,
            np.array([table.head_latency_ms(space, w) for w in heads]),
        )
    }
    base = build_problem(space, lists, costs, ["latency_ms"], {}, [1.0] * len(lists))
    per_block = [c.reshape(-1, 1) for c in base.costs]
    lo = base.fixed + sum(c.min() for c in per_block)
    hi = base.fixed + sum(c.max() for c in per_block)
    return space, lists, [dataclasses.replace(base, budget=lo + f * (hi - lo)) for f in fractions]


def time_exact(problem: Problem) -> tuple[float, Any]:
    start = time.perf_counter()
    found = solve(problem, 1, "exact")
    return time.perf_counter() - start, found[0] if found else None


def time_dfs(problem: Problem, timeout: float) -> tuple[float, Any, bool]:
    start = time.perf_counter()
    try:
        walk = coupled_dfs if isinstance(problem, CoupledProblem) else paper_dfs
        found = walk(problem, deadline=start + timeout)
    except DfsTimeout:
        return timeout, None, False
    return time.perf_counter() - start, found, True


def bench_search(
    space_name: str = "dna-mbconv",
    fractions: Sequence[float] = FRACTIONS,
    dfs_timeout: float = 30.0,
    seed: int = 0,
    report: Callable[..., None] | None = None,
) -> dict[str, Any]:
    """Times of both methods summed over the problems, and whether their optima agree.

    `same_optimum` covers the problems where the walk finished; None when none did (nothing was
    compared).
    """
    report = report or quiet
    size, problems = latency_problems(space_name, fractions, seed)
    rows = []
    report("start", task="bench search", total=len(problems))
    for fraction, problem in zip(fractions, problems, strict=True):
        exact_s, exact = time_exact(problem)
        dfs_s, dfs, finished = time_dfs(problem, dfs_timeout)
        same = (
            None
            if not finished
            else (dfs is None and exact is None)
            or (dfs is not None and exact is not None and dfs.key == exact.key)
        )
        rows.append(
            {
                "budget_ms": float(problem.budget[0]),
                "fraction": fraction,
                "exact_seconds": exact_s,
                "dfs_seconds": dfs_s,
                "dfs_finished": finished,
                "same_optimum": same,
                "score": exact.score if exact else None,
            }
        )
        report("advance", task="bench search")
    exact_total = sum(r["exact_seconds"] for r in rows)
    dfs_total = sum(r["dfs_seconds"] for r in rows)
    finished = [r for r in rows if r["dfs_finished"]]
    return {
        "space_size": size,
        "distinct_space_size": load_space(space_name).distinct,
        "exact_seconds": exact_total,
        "dfs_seconds": dfs_total,
        "speedup": dfs_total / exact_total,
        "same_optimum": all(r["same_optimum"] for r in finished) if finished else None,
        "speedup_is_lower_bound": len(finished) < len(rows),
        "dfs_finished": len(finished),
        "problems": len(rows),
        "exact_max_seconds": max(r["exact_seconds"] for r in rows),
        "space": space_name,
        "dfs_timeout_seconds": dfs_timeout,
        "rows": rows,
        "data": LABEL,
    }


def bench_evolution(
    space_name: str = "dna-mbconv",
    fractions: Sequence[float] = FRACTIONS,
    seed: int = 0,
    trials: int = 5,
    settings: Any = None,
    report: Callable[..., None] | None = None,
) -> dict[str, Any]:
    """SPOS's evolutionary search against the exact optimum on the same problems: its relative
    gap (evolution's score / optimum - 1, scores lower is better), how often it found the
    optimum, and its evaluations (distinct architectures scored), over `trials` seeds per budget."""
    from dnatool.search.evolution import EvolutionSettings, Genome, evolve

    report = report or quiet
    settings = settings or EvolutionSettings()
    space, lists, problems = latency_setup(space_name, fractions, seed)
    genome = Genome.from_lists(space, lists)
    rows = []
    report("start", task="bench evolution", total=len(problems) * trials)
    for fraction, problem in zip(fractions, problems, strict=True):
        exact_s, exact = time_exact(problem)
        for trial in range(trials):
            run = dataclasses.replace(settings, seed=settings.seed + trial)
            start = time.perf_counter()
            outcome = evolve(problem, genome, run)
            best = outcome.top[0]
            rows.append(
                {
                    "budget_ms": float(problem.budget[0]),
                    "fraction": fraction,
                    "seed": run.seed,
                    "exact_score": exact.score,
                    "evolution_score": best.score,
                    "gap": best.score / exact.score - 1.0,
                    "found_optimum": best.key == exact.key,
                    "within_budget": bool((np.array(best.costs) <= problem.budget).all()),
                    "evaluations": outcome.evaluations,
                    "evolution_seconds": time.perf_counter() - start,
                    "exact_seconds": exact_s,
                }
            )
            report("advance", task="bench evolution")
    gaps = [r["gap"] for r in rows]
    return {
        "algorithm": "evolution",
        "space": space_name,
        "space_size": space.size,
        "distinct_space_size": space.distinct,
        "settings": settings.to_dict(),
        "problems": len(problems),
        "trials": trials,
        "gap_mean": float(np.mean(gaps)),
        "gap_median": float(np.median(gaps)),
        "gap_max": float(np.max(gaps)),
        "found_optimum": sum(r["found_optimum"] for r in rows),
        "runs": len(rows),
        "all_within_budget": all(r["within_budget"] for r in rows),
        "evaluations_mean": float(np.mean([r["evaluations"] for r in rows])),
        "evaluations_max": max(r["evaluations"] for r in rows),
        "evolution_seconds_mean": float(np.mean([r["evolution_seconds"] for r in rows])),
        "exact_seconds_mean": float(np.mean([r["exact_seconds"] for r in rows[::trials]])),
        "rows": rows,
        "data": LABEL,
    }
