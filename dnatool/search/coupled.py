"""Coupled blocks: a candidate's cost depends on the interface state its block is entered in.

When cells of a block have different output widths, the cost of block k+1's candidates depends on
the state (e.g. width) that block k's chosen candidate outputs. Block k has scores `(n_k,)`, costs
`(S_k, n_k, D)` indexed by its input state, and `out_state[k]` `(n_k,)`, the input state of block
k+1 each candidate leads to (S_0 = S_N = 1: any head cost is folded into the last block). An
architecture's states are s_0 = 0, s_{k+1} = out_state[k][i_k]; its score and costs are the same
left folds in block order as `Problem.totals` (`fixed + costs[0][s_0, i_0] + ...`) under the same
total order (score, costs, indices), so every solver here agrees with brute force bit for bit.
A cost of +inf marks a candidate that cannot be entered from that state (a fabric cell entered
from another scale): no solver ever picks such a pair, whatever the budgets.

Why the per-state dynamic programme is exact: two prefixes ending in the same state have exactly
the same completions, and float addition is monotonic (x <= y implies x + c <= y + c), so a prefix
beaten on score and cost by another prefix in the same state (on a full tie, by earlier indices)
stays beaten after every completion. Only prefixes in different states are incomparable, hence
one front per state. Likewise the state sequences partition the architectures, so the best of the
per-sequence uncoupled searches is the best overall. When every S_k == 1 the problem is a plain
`Problem` and `as_uncoupled` hands it to today's solvers unchanged (same answers, same speed).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np

from dnatool.errors import BadInput
from dnatool.search.brute import MAX_SIZE
from dnatool.search.dfs import DfsTimeout
from dnatool.search.pareto import Front, prune
from dnatool.search.problem import (
    BlockShape,
    Problem,
    Solution,
    _fmt,
    make_problem,
    min_totals,
    tolerances,
)

MAX_SEQUENCES = 4096
ALGORITHMS = ("exact", "dfs")


@dataclass(frozen=True)
class CoupledProblem(BlockShape):
    """Scores `(n_k,)`, state-dependent costs `(S_k, n_k, D)` and next states `(n_k,)` per block,
    fixed costs `(D,)`, budgets `(D,)`."""

    scores: tuple[np.ndarray, ...]
    costs: tuple[np.ndarray, ...]
    out_state: tuple[np.ndarray, ...]
    fixed: np.ndarray
    budget: np.ndarray
    names: tuple[str, ...]

    @property
    def routes(self) -> int:
        """Architectures that exist: those whose every (state, candidate) pair has finite costs
        (`size` when every candidate can be entered from every state)."""
        counts = [1]
        for k, (c, o) in enumerate(zip(self.costs, self.out_state, strict=True)):
            nxt = [0] * self.next_states(k)
            possible = np.isfinite(c).all(axis=2)
            for s, n in enumerate(counts):
                for i in np.flatnonzero(possible[s]):
                    nxt[int(o[i])] += n
            counts = nxt
        return counts[0]

    @property
    def states(self) -> tuple[int, ...]:
        """S_k, the number of input states of each block (S_0 == 1)."""
        return tuple(int(c.shape[0]) for c in self.costs)

    @property
    def is_coupled(self) -> bool:
        return any(s > 1 for s in self.states)

    def next_states(self, k: int) -> int:
        """S_{k+1}: the states block k can lead to (1 after the last block)."""
        return self.states[k + 1] if k + 1 < self.blocks else 1

    def totals(self, indices: tuple[int, ...]) -> tuple[float, np.ndarray]:
        """Score and costs of one architecture, folded exactly as the solvers fold them."""
        score, cost, state = 0.0, self.fixed.astype(np.float64), 0
        for k, i in enumerate(indices):
            score = score + self.scores[k][i]
            cost = cost + self.costs[k][state, i]
            state = int(self.out_state[k][i])
        return float(score), cost


def make_coupled_problem(
    scores: list[np.ndarray],
    costs: list[np.ndarray],
    out_state: list[np.ndarray],
    fixed: np.ndarray,
    budget: np.ndarray,
    names: tuple[str, ...],
) -> CoupledProblem:
    """Validate shapes once so solvers can trust them; `(S_k, n_k)` costs are allowed when D == 1."""
    fixed = np.asarray(fixed, dtype=np.float64).reshape(-1)
    budget = np.asarray(budget, dtype=np.float64).reshape(-1)
    if not (len(names) == len(fixed) == len(budget)):
        raise BadInput(
            "coupled search problem: names, fixed costs and budgets must have one entry per quantity"
        )
    if not (len(scores) == len(costs) == len(out_state)) or not scores:
        raise BadInput("coupled search problem: give scores, costs and out_state for every block")
    s = tuple(np.ascontiguousarray(x, dtype=np.float64).reshape(-1) for x in scores)
    c = tuple(np.ascontiguousarray(x, dtype=np.float64) for x in costs)
    c = tuple(x[:, :, None] if x.ndim == 2 and len(names) == 1 else x for x in c)
    o = tuple(_integer_states(x) for x in out_state)
    _check_blocks(s, c, o, len(names))
    return CoupledProblem(s, c, o, fixed, budget, tuple(names))


def _integer_states(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x).reshape(-1)
    if a.dtype.kind not in "iub" and not (a.dtype.kind == "f" and np.array_equal(a, np.round(a))):
        raise BadInput("coupled search problem: out_state must hold integer states")
    return a.astype(np.int64)


def _check_blocks(
    s: tuple[np.ndarray, ...], c: tuple[np.ndarray, ...], o: tuple[np.ndarray, ...], dims: int
) -> None:
    """One-line BadInput for the first inconsistent block."""
    if any(x.ndim != 3 or x.shape[2] != dims or x.shape[0] < 1 for x in c):
        raise BadInput(f"coupled search problem: costs must be (states x candidates x {dims})")
    if any(
        len(a) == 0 or b.shape[1] != len(a) or len(d) != len(a)
        for a, b, d in zip(s, c, o, strict=True)
    ):
        raise BadInput(
            "coupled search problem: every block needs at least one candidate, "
            "with costs and an out_state per candidate"
        )
    if c[0].shape[0] != 1:
        raise BadInput("coupled search problem: the first block has a single input state")
    nxt = [x.shape[0] for x in c[1:]] + [1]
    for k, (d, n) in enumerate(zip(o, nxt, strict=True)):
        if d.min() < 0 or d.max() >= n:
            raise BadInput(f"coupled search problem: out_state of block {k} must lie in [0, {n})")
    if not all(np.isfinite(a).all() for a in s) or any(
        np.isnan(a).any() or (a == -np.inf).any() for a in c
    ):
        raise BadInput(
            "coupled search problem: scores must be finite, costs finite or +inf (no such pair)"
        )


def as_uncoupled(problem: CoupledProblem) -> Problem | None:
    """The plain `Problem` when no block's costs depend on a state, else None."""
    if problem.is_coupled:
        return None
    return Problem(
        scores=problem.scores,
        costs=tuple(c[0] for c in problem.costs),
        fixed=problem.fixed,
        budget=problem.budget,
        names=problem.names,
    )


