"""Evolutionary search under hardware budgets, as SPOS (Guo et al., ECCV 2020, Sec. 3.3) and its
released code run it: population 50, the global top 10 are parents, 25 mutations (each gene
re-drawn with probability 0.1) and 25 crossovers per generation, random candidates fill the rest,
20 generations. A candidate outside a budget, or one already evaluated, is rejected and another
is drawn, with a bounded number of tries (`tries` x the number wanted).

Candidates are one row per block of the search problem (`Problem` / `CoupledProblem`): row i of
block k is `(cells[i], paths[i])` of that block's list, so genes are each block's cell and each
layer's op. Costs and feasibility come from `problem.totals`, folded exactly as the exact solvers
fold them, and candidates are ordered by the same key (score, costs, rows), so an evolutionary
optimum equal to the exact one is equal bit for bit. The fitness is the problem's own score (DNA
score lists) or a callable (an SPOS supernet's top-1 error); lower is better.

Everything random comes from one seeded numpy generator whose state is saved, with the population
and every evaluation, at the end of each generation (`save`): a search killed at any point and
resumed from its last state draws the same candidates and ends with the same population.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dnatool.arch.space import Choice, SearchSpace
from dnatool.errors import BadInput
from dnatool.search.problem import Solution
from dnatool.utils.events import Report, quiet

Individual = tuple[int, ...]
Fitness = Callable[[Individual], tuple[float, dict[str, Any]]]
STATE_FORMAT = "dnatool.evolution"
SAVE_EVERY_S = 5.0  # evaluations inside a generation are saved at most this often


@dataclass(frozen=True)
class EvolutionSettings:
    """The released SPOS search's defaults; `generations` may grow on resume."""

    population: int = 50
    select: int = 10
    mutations: int = 25
    crossovers: int = 25
    mutation_prob: float = 0.1
    generations: int = 20
    seed: int = 0
    tries: int = 10

    def __post_init__(self) -> None:
        for name in ("population", "select", "tries"):
            if getattr(self, name) < 1:
                raise BadInput(f"evolution setting {name!r} must be >= 1")
        for name in ("mutations", "crossovers", "generations"):
            if getattr(self, name) < 0:
                raise BadInput(f"evolution setting {name!r} must be >= 0")
        if self.mutations + self.crossovers > self.population:
            raise BadInput("evolution: mutations + crossovers must not exceed the population")
        if not 0 <= self.mutation_prob <= 1:
            raise BadInput("evolution: mutation probability must be in [0, 1]")

    @property
    def max_evaluations(self) -> int:
        return self.population * (self.generations + 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Genome:
    """Block k's rows as genes: `choices[k][i]` = (cell, path) of row i, its row index, the
    number of ops and each cell's depth."""

    choices: tuple[tuple[Choice, ...], ...]
    num_ops: tuple[int, ...]
    depths: tuple[tuple[int, ...], ...]
    rows: tuple[dict[Choice, int], ...]

    @classmethod
    def from_lists(cls, space: SearchSpace, lists: Sequence[Any]) -> Genome:
        """`lists[k]` has `cells` and `paths` arrays (score lists, or every path of a block)."""
        choices = tuple(
            tuple(_choice(c, p) for c, p in zip(lst.cells.tolist(), lst.paths.tolist()))
            for lst in lists
        )
        return cls(
            choices=choices,
            num_ops=tuple(len(b.ops) for b in space.blocks),
            depths=tuple(tuple(c.layers for c in b.cells) for b in space.blocks),
            rows=tuple({c: i for i, c in enumerate(block)} for block in choices),
        )

    def choice(self, k: int, i: int) -> Choice:
        return self.choices[k][i]

    def random(self, rng: np.random.Generator) -> Individual:
        """One listed row per block, uniformly (uniform over architectures)."""
        return tuple(int(i) for i in rng.integers(0, [len(c) for c in self.choices]))

    @functools.cached_property
    def _slots(self) -> tuple[list[int], np.ndarray]:
        """Per block: 1 + deepest cell draws; the bounds of the integer draws of a mutation
        (a new cell, then an op per layer, twice: one fills added layers, one mutates)."""
        deepest = [max(d) for d in self.depths]
        highs = []
        for k, depth in enumerate(deepest):
            highs += [len(self.depths[k])] + [self.num_ops[k]] * (2 * depth)
        return deepest, np.array(highs)

    def mutate(
        self, parent: Individual, rng: np.random.Generator, prob: float
    ) -> Individual | None:
        """Each gene (a block's cell, a layer's op) re-drawn with probability `prob`; layers a
        deeper new cell adds are drawn. None when the result is not listed. (All draws of a
        mutation are made at once: two generator calls.)"""
        deepest, highs = self._slots
        flags = rng.random(sum(deepest) + len(deepest)) < prob
        draws = rng.integers(0, highs).tolist()
        child, f, d = [], 0, 0
        for k, i in enumerate(parent):
            cell, path = self.choices[k][i]
            if flags[f]:
                cell = draws[d]
            depth = deepest[k]
            fill, mutated = draws[d + 1 : d + 1 + depth], draws[d + 1 + depth : d + 1 + 2 * depth]
            ops = tuple(
                mutated[layer]
                if flags[f + 1 + layer]
                else path[layer]
                if layer < len(path)
                else fill[layer]
                for layer in range(self.depths[k][cell])
            )
            f, d = f + 1 + depth, d + 1 + 2 * depth
            row = self.rows[k].get((cell, ops))
            if row is None:
                return None
            child.append(row)
        return tuple(child)

    def crossover(
        self, a: Individual, b: Individual, rng: np.random.Generator
    ) -> Individual | None:
        """Uniform crossover: per layer when both parents chose the same cell, else the whole
        block from either parent (one generator call)."""
        deepest = self._slots[0]
        coins = rng.random(sum(deepest) + len(deepest)) < 0.5
        child, f = [], 0
        for k, (i, j) in enumerate(zip(a, b)):
            (ca, pa), (cb, pb) = self.choices[k][i], self.choices[k][j]
            if ca == cb:
                ops = tuple(x if coins[f + 1 + n] else y for n, (x, y) in enumerate(zip(pa, pb)))
                row = self.rows[k].get((ca, ops))
            else:
                row = i if coins[f] else j
            f += 1 + deepest[k]
            if row is None:
                return None
            child.append(row)
        return tuple(child)


def _choice(cell: Any, path: Any) -> Choice:
    return int(cell), tuple(int(op) for op in path if op >= 0)


@dataclass
class EvolutionResult:
    """The best candidates (ascending key), the saved state and the per-generation history."""

    top: list[Solution]
    state: dict[str, Any]
    info: dict[Individual, dict[str, Any]]

    @property
    def evaluations(self) -> int:
        return len(self.state["visited"])

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.state["history"]


class _Search:
    """One search's mutable state; `evolve` drives it."""

    def __init__(
        self,
        problem: Any,
        genome: Genome,
        settings: EvolutionSettings,
        fitness: Fitness,
        save: Callable[[dict[str, Any]], None],
        identity: dict[str, Any],
    ) -> None:
        self.problem, self.genome, self.settings = problem, genome, settings
        self.fitness, self._save, self.identity = fitness, save, identity
        self.rng = np.random.default_rng(settings.seed)
        self.visited: dict[Individual, tuple] = {}  # individual -> its key (score, costs, rows)
        self.cache: dict[Individual, tuple[float, dict[str, Any]]] = {}
        self.population: list[Individual] = []
        self.history: list[dict[str, Any]] = []
        self.generation = -1
        self.boundary = self.snapshot()
        self.last_save = time.monotonic()

    def legal(self, ind: Individual | None) -> bool:
        """Evaluate a new candidate within every budget (the released code's `is_legal`)."""
        if ind is None or ind in self.visited:
            return False
        _, costs = self.problem.totals(ind)
        if (costs > self.problem.budget).any():
            return False
        if ind not in self.cache:
            self.cache[ind] = self.fitness(ind)
            if time.monotonic() - self.last_save > SAVE_EVERY_S:
                self.save()
        score = float(self.cache[ind][0])
        self.visited[ind] = (score, *(float(c) for c in costs), *ind)
        return True

    def top(self, n: int) -> list[Individual]:
        return sorted(self.visited, key=self.visited.__getitem__)[:n]

    def fill_random(self, population: list[Individual]) -> None:
        tries = self.settings.tries * self.settings.population
        while len(population) < self.settings.population and tries > 0:
            tries -= 1
            ind = self.genome.random(self.rng)
            if self.legal(ind):
                population.append(ind)

    def offspring(self, parents: list[Individual], count: int, make: Callable) -> list[Individual]:
        found: list[Individual] = []
        tries = count * self.settings.tries
        while len(found) < count and tries > 0 and parents:
            tries -= 1
            child = make(parents)
            if self.legal(child):
                found.append(child)
        return found

    def mutant(self, parents: list[Individual]) -> Individual | None:
        parent = parents[int(self.rng.integers(len(parents)))]
        return self.genome.mutate(parent, self.rng, self.settings.mutation_prob)

    def child(self, parents: list[Individual]) -> Individual | None:
        a = parents[int(self.rng.integers(len(parents)))]
        b = parents[int(self.rng.integers(len(parents)))]
        return self.genome.crossover(a, b, self.rng)

    def end_generation(self) -> None:
        self.generation += 1
        scores = [self.visited[i][0] for i in self.population]
        best = self.visited[self.top(1)[0]][0]
        self.history.append(
            {
                "generation": self.generation,
                "best": best,
                "mean": float(np.mean(scores)) if scores else None,
                "population": len(self.population),
                "evaluations": len(self.visited),
            }
        )
        self.boundary = self.snapshot()
        self.save()

    def snapshot(self) -> dict[str, Any]:
        """The state at the end of the current generation (-1: before the first population)."""
        return {
            "format": STATE_FORMAT,
            "identity": self.identity,
            "settings": self.settings.to_dict(),
            "generation": self.generation,
            "rng": self.rng.bit_generator.state,
            "population": [list(i) for i in self.population],
            "visited": [list(i) for i in self.visited],
            "history": list(self.history),
            "finished": self.generation >= self.settings.generations,
        }

    def full_state(self) -> dict[str, Any]:
        """The last generation's state plus every evaluation so far (a resume replays the
        generation after it from the same generator state, taking scores from the cache)."""
        cache = [[list(i), s, extra] for i, (s, extra) in self.cache.items()]
        return {**self.boundary, "cache": cache}

    def save(self) -> None:
        self._save(self.full_state())
        self.last_save = time.monotonic()

    def restore(self, state: dict[str, Any]) -> None:
        self.cache = {tuple(i): (float(s), dict(extra)) for i, s, extra in state["cache"]}
        self.rng.bit_generator.state = state["rng"]
        self.population = [tuple(i) for i in state["population"]]
        for ind in state["visited"]:
            ind = tuple(ind)
            _, costs = self.problem.totals(ind)
            self.visited[ind] = (self.cache[ind][0], *(float(c) for c in costs), *ind)
        self.history = list(state["history"])
        self.generation = int(state["generation"])
        self.boundary = {k: v for k, v in state.items() if k != "cache"}


def resumable_state(
    state: dict[str, Any] | None, settings: EvolutionSettings, identity: dict[str, Any]
) -> bool:
    """A saved state continues this search: same problem and settings (`generations` may grow)."""
    if not state or state.get("format") != STATE_FORMAT or state.get("identity") != identity:
        return False
    saved = dict(state.get("settings") or {})
    wanted = settings.to_dict()
    if saved.pop("generations", None) is None or int(state["generation"]) > settings.generations:
        return False
    wanted.pop("generations")
    return saved == wanted


def evolve(
    problem: Any,
    genome: Genome,
    settings: EvolutionSettings,
    *,
    fitness: Fitness | None = None,
    top: int = 1,
    state: dict[str, Any] | None = None,
    identity: dict[str, Any] | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
    report: Report | None = None,
) -> EvolutionResult:
    """The best `top` feasible candidates found; `state` (a saved search with the same
    `identity` and settings) is resumed, `save` receives the state as it changes."""
    report = report or quiet
    identity = identity or {}
    fitness = fitness or (lambda ind: (problem.totals(ind)[0], {}))
    search = _Search(problem, genome, settings, fitness, save or (lambda s: None), identity)
    resumed = resumable_state(state, settings, identity)
    if resumed:
        search.restore(state)
    report("start", task="evolution", total=settings.generations + 1, done=search.generation + 1)
    if search.generation < 0:
        search.fill_random(search.population)
        if not search.population:
            raise BadInput(
                f"evolution found no architecture within the budget in "
                f"{settings.tries * settings.population} random tries; loosen the budget "
                "(the exact search can tell whether one exists)"
            )
        search.end_generation()
        _advance(report, search)
    while search.generation < settings.generations:
        parents = search.top(settings.select)
        population = search.offspring(parents, settings.mutations, search.mutant)
        population += search.offspring(parents, settings.crossovers, search.child)
        search.fill_random(population)
        search.population = population
        search.end_generation()
        _advance(report, search)
    best = search.top(top)
    return EvolutionResult(
        top=[
            Solution(i, search.visited[i][0], search.visited[i][1 : 1 + problem.dims]) for i in best
        ],
        state=search.full_state(),
        info={i: search.cache[i][1] for i in search.visited},
    )


def _advance(report: Report, search: _Search) -> None:
    row = search.history[-1]
    mean = f"{row['mean']:.4g}" if row["mean"] is not None else "-"
    report(
        "advance",
        task="evolution",
        status=f"gen {row['generation']}: best {row['best']:.4g}, mean {mean}, "
        f"{row['evaluations']} evaluated",
    )


def state_paths(out: str | Path) -> tuple[Path, Path]:
    """Where a search writing `out` keeps its evolution state and fitness plot:
    `evolution.json` / `evolution.png` beside `search.json`, `NAME.evolution.{json,png}` else."""
    out = Path(out)
    stem = "evolution" if out.name == "search.json" else f"{out.stem}.evolution"
    return out.with_name(f"{stem}.json"), out.with_name(f"{stem}.png")


def state_io(path: str | Path | None) -> tuple[dict[str, Any] | None, Callable[[dict], None]]:
    """The saved state at `path` (None when absent or unreadable) and an atomic saver."""
    from dnatool.utils import io

    if path is None:
        return None, lambda state: None
    path = Path(path)
    state = None
    if path.is_file():
        try:
            state = io.read_json(path, "evolution state")
        except BadInput:
            state = None
    return state, lambda data: io.write_json(path, data)


def problem_digest(problem: Any) -> str:
    """A hash of everything an evolution's answers depend on in a problem (scores, costs,
    budgets): a saved state is resumed only for the same problem."""
    import hashlib

    digest = hashlib.sha256()
    arrays = [*problem.scores, *problem.costs, problem.fixed, problem.budget]
    arrays += list(getattr(problem, "out_state", ()))
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
    digest.update(repr(problem.names).encode())
    return digest.hexdigest()[:16]


def render_fitness(history: list[dict[str, Any]], ylabel: str, title: str) -> bytes:
    """Best (so far) and mean (of the generation's population) fitness per generation."""
    from dnatool.utils.plots import new_figure, png_bytes

    fig = new_figure(figsize=(6, 3.8), dpi=110)
    ax = fig.add_subplot()
    gens = [h["generation"] for h in history]
    ax.plot(gens, [h["best"] for h in history], marker="o", label="best so far")
    means = [(h["generation"], h["mean"]) for h in history if h["mean"] is not None]
    ax.plot([g for g, _ in means], [m for _, m in means], marker=".", label="population mean")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("generation")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return png_bytes(fig)
