"""Coupled blocks (interface states between blocks) against brute force on random small problems."""

from __future__ import annotations

import dataclasses
import itertools
import re
import time

import numpy as np
import pytest

from dnatool.errors import BadInput
from dnatool.search.bnb import branch_and_bound
from dnatool.search.brute import brute_force
from dnatool.search.coupled import (
    CoupledProblem,
    as_uncoupled,
    coupled_branch_and_bound,
    coupled_brute_force,
    coupled_check_feasible,
    coupled_dfs,
    coupled_front,
    coupled_infeasible_together,
    coupled_min_totals,
    coupled_pareto_winner,
    coupled_solve,
    make_coupled_problem,
)
from dnatool.search.dfs import DfsTimeout, paper_dfs
from dnatool.search.pareto import merge_fronts, pareto_winner
from dnatool.search.problem import check_feasible, min_totals

NAMES = ("latency_ms", "params", "macs")
MODES = ("grid", "half", "continuous")


def draw(rng: np.random.Generator, mode: str, shape: tuple[int, ...]) -> np.ndarray:
    """`grid`: small integers; `half`: multiples of 0.5 (both tie often, exactly); else continuous."""
    if mode == "grid":
        return rng.integers(0, 4, shape).astype(float)
    if mode == "half":
        return np.round(rng.random(shape) * 6) / 2
    return rng.random(shape)


def random_coupled(
    rng: np.random.Generator, dims: int, mode: str, states: int = 3, uncoupled: bool = False
) -> CoupledProblem:
    """2-4 blocks of 1-6 candidates, 1-`states` states per interface; budgets between the
    smallest and the largest achievable costs (some below: infeasible)."""
    blocks = int(rng.integers(2, 5))
    sizes = rng.integers(1, 7, blocks)
    inner = [1] * (blocks - 1) if uncoupled else list(rng.integers(1, states + 1, blocks - 1))
    enter, leave = [1, *inner], [*inner, 1]
    scores = [draw(rng, mode, (n,)) for n in sizes]
    costs = [draw(rng, mode, (s, n, dims)) for s, n in zip(enter, sizes, strict=True)]
    outs = [rng.integers(0, t, n) for t, n in zip(leave, sizes, strict=True)]
    fixed = draw(rng, mode, (dims,))
    loose = make_coupled_problem(scores, costs, outs, fixed, np.full(dims, np.inf), NAMES[:dims])
    lo = coupled_min_totals(loose)
    hi = fixed + sum(c.max(axis=(0, 1)) for c in costs)
    budget = lo + (hi - lo) * (rng.random(dims) * 1.2 - 0.1)
    return dataclasses.replace(loose, budget=budget)


def keys(solutions):
    return [s.key for s in solutions]


def key(solution):
    return solution.key if solution else None


def brute_front(problem: CoupledProblem) -> list[tuple[float, float, tuple[int, ...]]]:
    """Every architecture's (cost, score, indices) by enumeration; keep the strict improvements."""
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


@pytest.mark.parametrize("mode", MODES)
def test_pareto_winner_equals_brute_force(mode):
    rng = np.random.default_rng([1, MODES.index(mode)])
    infeasible = 0
    for _ in range(700):
        problem = random_coupled(rng, 1, mode)
        truth = coupled_brute_force(problem, 1)
        infeasible += not truth
        assert key(coupled_pareto_winner(problem)[1]) == key(truth[0] if truth else None)
        assert keys(coupled_solve(problem, 1, "exact")) == keys(truth)
    assert 0 < infeasible < 700  # both cases were exercised


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("mode", MODES)
def test_top_k_and_several_budgets_equal_brute_force(dims, mode):
    rng = np.random.default_rng([2, dims, MODES.index(mode)])
    infeasible = 0
    for _ in range(250):
        problem = random_coupled(rng, dims, mode)
        top = int(rng.integers(1, 6))
        truth = coupled_brute_force(problem, top)
        infeasible += not truth
        assert keys(coupled_solve(problem, top, "exact")) == keys(truth)
        assert keys(coupled_branch_and_bound(problem, top)) == keys(truth)
    assert 0 < infeasible < 250


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("mode", MODES)
def test_dfs_equals_brute_force(dims, mode):
    rng = np.random.default_rng([3, dims, MODES.index(mode)])
    for _ in range(250):
        problem = random_coupled(rng, dims, mode)
        truth = coupled_brute_force(problem, 1)
        assert key(coupled_dfs(problem)) == key(truth[0] if truth else None)
        assert keys(coupled_solve(problem, 1, "dfs")) == keys(truth)