def coupled_tolerances(problem: CoupledProblem) -> tuple[float, np.ndarray]:
    """`tolerances` over every state's possible costs (it reads magnitudes only)."""
    flat = tuple(np.where(np.isfinite(c), c, 0.0).reshape(-1, problem.dims) for c in problem.costs)
    return tolerances(Problem(problem.scores, flat, problem.fixed, problem.budget, problem.names))


def coupled_solution(problem: CoupledProblem, indices: tuple[int, ...]) -> Solution:
    score, cost = problem.totals(indices)
    return Solution(tuple(int(i) for i in indices), score, tuple(float(v) for v in cost))


# --- feasibility -------------------------------------------------------------------------------


def coupled_min_totals(problem: CoupledProblem) -> np.ndarray:
    """Smallest achievable value of each cost on its own: per-state minima folded in block order.
    Exact to the last bit (monotonic addition), so a budget equal to it is feasible."""
    low = problem.fixed.astype(np.float64)[None, :]  # (S_k, D); inf for unreachable states
    for k in range(problem.blocks):
        best = (low[:, None, :] + problem.costs[k]).min(axis=0)  # (n_k, D)
        low = np.full((problem.next_states(k), problem.dims), np.inf)
        np.minimum.at(low, problem.out_state[k], best)
    return low[0]


def coupled_check_feasible(problem: CoupledProblem) -> None:
    """One-line BadInput naming the smallest achievable cost when a budget cannot be met alone."""
    lowest = coupled_min_totals(problem)
    for d, name in enumerate(problem.names):
        if lowest[d] > problem.budget[d]:
            raise BadInput(
                f"no architecture fits {name} <= {_fmt(name, problem.budget[d])}: "
                f"the smallest achievable {name} is {_fmt(name, lowest[d], up=True)}"
            )


