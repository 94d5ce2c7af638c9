"""`dnatool search` as a library call: score lists + costs + budgets -> winner, top-K and front.

Costs of every rated path are computed once (params / MACs from timm modules, latency from the
table), the objective is `sum_k lambda_k * score_k`, and the exact solver is chosen by the shape of
the request: one budget and one answer -> the merged Pareto front; several budgets or top-K ->
branch-and-bound on the fronts; `algorithm="dfs"` -> the paper's walk; `algorithm="evolution"`
-> SPOS's evolutionary search over the same problem (not exact: a baseline, and what SPOS runs,
which have no score lists, use).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnatool.arch.paths import out_states
from dnatool.arch.space import SearchSpace
from dnatool.errors import BadInput
from dnatool.rate.score_lists import ScoreList
from dnatool.search import costs as C
from dnatool.search.coupled import (
    CoupledProblem,
    as_uncoupled,
    coupled_check_feasible,
    coupled_front,
    coupled_infeasible_together,
    coupled_solve,
    make_coupled_problem,
)
from dnatool.search.problem import (
    COST_NAMES,
    Problem,
    Solution,
    check_feasible,
    infeasible_together,
)
from dnatool.utils.events import Report, quiet

ALGORITHMS = ("exact", "dfs", "evolution")


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
    space: SearchSpace, lut: C.LatencyTable | None
) -> tuple[list[tuple[int, int]] | None, list]:
    """Params and MACs stored in the latency table under the same keys as its latencies (so
    a latency search needs no torch): fixed costs per head width and per-block grids, or
    (None, []) when the table has no counts."""
    if lut is None:
        return None, []
    heads = space.in_widths(len(space.blocks))
    fixed = [lut.fixed_costs(space, w) for w in heads]
    layers = [lut.layer_costs(space, k) for k in range(len(space.blocks))]
    if any(f is None for f in fixed) or any(layer is None for layer in layers):
        return None, []
    return fixed, layers


def path_costs(
    space: SearchSpace, lists: list[ScoreList], lut: C.LatencyTable | None, report: Report
) -> dict[str, C.Costs]:
    """Every listed path's params, MACs and (with a table) latency on each input state."""
    heads = space.in_widths(len(space.blocks))
    fixed_pm, layers = table_params_macs(space, lut)
    if fixed_pm is None:
        report("log", message="search: params and MACs of every op")
        fixed_pm = [C.fixed_params_macs(space, w) for w in heads]
        layers = [None] * len(lists)
    pm = [
        C.path_params_macs(space, k, lst.cells, lst.paths, layers[k]).astype(np.float64)
        for k, lst in enumerate(lists)
    ]
    fixed_pm = np.array(fixed_pm, dtype=np.float64)
    out = {
        name: _costs(fixed_pm[:, d], [a[..., d] for a in pm])
        for d, name in enumerate(("params", "macs"))
    }
    if lut is not None:
        report("start", task="latency of every path", total=len(lists))
        lat = []
        for k, lst in enumerate(lists):
            lat.append(C.path_latency_ms(lut, space, k, lst.cells, lst.paths))
            report("advance", task="latency of every path")
        if len(heads) == 1:
            out["latency_ms"] = C.Costs(float(lut.fixed_latency_ms(space)), tuple(lat))
        else:
            head = np.array([lut.head_latency_ms(space, w) for w in heads])
            out["latency_ms"] = C.Costs(float(lut.stem_latency_ms(space)), tuple(lat), head)
    return out


def _costs(fixed: np.ndarray, blocks: list[np.ndarray]) -> C.Costs:
    """Fixed costs per head width: one number, or nothing fixed and the whole part per width
    (added to the last block's candidates by `build_problem`)."""
    if len(fixed) == 1:
        return C.Costs(float(fixed[0]), tuple(blocks))
    return C.Costs(0.0, tuple(blocks), fixed)


def build_problem(
    space: SearchSpace,
    lists: list[ScoreList],
    costs: dict[str, C.Costs],
    names: list[str],
    budget: dict[str, float],
    weights: list[float],
) -> Problem | CoupledProblem:
    """The search problem; a plain `Problem` when no interface is coupled (today's solvers and
    speed), else a `CoupledProblem` whose last block carries the head's per-width cost."""
    scores = [w * lst.scores for w, lst in zip(weights, lists, strict=True)]
    per_block = [np.stack([costs[n].blocks[k] for n in names], axis=-1) for k in range(len(lists))]
    out_state = [out_states(space, k, lst.cells) for k, lst in enumerate(lists)]
    heads = [costs[n].head for n in names]
    if any(h is not None for h in heads):
        head = np.stack(
            [np.zeros(len(space.in_widths(len(lists)))) if h is None else h for h in heads], axis=-1
        )
        per_block[-1] = per_block[-1] + head[out_state[-1]][None]
    out_state[-1] = np.zeros(len(lists[-1].scores), dtype=np.int64)
    problem = make_coupled_problem(
        scores,
        per_block,
        out_state,
        np.array([costs[n].fixed for n in names]),
        np.array([budget.get(n, np.inf) for n in names]),
        tuple(names),
    )
    return as_uncoupled(problem) or problem


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