@pytest.mark.parametrize("mode", MODES)
def test_front_is_the_whole_space_front(mode):
    rng = np.random.default_rng([4, MODES.index(mode)])
    for _ in range(200):
        problem = random_coupled(rng, 1, mode)
        front = coupled_front(problem, 0)
        got = [
            (float(front.cost[i]), float(front.score[i]), front.indices(i))
            for i in range(len(front))
        ]
        assert got == brute_front(problem)
        assert np.all(np.diff(front.cost) > 0) and np.all(np.diff(front.score) < 0)


def test_capped_front_keeps_the_points_within_the_cap():
    rng = np.random.default_rng(5)
    for _ in range(200):
        problem = random_coupled(rng, 1, "half")
        cap = float(problem.budget[0])
        full = brute_front(problem)
        front = coupled_front(problem, 0, cap=cap)
        got = [(float(front.cost[i]), front.indices(i)) for i in range(len(front))]
        assert got == [(c, ix) for c, _, ix in full if c <= cap]


def test_more_states_still_equal_brute_force():
    """Up to 5 states per interface: most state sequences are empty or tiny."""
    rng = np.random.default_rng(6)
    for trial in range(150):
        problem = random_coupled(rng, 1 + trial % 3, MODES[trial % 3], states=5)
        top = int(rng.integers(1, 6))
        assert keys(coupled_solve(problem, top)) == keys(coupled_brute_force(problem, top))
        truth = coupled_brute_force(problem, 1)
        assert key(coupled_dfs(problem)) == key(truth[0] if truth else None)


def test_uncoupled_problem_gives_the_plain_solvers_answers():
    rng = np.random.default_rng(7)
    for trial in range(300):
        dims, mode = 1 + trial % 3, MODES[trial % 3]
        coupled = random_coupled(rng, dims, mode, uncoupled=True)
        assert not coupled.is_coupled
        plain = as_uncoupled(coupled)
        for a, b in zip(plain.costs, coupled.costs, strict=True):
            np.testing.assert_array_equal(a, b[0])
        top = int(rng.integers(1, 6))
        truth = brute_force(plain, top)
        assert keys(coupled_brute_force(coupled, top)) == keys(truth)
        assert keys(coupled_solve(coupled, top)) == keys(truth)
        assert keys(coupled_branch_and_bound(coupled, top)) == keys(branch_and_bound(plain, top))
        assert keys(coupled_solve(coupled, 1, "dfs")) == keys([paper_dfs(plain)] if truth else [])
        assert key(coupled_dfs(coupled)) == key(paper_dfs(plain))
        np.testing.assert_array_equal(coupled_min_totals(coupled), min_totals(plain))
        if dims == 1:
            assert key(coupled_pareto_winner(coupled)[1]) == key(pareto_winner(plain)[1])
            a, b = coupled_front(coupled, 0), merge_fronts(plain, 0)
            assert [(a.indices(i), a.cost[i], a.score[i]) for i in range(len(a))] == [
                (b.indices(i), b.cost[i], b.score[i]) for i in range(len(b))
            ]