def coupled_infeasible_together(problem: CoupledProblem) -> BadInput:
    """The error when each budget can be met alone but not all at once."""
    lowest = coupled_min_totals(problem)
    parts = ", ".join(
        f"{n} <= {_fmt(n, problem.budget[d])} (smallest alone {_fmt(n, lowest[d], up=True)})"
        for d, n in enumerate(problem.names)
    )
    return BadInput(f"no architecture meets all budgets together: {parts}")


# --- brute force (the oracle) ------------------------------------------------------------------


def coupled_brute_force(problem: CoupledProblem, top: int = 1) -> list[Solution]:
    """The `top` best feasible architectures in the solvers' total order (empty if none fits)."""
    if problem.size > MAX_SIZE:
        raise BadInput(
            f"brute force is for small problems ({problem.size:,} > {MAX_SIZE:,} architectures)"
        )
    score, cost, state = (
        np.zeros(1),
        problem.fixed.astype(np.float64)[None, :],
        np.zeros(1, np.int64),
    )
    for s, c, o in zip(problem.scores, problem.costs, problem.out_state, strict=True):
        # Element by element in block order (row-major: indices in lexicographic order).
        score = (score[:, None] + s[None, :]).reshape(-1)
        cost = (cost[:, None, :] + c[state]).reshape(-1, problem.dims)
        state = np.tile(o, len(state))
    feasible = np.flatnonzero(((cost <= problem.budget) & np.isfinite(cost)).all(axis=1))
    keys = [feasible, *(cost[feasible, d] for d in reversed(range(problem.dims))), score[feasible]]
    order = feasible[np.lexsort(keys)][:top]
    shape = tuple(len(s) for s in problem.scores)
    flat = np.unravel_index(order, shape)
    return [
        Solution(
            indices=tuple(int(a[j]) for a in flat),
            score=float(score[i]),
            costs=tuple(float(v) for v in cost[i]),
        )
        for j, i in enumerate(order)
    ]


# --- the per-state Pareto front ----------------------------------------------------------------


def _block_sums(
    problem: CoupledProblem, k: int, dim: int, prefix: tuple[np.ndarray, ...]
) -> dict[int, tuple[np.ndarray, ...]]:
    """Per output state t: every kept prefix (in its state s) plus each of block k's candidates
    that lead to t and lie on that subset's own front at s, as (cost, score, code, parent, pick)."""
    cost, score, state, rank = prefix
    n, out = len(problem.scores[k]), problem.out_state[k]
    pools: dict[int, list[tuple[np.ndarray, ...]]] = {}
    for s in np.unique(state):
        rows = np.flatnonzero(state == s)
        possible = np.isfinite(problem.costs[k][s, :, dim])
        for t in np.unique(out):
            lead = np.flatnonzero((out == t) & possible)
            if len(lead) == 0:
                continue
            cand = lead[prune(problem.costs[k][s, lead, dim], problem.scores[k][lead], lead)]
            part = (
                (cost[rows, None] + problem.costs[k][s, cand, dim][None, :]).reshape(-1),
                (score[rows, None] + problem.scores[k][cand][None, :]).reshape(-1),
                (rank[rows, None] * n + cand[None, :]).reshape(-1),
                np.repeat(rows, len(cand)),
                np.tile(cand, len(rows)),
            )
            pools.setdefault(int(t), []).append(part)
    return {t: tuple(np.concatenate(x) for x in zip(*parts)) for t, parts in pools.items()}