def solve(problem: Problem | CoupledProblem, top: int, algorithm: str) -> list[Solution]:
    """The exact answer by the fastest exact method for the request's shape."""
    from dnatool.search.bnb import branch_and_bound
    from dnatool.search.dfs import paper_dfs
    from dnatool.search.pareto import pareto_winner

    if isinstance(problem, CoupledProblem):
        return coupled_solve(problem, top, algorithm)
    if algorithm == "dfs":
        best = paper_dfs(problem)
        return [best] if best else []
    if problem.dims == 1 and top == 1:
        best = pareto_winner(problem)[1]
        return [best] if best else []
    return branch_and_bound(problem, top)


def whole_front(problem: Problem | CoupledProblem) -> Any:
    """The exact score / cost front of the whole space along its one cost (for the plot)."""
    from dnatool.search.pareto import merge_fronts

    if isinstance(problem, CoupledProblem):
        return coupled_front(problem, 0)
    return merge_fronts(problem, 0)


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
    evolution: Any = None,
    state_path: Any = None,
) -> SearchResult:
    """The exact best architecture(s) under every budget (each scaled by `1 - margin`); with
    `algorithm="evolution"`, the best `evolution` (EvolutionSettings) finds, its state kept at
    `state_path` so that a killed search resumes."""
    report = report or quiet
    weights = check_request(space, budgets, lut, weights, margin, top, algorithm)
    if lut is not None:
        lut.check_space(space)
    start = time.perf_counter()
    costs = path_costs(space, lists, lut, report)
    cost_seconds = time.perf_counter() - start
    names = [n for n in COST_NAMES if n in budgets]
    budget = {n: float(budgets[n]) * (1.0 - margin) for n in names}
    problem = build_problem(space, lists, costs, names, budget, weights)
    coupled = isinstance(problem, CoupledProblem)
    (coupled_check_feasible if coupled else check_feasible)(problem)
    start = time.perf_counter()
    extra: dict[str, Any] = {}
    if algorithm == "evolution":
        found, extra = _evolve(space, lists, problem, top, evolution, state_path, report)
    else:
        found = solve(problem, top, algorithm)
    if not found:
        raise (coupled_infeasible_together if coupled else infeasible_together)(problem)
    axis = "latency_ms" if "latency_ms" in costs else names[0]
    front = whole_front(build_problem(space, lists, costs, [axis], {}, weights))
    seconds = time.perf_counter() - start
    size = problem.routes if isinstance(problem, CoupledProblem) else problem.size
    done = (
        f"evaluated {extra['evaluations']:,} of {size:,}"
        if algorithm == "evolution"
        else f"solved {size:,}"
    )
    report("log", message=f"search: {algorithm} {done} distinct architectures in {seconds:.3f} s")
    everything = [n for n in COST_NAMES if n in costs]
    describe = _describer(
        space, lists, build_problem(space, lists, costs, everything, {}, weights), weights
    )
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
        evaluated_space_size=extra.get("evaluations", size),
        extra={"coupled": coupled, "distinct_space_size": space.distinct, **extra},
    )


def _evolve(
    space: SearchSpace,
    lists: list[ScoreList],
    problem: Problem | CoupledProblem,
    top: int,
    settings: Any,
    state_path: Any,
    report: Report,
) -> tuple[list[Solution], dict[str, Any]]:
    """Evolution over the score lists' rows, fitness = the weighted score sum."""
    from dnatool.search.evolution import (
        EvolutionSettings,
        Genome,
        evolve,
        problem_digest,
        state_io,
    )

    settings = settings or EvolutionSettings()
    state, save = state_io(state_path)
    identity = {"problem": problem_digest(problem)}
    outcome = evolve(
        problem,
        Genome.from_lists(space, lists),
        settings,
        top=top,
        state=state,
        identity=identity,
        save=save,
        report=report,
    )
    return outcome.top, evolution_extra(outcome, settings, state_path, "weighted score")


def evolution_extra(outcome: Any, settings: Any, state_path: Any, fitness: str) -> dict[str, Any]:
    """What search.json records of an evolutionary search."""
    return {
        "evaluations": outcome.evaluations,
        "evolution": {
            "settings": settings.to_dict(),
            "fitness": fitness,
            "evaluations": outcome.evaluations,
            "history": outcome.history,
            "state": str(state_path) if state_path else None,
        },
    }


def _describer(
    space: SearchSpace,
    lists: list[ScoreList],
    problem: Problem | CoupledProblem,
    weights: list[float],
) -> Callable[..., dict[str, Any]]:
    """Turns candidate indices into a result entry; totals folded like the solvers fold them."""

    def describe(indices: tuple[int, ...], arch: bool = False) -> dict[str, Any]:
        choices = [lst.choice(i) for lst, i in zip(lists, indices, strict=True)]
        score, totals = problem.totals(indices)
        entry: dict[str, Any] = {
            "choices": [[c, list(p)] for c, p in choices],
            "score": float(score),
            "block_scores": [float(lst.scores[i]) for lst, i in zip(lists, indices, strict=True)],
        }
        for name in COST_NAMES:
            if name in problem.names:
                total = totals[problem.names.index(name)]
                entry[name] = float(total) if name == "latency_ms" else int(round(total))
            else:
                entry[name] = None
        if arch:
            entry = {"arch": space.to_arch(choices).to_dict(), **entry}
        return entry

    return describe