def test_coupled_problem_is_not_uncoupled():
    problem = make_coupled_problem(
        [np.array([1.0, 2.0]), np.array([0.0])],
        [np.array([[[1.0], [2.0]]]), np.array([[[5.0]], [[1.0]]])],
        [np.array([0, 1]), np.array([0])],
        np.zeros(1),
        np.array([4.0]),
        ("latency_ms",),
    )
    assert problem.is_coupled and problem.states == (1, 2) and problem.size == 2
    assert as_uncoupled(problem) is None
    # Candidate 0 is cheaper alone but leads to the state where block 1 costs 5.
    assert coupled_solve(problem)[0].indices == (1, 0)
    assert coupled_solve(problem)[0].costs == (3.0,)
    assert coupled_solve(problem, 2) == coupled_brute_force(problem, 2)


def test_ties_are_broken_by_cost_then_earliest_candidates():
    # Every architecture scores 1.0; the cheapest wins, then the earliest indices.
    problem = make_coupled_problem(
        [np.array([0.5, 0.5, 0.5]), np.array([0.5, 0.5])],
        [np.array([[[1.0], [1.0], [1.0]]]), np.array([[[2.0], [1.0]], [[1.0], [2.0]]])],
        [np.array([0, 1, 1]), np.array([0, 0])],
        np.zeros(1),
        np.array([10.0]),
        ("latency_ms",),
    )
    expected = [(0, 1), (1, 0), (2, 0)]
    assert [s.indices for s in coupled_brute_force(problem, 3)] == expected
    assert [s.indices for s in coupled_solve(problem, 3)] == expected
    assert coupled_pareto_winner(problem)[1].indices == (0, 1)
    assert coupled_dfs(problem).indices == (0, 1)


def test_a_budget_equal_to_the_cheapest_architecture_is_feasible():
    """Float sums depend on their order: the per-state minima must fold exactly like `totals`."""
    rng = np.random.default_rng(11)
    for _ in range(200):
        blocks = int(rng.integers(2, 6))
        sizes = rng.integers(1, 5, blocks)
        inner = list(rng.integers(1, 4, blocks - 1))
        enter, leave = [1, *inner], [*inner, 1]
        costs = [
            rng.random((s, n, 1)) * 10 ** rng.uniform(-3, 3)
            for s, n in zip(enter, sizes, strict=True)
        ]
        scores = [rng.random(n) for n in sizes]
        outs = [rng.integers(0, t, n) for t, n in zip(leave, sizes, strict=True)]
        fixed = rng.random(1) * 7.3

        def make(budget, scores=scores, costs=costs, outs=outs, fixed=fixed):
            return make_coupled_problem(scores, costs, outs, fixed, budget, ("latency_ms",))

        loose = make(np.array([np.inf]))
        cheapest = min(
            loose.totals(ix)[1][0] for ix in itertools.product(*(range(n) for n in sizes))
        )
        assert coupled_min_totals(loose)[0] == cheapest
        tight = make(np.array([cheapest]))
        coupled_check_feasible(tight)
        found = coupled_brute_force(tight, 1)
        assert found and found[0].costs[0] == cheapest
        assert keys(coupled_solve(tight, 1)) == keys(found)
        assert keys(coupled_solve(tight, 2)) == keys(coupled_brute_force(tight, 2))
        assert key(coupled_dfs(tight)) == found[0].key
        with pytest.raises(BadInput, match=r"smallest achievable latency_ms is (\S+) ms") as err:
            coupled_check_feasible(make(np.array([cheapest / 2])))
        typed = float(re.search(r"is (\S+) ms", str(err.value)).group(1))
        coupled_check_feasible(make(np.array([typed])))


def test_feasibility_messages_match_the_plain_problem():
    rng = np.random.default_rng(12)
    for _ in range(50):
        coupled = random_coupled(rng, 2, "continuous", uncoupled=True)
        coupled = dataclasses.replace(coupled, budget=coupled_min_totals(coupled) - [0.0, 1.0])
        with pytest.raises(BadInput) as mine:
            coupled_check_feasible(coupled)
        with pytest.raises(BadInput) as theirs:
            check_feasible(as_uncoupled(coupled))
        assert str(mine.value) == str(theirs.value)
    together = coupled_infeasible_together(coupled)
    assert isinstance(together, BadInput)
    assert str(together).startswith("no architecture meets all budgets together: latency_ms <=")