def coupled_front(problem: CoupledProblem, dim: int = 0, cap: float = np.inf) -> Front:
    """The exact whole-space front along cost `dim`, one front per interface state block by block
    (codes carry a global lexicographic rank, so ties break as brute force breaks them); points
    costlier than `cap` given the cheapest completion of the remaining blocks are dropped."""
    rest = np.cumsum([c[..., dim].min() for c in problem.costs][::-1])[::-1]
    rest = np.append(rest[1:], 0.0)
    start = np.array([problem.fixed[dim]], dtype=np.float64)
    prefix = (start, np.zeros(1), np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))
    parents: list[np.ndarray] = []
    picks: list[np.ndarray] = []
    for k in range(problem.blocks):
        kept = []
        for t, (c, s, code, parent, pick) in sorted(_block_sums(problem, k, dim, prefix).items()):
            keep = prune(c, s, code)
            keep = keep[c[keep] + rest[k] <= cap]
            kept.append(
                (c[keep], s[keep], code[keep], parent[keep], pick[keep], np.full(len(keep), t))
            )
        if not kept:  # everything was beyond the cap
            none = (np.zeros(0, dtype=np.int64),) * problem.blocks
            return Front(cost=np.zeros(0), score=np.zeros(0), parents=none, picks=none)
        cost, score, code, parent, pick, state = (np.concatenate(x) for x in zip(*kept))
        rank = np.argsort(np.argsort(code, kind="stable"), kind="stable").astype(np.int64)
        prefix = (cost, score, state, rank)
        parents.append(parent)
        picks.append(pick)
    # The last block leads to state 0 only: a single pool, pruned and sorted by cost above.
    return Front(cost=prefix[0], score=prefix[1], parents=tuple(parents), picks=tuple(picks))


def coupled_pareto_winner(problem: CoupledProblem) -> tuple[Front, Solution | None]:
    """Exact optimum for a single budget: the best front point within it."""
    if problem.dims != 1:
        raise BadInput("the Pareto winner answers a single budget")
    cap = float(problem.budget[0] + coupled_tolerances(problem)[1][0])
    front = coupled_front(problem, 0, cap=cap)
    point = front.best_within(float(problem.budget[0]))
    if point is None:
        return front, None
    return front, Solution(
        indices=front.indices(point),
        score=float(front.score[point]),
        costs=(float(front.cost[point]),),
    )


# --- several budgets / top-K: one uncoupled search per state sequence ---------------------------


def state_sequences(problem: CoupledProblem) -> list[tuple[int, ...]]:
    """Every (s_0, ..., s_N) with s_0 = s_N = 0; refused when there are too many."""
    inner = problem.states[1:]
    count = math.prod(inner)
    if count > MAX_SEQUENCES:
        raise BadInput(
            f"coupled search: {count:,} interface state sequences (at most {MAX_SEQUENCES:,})"
        )
    return [(0, *seq, 0) for seq in itertools.product(*(range(s) for s in inner))]


def restrict(
    problem: CoupledProblem, sequence: tuple[int, ...]
) -> tuple[Problem, list[np.ndarray]] | None:
    """The uncoupled problem of the architectures following `sequence`, and each block's
    candidate indices in it (None when a block has no candidate leading to the next state)."""
    cands = [
        np.flatnonzero((o == sequence[k + 1]) & np.isfinite(problem.costs[k][sequence[k]]).all(1))
        for k, o in enumerate(problem.out_state)
    ]
    if any(len(c) == 0 for c in cands):
        return None
    sub = make_problem(
        [problem.scores[k][c] for k, c in enumerate(cands)],
        [problem.costs[k][sequence[k]][c] for k, c in enumerate(cands)],
        problem.fixed,
        problem.budget,
        problem.names,
    )
    return sub, cands


def coupled_branch_and_bound(problem: CoupledProblem, top: int = 1) -> list[Solution]:
    """The `top` best feasible architectures: branch-and-bound per state sequence, merged (the
    sequences partition the space; candidate order is kept, so ties break the same way).
    Sequences are visited best score bound first and skipped once the bound cannot reach the
    top; sequences whose cheapest architecture misses a budget are skipped outright."""
    from dnatool.search.bnb import branch_and_bound

    tol_s = coupled_tolerances(problem)[0]
    found: list[Solution] = []
    for bound, _, sub, cands in _open_sequences(problem):
        if len(found) >= top and bound > found[top - 1].score + tol_s:
            break
        for sol in branch_and_bound(sub, top):
            indices = tuple(int(c[j]) for c, j in zip(cands, sol.indices, strict=True))
            found.append(coupled_solution(problem, indices))
        found = sorted(found, key=lambda s: s.key)[:top]
    return found


def _open_sequences(
    problem: CoupledProblem,
) -> list[tuple[float, tuple[int, ...], Problem, list[np.ndarray]]]:
    """(score bound, sequence, restricted problem, candidates) of every sequence whose cheapest
    architecture meets each budget alone (`min_totals` is exact), best bound first."""
    tol_c = coupled_tolerances(problem)[1]
    out = []
    for sequence in state_sequences(problem):
        part = restrict(problem, sequence)
        if part is None or (min_totals(part[0]) > problem.budget).any():
            continue
        out.append((_fitting_bound(part[0], tol_c), sequence, *part))
    return sorted(out, key=lambda x: x[:2])


