"""`dnatool search RUN --algorithm evolution` on an SPOS run: SPOS's evolutionary search with the
supernet as the fitness (top-1 error on the rating split after BN recalibration, `rate.spos`).

SPOS runs have no score lists (1e17 paths cannot be rated), so the genes are rows of every path of
every block (`arch.paths.all_paths`), and costs come from the same per-layer grids as the exact
search (`engine.path_costs`: params / MACs from timm's modules or the table, latency from the
table) folded by the same `problem.totals`. `search.json` has the same shape as the exact
search's; its `front` is the Pareto front of the evaluated architectures.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from dnatool.arch.paths import all_paths
from dnatool.arch.space import SearchSpace
from dnatool.errors import BadInput
from dnatool.rate.score_lists import ScoreList
from dnatool.search.engine import (
    SearchResult,
    build_problem,
    check_request,
    evolution_extra,
    path_costs,
)
from dnatool.search.problem import COST_NAMES, check_feasible, infeasible_together
from dnatool.utils.events import Report, quiet
from dnatool.utils.locks import locked

FITNESS = "top-1 error (%) on the rating split"


def every_path(space: SearchSpace) -> list[ScoreList]:
    """Every path of every block as rows (scores unused: zero)."""
    lists = []
    for k in range(len(space.blocks)):
        cells, paths = all_paths(space, k)
        lists.append(ScoreList(cells, paths, np.zeros(len(cells))))
    return lists


@locked(lambda a: a["out"] or Path(a["run"]) / "search.json")  # one writer per result
def search_spos_run(
    run: str | Path,
    budgets: dict[str, float],
    *,
    lut: str | Path | None = None,
    out: str | Path | None = None,
    space_ref: str | None = None,
    report: Report | None = None,
    verify: bool = False,
    weights: list[float] | None = None,
    top: int = 5,
    margin: float = 0.0,
    algorithm: str = "evolution",
    evolution: Any = None,
    bn_batches: int | None = None,
    bn_mode: str | None = None,
) -> tuple[SearchResult, Path, Path]:
    """Evolutionary search of an SPOS run under `budgets`; writes search.json, pareto.png, the
    fitness plot and the evolution state (resumed when a search with the same settings was
    killed)."""
    from dnatool.rate.spos import Evaluator, fitness_of, load_spos
    from dnatool.search import result as R
    from dnatool.search.coupled import (
        CoupledProblem,
        coupled_check_feasible,
        coupled_infeasible_together,
    )
    from dnatool.search.evolution import EvolutionSettings, Genome, evolve, state_io, state_paths
    from dnatool.search.run import load_table, verify_winner
    from dnatool.utils.io import file_sha256

    report = report or quiet
    if algorithm != "evolution":
        raise BadInput(
            f"an SPOS run has no score lists for --algorithm {algorithm}: use --algorithm evolution"
        )
    if weights is not None:
        raise BadInput("--weights weighs DNA's block scores; an SPOS run's fitness is its top-1")
    table = load_table(lut)
    if verify and table is None:
        raise BadInput("--verify needs --lut (the table names the backend to measure on)")
    loaded = load_spos(run)
    space = loaded.space
    if space_ref and space_ref not in (space.name, loaded.recipe.space):
        raise BadInput(f"run {run} was trained on space {space.name!r}, not {space_ref!r}")
    check_request(space, budgets, table, None, margin, top, "evolution")
    if table is not None:
        table.check_space(space)
    settings = evolution or EvolutionSettings()
    began = time.perf_counter()
    lists = every_path(space)
    costs = path_costs(space, lists, table, report)
    cost_seconds = time.perf_counter() - began
    names = [n for n in COST_NAMES if n in budgets]
    budget = {n: float(budgets[n]) * (1.0 - margin) for n in names}
    ones = [1.0] * len(lists)
    problem = build_problem(space, lists, costs, names, budget, ones)
    coupled = isinstance(problem, CoupledProblem)
    (coupled_check_feasible if coupled else check_feasible)(problem)
    evaluate = Evaluator(loaded, bn_batches, bn_mode)
    fitness = fitness_of(evaluate)
    out = Path(out or Path(run) / "search.json")
    state_path = state_paths(out)[0]
    state, save = state_io(state_path)
    identity = {
        "checkpoint_sha256": file_sha256(Path(run) / "supernet" / "spos.pt"),
        "evaluation": evaluate.settings,
        "budget": budget,
        "lut": file_sha256(lut) if lut else None,
    }
    start = time.perf_counter()
    outcome = evolve(
        problem,
        Genome.from_lists(space, lists),
        settings,
        fitness=lambda ind: fitness([lst.choice(i) for lst, i in zip(lists, ind, strict=True)]),
        top=top,
        state=state,
        identity=identity,
        save=save,
        report=report,
    )
    if not outcome.top:
        raise (coupled_infeasible_together if coupled else infeasible_together)(problem)
    seconds = time.perf_counter() - start
    everything = [n for n in COST_NAMES if n in costs]
    full = build_problem(space, lists, costs, everything, {}, ones)

    def describe(ind: tuple[int, ...], arch: bool = False) -> dict[str, Any]:
        choices = [lst.choice(i) for lst, i in zip(lists, ind, strict=True)]
        totals = full.totals(ind)[1]
        info = outcome.info[ind]
        entry: dict[str, Any] = {
            "choices": [[c, list(p)] for c, p in choices],
            "score": 100.0 - info["top1"],
            "top1": info["top1"],
            "loss": info["loss"],
        }
        for name in COST_NAMES:
            value = totals[full.names.index(name)] if name in full.names else None
            entry[name] = (
                None
                if value is None
                else float(value)
                if name == "latency_ms"
                else int(round(value))
            )
        return {"arch": space.to_arch(choices).to_dict(), **entry} if arch else entry

    axis = "latency_ms" if "latency_ms" in costs else names[0]
    evaluated = [describe(ind) for ind in outcome.info]
    result = SearchResult(
        space=space,
        winner=describe(outcome.top[0].indices, arch=True),
        top=[describe(s.indices) for s in outcome.top],
        front=evaluated_front(evaluated, axis),
        front_axis=axis,
        budget=budget,
        requested={n: float(budgets[n]) for n in names},
        margin=margin,
        weights=ones,
        algorithm="evolution",
        seconds=seconds,
        cost_seconds=cost_seconds,
        evaluated_space_size=outcome.evaluations,
        extra={
            "coupled": coupled,
            "distinct_space_size": space.distinct,
            "method": "spos",
            **evolution_extra(outcome, settings, state_path, FITNESS),
        },
    )
    if verify:
        result.extra["verify"] = verify_winner(
            table, space, result.winner["arch"], result.winner["latency_ms"]
        )
    inputs: dict[str, Any] = {"run": str(run), "space": space.name}
    if lut is not None:
        inputs["lut"] = {"path": str(lut), "sha256": file_sha256(lut)}
    header = getattr(table, "header", None) or {}
    note = "SYNTHETIC latency table" if header.get("synthetic") else ""
    path, png = R.write(result, out, inputs, note=note)
    return result, path, png


def evaluated_front(entries: list[dict[str, Any]], axis: str) -> list[dict[str, Any]]:
    """The evaluated architectures no other beats on both `axis` cost and score, by cost."""
    front, best = [], np.inf
    for entry in sorted(entries, key=lambda e: (e[axis], e["score"])):
        if entry["score"] < best:
            front.append(entry)
            best = entry["score"]
    return front