@pytest.mark.parametrize(
    "change",
    [
        {"fixed": np.zeros(2)},
        {"names": ("latency_ms", "params")},
        {"scores": [np.array([1.0, 2.0])]},
        {"out_state": [np.array([0, 1])]},
        {"scores": [np.array([1.0, 2.0]), np.array([np.nan])]},
        {"costs": [np.ones((1, 2, 1)), np.ones((2, 1, 2))]},
        {"costs": [np.ones((1, 3, 1)), np.ones((2, 1, 1))]},
        {"costs": [np.ones((2, 2, 1)), np.ones((2, 1, 1))]},
        {"costs": [np.ones((1, 2, 1)), np.ones((3, 1, 1))], "out_state": [[0, 3], [0]]},
        {"out_state": [np.array([0, 2]), np.array([0])]},
        {"out_state": [np.array([0, -1]), np.array([0])]},
        {"out_state": [np.array([0, 1]), np.array([1])]},
        {"out_state": [np.array([0, 0.5]), np.array([0])]},
        {
            "scores": [np.array([1.0, 2.0]), np.array([])],
            "costs": [np.ones((1, 2)), np.ones((2, 0))],
        },
        {"scores": [], "costs": [], "out_state": []},
    ],
)
def test_shapes_are_checked(change):
    good = {
        "scores": [np.array([1.0, 2.0]), np.array([0.0])],
        "costs": [np.ones((1, 2)), np.ones((2, 1))],  # (S_k, n_k) is allowed with one cost
        "out_state": [np.array([0, 1]), np.array([0])],
        "fixed": np.zeros(1),
        "budget": np.ones(1),
        "names": ("latency_ms",),
    }
    assert make_coupled_problem(**good).states == (1, 2)
    with pytest.raises(BadInput) as err:
        make_coupled_problem(**{**good, **change})
    assert "\n" not in str(err.value)


def test_refusals():
    big = make_coupled_problem(
        [np.zeros(2)] * 8,
        [np.ones((1, 2, 1))] + [np.ones((4, 2, 1))] * 7,
        [np.array([0, 3])] * 7 + [np.zeros(2, dtype=int)],
        np.zeros(1),
        np.array([100.0]),
        ("latency_ms", "params")[:1],
    )
    with pytest.raises(BadInput, match="state sequences"):
        coupled_solve(big, 2)
    assert coupled_solve(big, 1)[0].indices == (0,) * 8  # the front needs no sequences
    huge = make_coupled_problem(
        [np.zeros(50)] * 4,
        [np.ones((1, 50, 1))] + [np.ones((2, 50, 1))] * 3,
        [np.zeros(50, dtype=int)] * 4,
        np.zeros(1),
        np.array([100.0]),
        ("latency_ms",),
    )
    with pytest.raises(BadInput, match="brute force is for small problems"):
        coupled_brute_force(huge)
    with pytest.raises(BadInput, match="unknown algorithm"):
        coupled_solve(huge, 1, "greedy")


def test_dfs_honours_its_deadline():
    """A tight budget with the best scores on the costliest candidates: a long walk (> 8192 steps)."""
    rng = np.random.default_rng(13)
    sizes, enter, leave = [40] * 4, [1, 2, 2, 2], [2, 2, 2, 1]
    costs = [rng.random((s, n, 1)) for s, n in zip(enter, sizes, strict=True)]
    scores = [-c.mean(axis=(0, 2)) for c in costs]
    outs = [rng.integers(0, t, n) for t, n in zip(leave, sizes, strict=True)]
    problem = make_coupled_problem(scores, costs, outs, np.zeros(1), np.array([1.6]), ("a",))
    with pytest.raises(DfsTimeout):
        coupled_dfs(problem, deadline=time.perf_counter() - 1.0)
    truth = coupled_brute_force(problem, 1)
    assert truth and key(coupled_dfs(problem, deadline=time.perf_counter() + 60)) == truth[0].key