def _fitting_bound(sub: Problem, tol_c: np.ndarray) -> float:
    """Sum over blocks of the best score among the candidates that fit with the cheapest other
    blocks: a lower bound on the sequence's best feasible score (inf when a block has none)."""
    lows = [c.min(axis=0) for c in sub.costs]
    cheapest = sub.fixed + sum(lows)
    bound = 0.0
    for s, c, low in zip(sub.scores, sub.costs, lows, strict=True):
        fits = (cheapest - low + c <= sub.budget + tol_c).all(axis=1)
        bound += float(s[fits].min()) if fits.any() else np.inf
    return bound


# --- the paper's walk --------------------------------------------------------------------------


def coupled_dfs(problem: CoupledProblem, deadline: float | None = None) -> Solution | None:
    """The best feasible architecture by the paper's walk carrying the interface state."""
    return _CoupledDfs(problem, deadline).run()


class _CoupledDfs:
    """`dfs._Dfs` with costs looked up at the current state; the cheapest completion is the
    minimum over every state of the remaining blocks."""

    def __init__(self, problem: CoupledProblem, deadline: float | None) -> None:
        self.p, self.deadline = problem, deadline
        self.order = [np.lexsort((np.arange(len(s)), s)) for s in problem.scores]
        self.sorted_s = [s[o].tolist() for s, o in zip(problem.scores, self.order, strict=True)]
        self.sorted_c = [c[:, o] for c, o in zip(problem.costs, self.order, strict=True)]
        self.sorted_out = [
            out[o].tolist() for out, o in zip(problem.out_state, self.order, strict=True)
        ]
        mins_s = [float(s.min()) for s in problem.scores] + [0.0]
        mins_c = [c.min(axis=(0, 1)) for c in problem.costs] + [np.zeros(problem.dims)]
        self.rest_s = np.cumsum(mins_s[::-1])[::-1]
        self.rest_c = np.cumsum(mins_c[::-1], axis=0)[::-1]
        self.tol_s, self.tol_c = coupled_tolerances(problem)
        self.best: Solution | None = None
        self.nodes = self.steps = 0

    def run(self) -> Solution | None:
        self.walk(0, 0.0, self.p.fixed.astype(np.float64), 0, ())
        return self.best

    def walk(
        self, k: int, partial: float, cost: np.ndarray, state: int, picked: tuple[int, ...]
    ) -> None:
        self.nodes += 1
        if k == self.p.blocks - 1:
            self.last(partial, cost, state, picked)
            return
        limit = self.p.budget + self.tol_c - self.rest_c[k + 1]
        costs, outs = self.sorted_c[k][state], self.sorted_out[k]
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
            self.walk(k + 1, score, c, outs[i], (*picked, int(self.order[k][i])))

    def last(self, partial: float, cost: np.ndarray, state: int, picked: tuple[int, ...]) -> None:
        k = self.p.blocks - 1
        s = partial + self.p.scores[k]
        c = cost + self.p.costs[k][state]
        ok = np.flatnonzero(((c <= self.p.budget) & np.isfinite(c)).all(axis=1))
        if len(ok) == 0:
            return
        i = ok[np.lexsort((ok, *c[ok].T[::-1], s[ok]))[0]]
        found = Solution((*picked, int(i)), float(s[i]), tuple(float(v) for v in c[i]))
        if self.best is None or found.key < self.best.key:
            self.best = found


# --- the entry point ---------------------------------------------------------------------------


def _solve_uncoupled(problem: Problem, top: int, algorithm: str) -> list[Solution]:
    """`engine.solve`'s dispatch (kept here so the engine may call `coupled_solve` itself)."""
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


def coupled_solve(
    problem: CoupledProblem, top: int = 1, algorithm: str = "exact"
) -> list[Solution]:
    """The exact answer by the fastest exact method for the request's shape; uncoupled problems
    go to today's solvers unchanged."""
    if algorithm not in ALGORITHMS:
        raise BadInput(f"unknown algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})")
    flat = as_uncoupled(problem)
    if flat is not None:
        return _solve_uncoupled(flat, top, algorithm)
    if algorithm == "dfs":
        best = coupled_dfs(problem)
        return [best] if best else []
    if problem.dims == 1 and top == 1:
        best = coupled_pareto_winner(problem)[1]
        return [best] if best else []
    return coupled_branch_and_bound(problem, top)
