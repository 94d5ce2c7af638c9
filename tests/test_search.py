"""Exact search against brute force on many random small problems (issue 5)."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from dnatool.errors import BadInput
from dnatool.search.bnb import branch_and_bound
from dnatool.search.brute import brute_force
from dnatool.search.dfs import paper_dfs
from dnatool.search.pareto import merge_fronts, pareto_winner
from dnatool.search.problem import Problem, check_feasible, make_problem


def random_problem(rng: np.random.Generator, dims: int, ties: bool) -> Problem:
    """Up to 4 blocks of up to 8 candidates; `ties` draws values on a coarse grid (exact in float)."""
    blocks = int(rng.integers(1, 5))
    sizes = rng.integers(1, 9, blocks)
    if ties:
        scores = [rng.integers(0, 4, n) / 4.0 for n in sizes]
        costs = [rng.integers(0, 5, (n, dims)).astype(float) for n in sizes]
        fixed = np.ones(dims)
    else:
        scores = [rng.random(n) for n in sizes]
        costs = [rng.random((n, dims)) for n in sizes]
        fixed = rng.random(dims)
    lo = fixed + sum(c.min(axis=0) for c in costs)
    hi = fixed + sum(c.max(axis=0) for c in costs)
    budget = lo + (hi - lo) * (rng.random(dims) * 1.2 - 0.1)  # some budgets are infeasible
    return make_problem(
        scores, costs, fixed, budget, tuple(["latency_ms", "params", "macs"][:dims])
    )


def keys(solutions):
    return [s.key for s in solutions]


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("ties", [False, True])
def test_exact_solvers_equal_brute_force(dims, ties):
    rng = np.random.default_rng([dims, ties])
    infeasible = 0
    for _ in range(150):
        problem = random_problem(rng, dims, ties)
        top = int(rng.integers(1, 6))
        truth = brute_force(problem, top)
        infeasible += not truth
        assert keys(branch_and_bound(problem, top)) == keys(truth)
        dfs = paper_dfs(problem)
        assert (dfs.key if dfs else None) == (truth[0].key if truth else None)
        if dims == 1:
            winner = pareto_winner(problem)[1]
            assert (winner.key if winner else None) == (truth[0].key if truth else None)
    assert 0 < infeasible < 150  # both cases were exercised


def test_ties_are_broken_by_cost_then_earliest_candidates():
    # Every architecture scores 1.0; the cheapest wins, and among equal cost the earliest indices.
    scores = [np.array([0.5, 0.5, 0.5]), np.array([0.5, 0.5])]
    costs = [np.array([[2.0], [1.0], [1.0]]), np.array([[1.0], [1.0]])]
    problem = make_problem(scores, costs, np.zeros(1), np.array([10.0]), ("latency_ms",))
    expected = [(1, 0), (1, 1), (2, 0)]
    assert [s.indices for s in branch_and_bound(problem, 3)] == expected
    assert [s.indices for s in brute_force(problem, 3)] == expected
    assert pareto_winner(problem)[1].indices == (1, 0)
    assert paper_dfs(problem).indices == (1, 0)


def naive_front(problem: Problem) -> list[tuple[float, float, tuple[int, ...]]]:
    """Best (score, indices) for every achievable cost, by enumeration; keep the strict improvements."""
    archs = []
    for indices in itertools.product(*(range(len(s)) for s in problem.scores)):
        score, cost = problem.totals(indices)
        archs.append((float(cost[0]), score, indices))
    archs.sort()
    front, best = [], np.inf
    for cost, score, indices in archs:
        if score < best:
            front.append((cost, score, indices))
            best = score
    return front


def test_merged_front_is_the_whole_space_front():
    rng = np.random.default_rng(7)
    for trial in range(60):
        problem = random_problem(rng, 1, ties=trial % 2 == 0)
        front = merge_fronts(problem, 0)
        got = [
            (float(front.cost[i]), float(front.score[i]), front.indices(i))
            for i in range(len(front))
        ]
        assert got == naive_front(problem)


def test_budget_below_the_cheapest_architecture_names_the_smallest_cost():
    problem = make_problem(
        [np.array([1.0, 2.0])],
        [np.array([[3.0], [5.0]])],
        np.array([1.0]),
        np.array([3.5]),
        ("latency_ms",),
    )
    with pytest.raises(BadInput, match=r"smallest achievable latency_ms is 4 ms"):
        check_feasible(problem)


def test_a_budget_equal_to_the_cheapest_architecture_is_feasible():
    """`--latency` set to the front's fastest point (or to the smallest cost an infeasible budget
    names) must find that architecture, even when float sums depend on their order."""
    rng = np.random.default_rng(11)
    for _ in range(300):
        blocks = int(rng.integers(2, 7))
        costs = [
            rng.random((int(rng.integers(1, 5)), 1)) * 10 ** rng.uniform(-3, 3)
            for _ in range(blocks)
        ]
        scores = [rng.random(len(c)) for c in costs]
        problem = make_problem(
            scores, costs, rng.random(1) * 7.3, np.array([np.inf]), ("latency_ms",)
        )
        cheapest = min(
            problem.totals(ix)[1][0] for ix in itertools.product(*(range(len(c)) for c in costs))
        )
        tight = make_problem(scores, costs, problem.fixed, np.array([cheapest]), ("latency_ms",))
        check_feasible(tight)
        found = brute_force(tight, 1)
        assert found and found[0].costs[0] == cheapest
        assert keys(branch_and_bound(tight, 1)) == keys(found)
        assert pareto_winner(tight)[1].key == found[0].key
        too_tight = make_problem(
            scores, costs, problem.fixed, np.array([cheapest / 2]), ("latency_ms",)
        )
        with pytest.raises(BadInput, match=r"smallest achievable latency_ms is (\S+) ms") as err:
            check_feasible(too_tight)
        typed = float(re.search(r"is (\S+) ms", str(err.value)).group(1))
        check_feasible(
            make_problem(scores, costs, problem.fixed, np.array([typed]), ("latency_ms",))
        )


def test_problem_shapes_are_checked():
    with pytest.raises(BadInput):
        make_problem([np.array([1.0])], [np.array([[1.0]])], np.zeros(2), np.zeros(2), ("a", "b"))
    with pytest.raises(BadInput):
        make_problem([np.array([np.nan])], [np.array([[1.0]])], np.zeros(1), np.zeros(1), ("a",))
