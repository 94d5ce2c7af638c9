"""The truth of the ranking benchmark: N architectures x S seeds, each trained from scratch.

Every (architecture, seed) is one job: a `dnatool retrain` run (`TRUTH/runs/aIII-sS/`, resumable
per epoch) whose metrics land in `TRUTH/results/aIII-sS.json`, written atomically when it ends.
A killed truth resumes job by job (and inside a job, epoch by epoch). Jobs are seed-major
(every architecture's seed 0 first), so a partial truth already ranks every architecture once.

Parallelism: under `torchrun` each rank takes the jobs whose index is its rank modulo the world
size and trains them as a single process (the jobs are independent: no DDP); with
`workers > 1` that many local processes split the pending jobs; they stop with their bench process
(Ctrl-C or SIGTERM stops them, and after a SIGKILL they exit within a poll). `TRUTH/plan.json` fixes the
architectures, data and recipe first, so every process and every resume trains the same truth.
`truth.json` (format `dnatool.truth`) gathers the results and the noise ceiling.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dnatool.arch.space import Choice, SearchSpace
from dnatool.bench.stats import finite_or_none, noise_ceiling
from dnatool.errors import BadInput, RunFailure
from dnatool.utils import io, runs
from dnatool.utils.events import Report, quiet

PLAN_FORMAT = "dnatool.truth-plan"
TRUTH_FORMAT = "dnatool.truth"
PLAN_FILE = "plan.json"
TRUTH_FILE = "truth.json"
RESULTS_DIR = "results"
RUNS_DIR = "runs"
LOGS_DIR = "logs"
POLL_SECONDS = 5.0


def arch_name(index: int) -> str:
    """How a truth names its architecture `index` (its jobs, runs and reports)."""
    return f"a{index:03d}"


@dataclass(frozen=True)
class Job:
    arch: int
    seed: int

    @property
    def name(self) -> str:
        return f"{arch_name(self.arch)}-s{self.seed}"


def all_jobs(archs: int, seeds: int) -> list[Job]:
    """Seed-major order: one training of every architecture before any second seed."""
    return [Job(i, s) for s in range(seeds) for i in range(archs)]


def _key(choices: Sequence[Choice]) -> tuple:
    return tuple((int(c), tuple(int(op) for op in p)) for c, p in choices)


def sample_uniform(
    space: SearchSpace, count: int, seed: int, keep: Sequence[Sequence[Choice]] = ()
) -> list[list[Choice]]:
    """`count` distinct architectures drawn uniformly (`space.sample`, a seeded generator). The
    draws of a smaller count are a prefix of those of a larger one; `keep` (a truth's
    architectures) must be that prefix, so a truth grows by the next draws."""
    if count > space.distinct:
        raise BadInput(f"space {space.name!r} has only {space.distinct} distinct architectures")
    rng = np.random.default_rng([seed, 101])
    picked: dict[tuple, list[Choice]] = {}
    for _ in range(1000 * count):
        choices = space.sample(rng)
        picked.setdefault(_key(choices), choices)
        if len(picked) == count:
            drawn = list(picked.values())
            _check_kept(keep, [_key(c) for c in drawn[: len(keep)]])
            return drawn
    raise BadInput(f"could not draw {count} distinct architectures from space {space.name!r}")


def sample_spread(
    space: SearchSpace,
    scores: Any,
    count: int,
    pool: int,
    seed: int,
    keep: Sequence[Sequence[Choice]] = (),
    by: str = "rank",
) -> list[list[Choice]]:
    """`count` architectures whose scores (`scores(choices)`, e.g. a rated run's) are evenly
    spread over the range of a uniform pool: the ends of the range are always represented.
    `by="rank"` spaces them evenly in the pool's score ranking (quantiles), `by="value"` in the
    score itself (each target value's nearest pool architecture), which samples more densely
    where the pool is sparse. With `keep` (a truth's architectures, drawn from the same pool)
    those stay first, in order, and each further pick takes the pool's architecture farthest
    (in rank or value) from every pick so far, the middle of the widest gap: a truth grows
    without retraining what it has."""
    if by not in ("rank", "value"):
        raise ValueError(f"by must be 'rank' or 'value', got {by!r}")
    candidates = sample_uniform(space, min(max(pool, count), space.distinct), seed)
    values = [scores(c) for c in candidates]  # once each: a score may count a whole network
    return _spread_over(candidates, values, count, keep, by)


def _spread_over(
    candidates: list[list[Choice]],
    values: Sequence[float],
    count: int,
    keep: Sequence[Sequence[Choice]],
    by: str,
) -> list[list[Choice]]:
    order = sorted(range(len(candidates)), key=values.__getitem__)  # stable, as sorted(key=)
    ranked = [candidates[i] for i in order]
    position = (
        np.asarray([values[i] for i in order], dtype=float)
        if by == "value"
        else np.arange(len(ranked), dtype=float)
    )
    if not keep and by == "rank":
        picks = np.unique(np.linspace(0, len(ranked) - 1, count).round().astype(int))
        return [ranked[i] for i in picks]
    rank = {_key(c): i for i, c in enumerate(ranked)}
    _check_kept(keep, [_key(c) if _key(c) in rank else None for c in keep])
    return [ranked[i] for i in spread_picks(position, count, [rank[_key(c)] for c in keep])]


def spread_picks(position: np.ndarray, count: int, taken: list[int]) -> list[int]:
    """Indices into the sorted `position`s: with nothing `taken`, the nearest one to each of
    `count` targets evenly spaced over their range (the ends always in); then, to grow, the one
    farthest from every pick so far, the middle of the widest gap (the first of equal gaps)."""
    taken = list(taken)
    if not taken:
        for target in np.linspace(position[0], position[-1], min(count, len(position))):
            free = np.setdiff1d(np.arange(len(position)), taken)
            taken.append(int(free[int(np.argmin(np.abs(position[free] - target)))]))
        return taken
    free = np.setdiff1d(np.arange(len(position)), taken)
    while len(taken) < count and free.size:
        gaps = np.abs(position[free][:, None] - position[taken][None, :]).min(axis=1)
        best = int(free[int(np.argmax(gaps))])
        taken.append(best)
        free = free[free != best]
    return taken


def sample_by_accuracy(
    space: SearchSpace, path: str | Path, count: int, keep: Sequence[Sequence[Choice]] = ()
) -> list[list[Choice]]:
    """`count` architectures of the truth at `path` (a pilot: short, one-seed trainings of a
    pool) spread evenly over its seed-mean top-1, each target taken by its nearest architecture.
    A truth whose architectures crowd at similar accuracy ranks them mostly by seed noise; spread
    in accuracy, the same noise swaps fewer pairs (`benchmarks/ceiling_model.py`). The pilot's
    runs are not the truth's: train it with another seed, so its noise stays out of the ceiling.
    Grows into the widest accuracy gaps, as `sample_spread` does."""
    pilot, archs = _from_truth(space, path, count)
    top1 = [float(np.mean(a["top1"])) for a in pilot["archs"]]
    return _spread_over(archs, top1, count, keep, "value")


def sample_from_truth(
    space: SearchSpace, path: str | Path, count: int, keep: Sequence[Sequence[Choice]] = ()
) -> list[list[Choice]]:
    """The first `count` architectures of the truth at `path`, in its order: the same networks
    trained with another recipe (or data), so the two truths compare recipe for recipe and a
    method's ratings of them are scored against either without retraining its supernet."""
    _, archs = _from_truth(space, path, count)
    _check_kept(keep, [_key(c) for c in archs[: len(keep)]])
    return archs[:count]


def _from_truth(
    space: SearchSpace, path: str | Path, count: int
) -> tuple[dict[str, Any], list[list[Choice]]]:
    """The truth `from_truth` names and its architectures, refused when it has fewer than `count`."""
    truth = load_truth_of(path, space, "from_truth")
    archs = truth_choices(truth)
    if count > len(archs):
        raise BadInput(f"from_truth {path} has {len(archs)} architectures; archs={count} is more")
    return truth, archs


def _check_kept(keep: Sequence[Sequence[Choice]], drawn: list[tuple | None]) -> None:
    """Refuse to grow a truth whose architectures this sampling would not have drawn."""
    if [_key(c) for c in keep] != drawn:
        raise BadInput(
            "the truth's architectures are not what this sampling draws (another seed, pool, "
            "sampling or space?); grow it with the settings it was made with"
        )


def macs_counter(space: SearchSpace) -> Any:
    """MACs of whole architectures: the fixed part for the last width plus every layer's count
    (`nn.counts`, timm's modules on the meta device), each distinct layer counted once."""
    import functools

    from dnatool.nn.counts import layer_counts
    from dnatool.search.costs import fixed_params_macs

    count = functools.lru_cache(maxsize=None)(lambda layer: layer_counts(layer, space.act)[1])

    def macs(choices: Sequence[Choice]) -> int:
        widths = space.chain_widths(list(choices))
        total = fixed_params_macs(space, widths[-1])[1]
        for k, choice in enumerate(choices):
            total += sum(count(layer) for layer in space.path_layers(k, choice, widths[k]))
        return int(total)

    return macs


def make_plan(
    space: SearchSpace,
    space_ref: str,
    archs: list[list[Choice]],
    seeds: int,
    recipe: dict[str, Any],
    data: dict[str, Any],
    sampling: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the truth trains: the architectures (with params and MACs), seeds, recipe, data;
    `sampling` says how they were chosen (kept in `sampling`, one entry per growth)."""
    from dnatool.nn.summary import summarize

    rows = []
    for i, choices in enumerate(archs):
        arch = space.to_arch(choices, name=f"truth-{i:03d}")
        summary = summarize(arch)
        rows.append(
            {
                "index": i,
                "choices": [[c, list(p)] for c, p in choices],
                "arch": arch.to_dict(),
                "params": int(summary["params"]),
                "macs": int(summary["macs"]),
            }
        )
    return {
        "format": PLAN_FORMAT,
        "version": 1,
        "space": {"ref": space_ref, "name": space.name, "digest": space.digest},
        "data": data,
        "recipe": recipe,
        "seeds": seeds,
        "archs": rows,
        "sampling": [{"archs": len(rows), **sampling}] if sampling else [],
    }


def planned_archs(truth_dir: Path) -> list[list[Choice]]:
    """The architectures of the truth planned in `truth_dir` (none when there is no plan)."""
    path = truth_dir / PLAN_FILE
    if not path.is_file():
        return []
    rows = read_plan(path)["archs"]
    return [list(_key(row["choices"])) for row in rows]


def read_plan(path: Path) -> dict[str, Any]:
    """A truth's `plan.json`, its shape checked: a damaged plan is refused in one line."""
    plan = io.read_json(path, "truth plan")
    if (
        not isinstance(plan, dict)
        or not isinstance(plan.get("archs"), list)
        or not all(isinstance(a, dict) and "choices" in a for a in plan["archs"])
        or not isinstance(plan.get("seeds"), int)
        or plan["seeds"] < 1
        or not isinstance(plan.get("recipe"), dict)
    ):
        raise BadInput(f"{path} is not a truth plan (archs with choices, seeds, recipe)")
    return plan


def read_result(path: Path) -> dict[str, Any]:
    """One job's result, its figures checked: a damaged one is refused in one line (delete it
    and rerun: the job's finished run is taken again, not retrained)."""
    row = io.read_json(path, "truth job result")
    numbers = ("top1", "cpu_seconds")
    if not isinstance(row, dict) or not all(isinstance(row.get(k), int | float) for k in numbers):
        raise BadInput(
            f"{path} is not a truth job result ({', '.join(numbers)}); delete it to redo"
        )
    return row


def write_plan(truth_dir: Path, plan: dict[str, Any]) -> dict[str, Any]:
    """Write the plan, or check it against the one a previous (killed) truth wrote. Only the
    number of seeds may change, and architectures may be added after the planned ones: every
    job keeps its meaning, so a truth can gain a seed or architectures later (or be closed with
    the seeds done so far). The data folder's path is not part of the truth (the data is
    identified by its digest): a truth copied elsewhere resumes, its jobs reading the new folder."""
    path = truth_dir / PLAN_FILE
    if path.is_file():
        old = read_plan(path)
        grows = old.get("archs") == plan["archs"][: len(old.get("archs") or [])]
        for key in ("space", "data", "recipe", "archs"):
            before, now = old.get(key), plan.get(key)
            if key == "recipe":  # a key added to the recipe since counts as its default
                from dnatool.config import recorded_as_now
                from dnatool.retrain.recipe import RetrainRecipe

                now = _without_data(now)
                before = recorded_as_now(RetrainRecipe, _without_data(before), now)
            if before != now and not (key == "archs" and grows):
                detail = recipe_difference(before, now) if key == "recipe" else key
                raise BadInput(
                    f"{path} plans another truth ({detail}); use another --out or the same settings"
                )
        same = old.get("recipe", {}).get("data") == plan["recipe"].get("data")
        if same and old.get("seeds") == plan["seeds"] and old.get("archs") == plan["archs"]:
            return old
        grew = len(plan["archs"]) > len(old.get("archs") or [])
        steps = plan.get("sampling", []) if grew else []
        plan = {**plan, "sampling": old.get("sampling", []) + steps}
    io.write_json(path, plan)
    return plan


def _without_data(recipe: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (recipe or {}).items() if k != "data"}


def recipe_difference(before: dict[str, Any], now: dict[str, Any]) -> str:
    """The first recipe key that differs, named with both values: the fix is one override away."""
    first = next(
        k for k in sorted({*before, *now}) if k not in before or k not in now or before[k] != now[k]
    )
    return f"recipe key {first} was {before.get(first)!r}, now {now.get(first)!r}"


def _source_plan(source: str | Path) -> tuple[Path, dict[str, Any]]:
    """The folder and plan of a truth given as its folder, its `truth.json`, a bench's OUT or a
    kept copy (`plan.json` beside `results/`)."""
    path = Path(source)
    folder = path.parent if path.is_file() else path
    for candidate in (folder, folder / "truth"):
        if (candidate / PLAN_FILE).is_file():
            return candidate, read_plan(candidate / PLAN_FILE)
    raise BadInput(f"reuse {source}: no truth there (no {PLAN_FILE} in it or in its truth/)")


def reuse_results(
    truth_dir: Path, plan: dict[str, Any], sources: Sequence[str | Path], report: Report = quiet
) -> int:
    """Take the pending jobs that another truth has already trained exactly: the same space,
    data and recipe (all but its base seed), the same network and the same training seed. A truth
    whose networks were picked from a pool of pilot-ranked ones often shares some with a kept
    truth; each shared job is hours of CPU that would only reproduce a result bit for bit. The
    copied result names where it came from (`reused_from`); a source that trained another truth
    is refused in one line, not silently ignored."""
    from dnatool.config import recorded_as_now
    from dnatool.retrain.recipe import RetrainRecipe

    def seedless(recipe: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in _without_data(recipe).items() if k != "seed"}

    mine = seedless(plan["recipe"])
    taken = 0
    for source in sources:
        folder, other = _source_plan(source)
        if other.get("space", {}).get("digest") != plan["space"]["digest"]:
            raise BadInput(f"reuse {source}: trained on another space ({other['space']['name']})")
        if other.get("data") != plan["data"]:
            raise BadInput(f"reuse {source}: trained on other data")
        theirs = recorded_as_now(RetrainRecipe, seedless(other["recipe"]), mine)
        if theirs != mine:
            raise BadInput(f"reuse {source}: another recipe ({recipe_difference(theirs, mine)})")
        trained = {}
        for job in all_jobs(len(other["archs"]), other["seeds"]):
            if result_path(folder, job).is_file():
                row = read_result(result_path(folder, job))
                seed = other["recipe"]["seed"] + job.seed
                trained[(_key(other["archs"][job.arch]["choices"]), seed)] = (job, row)
        for job in pending_jobs(truth_dir, plan):
            seed = plan["recipe"]["seed"] + job.seed
            key = (_key(plan["archs"][job.arch]["choices"]), seed)
            if key not in trained:
                continue
            theirs_job, row = trained[key]
            for curves in (
                folder / "curves" / f"{theirs_job.name}.csv",
                folder / RUNS_DIR / theirs_job.name / "curves.csv",
            ):
                if curves.is_file():
                    io.write_bytes(
                        truth_dir / RUNS_DIR / job.name / "curves.csv", curves.read_bytes()
                    )
                    break
            reused = {"truth": str(folder.resolve()), "job": theirs_job.name}
            io.write_json(
                result_path(truth_dir, job),
                {**row, "job": job.name, "arch": job.arch, "seed": job.seed, "reused_from": reused},
            )
            taken += 1
    if taken:
        report("log", message=f"truth: {taken} job(s) reused from {', '.join(map(str, sources))}")
    return taken


def result_path(truth_dir: Path, job: Job) -> Path:
    return truth_dir / RESULTS_DIR / f"{job.name}.json"


def pending_jobs(truth_dir: Path, plan: dict[str, Any]) -> list[Job]:
    return [
        job
        for job in all_jobs(len(plan["archs"]), plan["seeds"])
        if not result_path(truth_dir, job).is_file()
    ]


@contextlib.contextmanager
def single_process() -> Iterator[None]:
    """Under torchrun the jobs are independent: each rank retrains alone (no process group).
    LOCAL_RANK stays, so each rank keeps its own GPU."""
    saved = {k: os.environ.get(k) for k in ("WORLD_SIZE", "RANK")}
    os.environ["WORLD_SIZE"], os.environ["RANK"] = "1", "0"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_job(truth_dir: Path, plan: dict[str, Any], job: Job, report: Report = quiet) -> dict:
    """Train one (architecture, seed) from scratch (resuming its run) and record its metrics."""
    from dnatool.arch.spec import ArchSpec
    from dnatool.config import from_dict
    from dnatool.retrain.recipe import RetrainRecipe
    from dnatool.retrain.train import run_retrain

    entry = plan["archs"][job.arch]
    arch = ArchSpec.from_dict(entry["arch"])
    recipe = from_dict(RetrainRecipe, {**plan["recipe"], "seed": plan["recipe"]["seed"] + job.seed})
    run_dir = truth_dir / RUNS_DIR / job.name
    finished = runs.read_manifest(run_dir).get("finished") if runs.is_run(run_dir) else None
    cpu, wall = time.process_time(), time.time()
    with single_process():
        metrics = run_retrain(arch, recipe, run_dir, report, resume=True)
    row = {
        "job": job.name,
        "arch": job.arch,
        "seed": job.seed,
        "recipe_seed": recipe.seed,
        "top1": float(metrics["top1"]),
        "top5": float(metrics["top5"]),
        "raw_top1": float(metrics["raw_top1"]),
        "val_loss": float(metrics["val_loss"]),
        "val_images": int(metrics["val_images"]),
        "epochs": int(metrics["epochs"]),
        "params": int(metrics["params"]),
        "device": metrics["device"],
        "cpu_seconds": time.process_time() - cpu,
        "wall_seconds": time.time() - wall,
        "epoch_seconds": float(metrics["train_seconds"]),
    }
    if finished and runs.read_manifest(run_dir).get("finished") == finished:
        # the run was complete before this job (a kill between its model and its result, or a
        # run trained elsewhere copied in): its CPU was spent outside this truth
        row["reused_from"] = {"run": str(run_dir.resolve()), "finished": finished}
    io.write_json(result_path(truth_dir, job), row)
    return row


def run_share(
    truth_dir: str | Path,
    names: Sequence[str],
    threads: int | None = None,
    parent: int | None = None,
) -> None:
    """A worker process: train the named jobs in order (entry point of local workers, which pass
    their bench process as `parent` and stop when it is gone)."""
    import torch

    if parent is not None:
        _exit_with_parent(parent)
    truth_dir = Path(truth_dir)
    if threads:
        torch.set_num_threads(threads)
    plan = read_plan(truth_dir / PLAN_FILE)
    jobs = {job.name: job for job in all_jobs(len(plan["archs"]), plan["seeds"])}
    log = truth_dir / LOGS_DIR / f"worker-{os.getpid()}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as handle:

        def report(event: str, **fields: Any) -> None:
            if event == "log":
                handle.write(f"{time.strftime('%H:%M:%S')} {fields['message']}\n")
                handle.flush()

        for name in names:
            if result_path(truth_dir, jobs[name]).is_file():
                continue
            report("log", message=f"{name}: start")
            row = run_job(truth_dir, plan, jobs[name], report)
            report(
                "log", message=f"{name}: top-1 {row['top1']:.2f}% ({row['cpu_seconds']:.0f} s CPU)"
            )


def run_truth(
    truth_dir: str | Path,
    plan: dict[str, Any],
    workers: int = 1,
    threads: int | None = 1,
    report: Report = quiet,
    reuse: Sequence[str | Path] = (),
) -> dict[str, Any] | None:
    """Train every pending job (after taking those `reuse`'s truths trained exactly), then write
    and return `truth.json`'s content.

    Under torchrun, rank r trains jobs r, r + world, ...; rank 0 then waits for the others' result
    files and writes the truth, the other ranks return None.
    """
    truth_dir = Path(truth_dir)
    plan = write_plan(truth_dir, plan)
    reuse_results(truth_dir, plan, reuse, report)  # every rank: the same files, before sharing
    jobs = all_jobs(len(plan["archs"]), plan["seeds"])
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    pending = pending_jobs(truth_dir, plan)
    report("start", task="truth", total=len(jobs), done=len(jobs) - len(pending))
    if world > 1:
        mine = [j.name for i, j in enumerate(jobs) if i % world == rank and j in pending]
        run_share(truth_dir, mine, threads)
        if rank != 0:
            return None
        _wait(truth_dir, plan, report, len(jobs) - len(pending), processes=None)
    elif workers > 1 and len(pending) > 1:
        _run_workers(truth_dir, plan, pending, workers, threads, report, len(jobs) - len(pending))
    else:
        if threads:
            import torch

            torch.set_num_threads(threads)
        for job in pending:

            def epochs(event: str, job: Job = job, **fields: Any) -> None:
                if event == "log":
                    report("log", message=f"truth {job.name}: {fields['message']}")

            row = run_job(truth_dir, plan, job, epochs)
            report("advance", task="truth", status=f"{job.name} top-1 {row['top1']:.2f}%")
            report(
                "log",
                message=f"truth {job.name}: top-1 {row['top1']:.2f}% ({row['cpu_seconds']:.0f} s CPU)",
            )
    truth = assemble_truth(truth_dir, plan)
    io.write_json(truth_dir / TRUTH_FILE, truth)
    return truth


def _run_workers(
    truth_dir: Path,
    plan: dict[str, Any],
    pending: list[Job],
    workers: int,
    threads: int | None,
    report: Report,
    done: int,
) -> None:
    """Local worker processes (spawned: no inherited threads or locks), interleaved shares."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    count = min(workers, len(pending))
    processes = [
        context.Process(
            target=run_share,
            args=(str(truth_dir), [j.name for j in pending[r::count]], threads, os.getpid()),
            daemon=False,
        )
        for r in range(count)
    ]
    for process in processes:
        process.start()
    try:
        with _terminate_as_interrupt():
            _wait(truth_dir, plan, report, done, processes)
            for process in processes:
                process.join()
    except BaseException:  # interrupted: stop the workers (their jobs resume on the next run)
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
        raise
    failed = [p.exitcode for p in processes if p.exitcode]
    if failed:
        raise RunFailure(
            f"{len(failed)} truth worker(s) failed (exit codes {failed}); see {truth_dir / LOGS_DIR}"
        )


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (`kill`, a scheduler's stop) unwinds like Ctrl-C, so the workers are stopped too
    instead of training on as orphans beside the next run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_with_parent(parent: int) -> None:
    """A worker whose bench process died without unwinding (SIGKILL, OOM) exits within a poll;
    its job resumes from its last epoch on the next run."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _wait(
    truth_dir: Path, plan: dict[str, Any], report: Report, done: int, processes: list | None
) -> None:
    """Report jobs as their result files appear; stop when all exist or every worker ended."""
    total = len(plan["archs"]) * plan["seeds"]
    while True:
        finished = total - len(pending_jobs(truth_dir, plan))
        if finished > done:
            report("advance", task="truth", n=finished - done, status=f"{finished}/{total} jobs")
            done = finished
        if finished == total:
            return
        if processes is not None and not any(p.is_alive() for p in processes):
            return
        time.sleep(POLL_SECONDS)


def named_ceiling(top1: np.ndarray, indices: list[int], resamples: int = 2000) -> dict[str, Any]:
    """The noise ceiling of `top1` (one row per architecture `indices[row]`), its `tail` naming
    the most scattered architectures as the truth's jobs do (rows alone would be ambiguous in a
    truth under way, whose rows are the architectures done so far)."""
    ceiling = finite_or_none(noise_ceiling(top1, resamples=resamples))
    return {**ceiling, "tail": named_tail(ceiling["tail"], indices)}


def named_tail(tail: dict[str, Any], indices: list[int]) -> dict[str, Any]:
    """A `scatter_tail` with its rows named as the truth's jobs name their architectures."""
    names = [arch_name(indices[row]) for row in tail["most_scattered"]]
    return {**tail, "most_scattered_archs": names}


def assemble_truth(truth_dir: Path, plan: dict[str, Any]) -> dict[str, Any]:
    """`truth.json`: per architecture its accuracies per seed and their mean, the noise ceiling,
    the CPU time of the jobs. Refused while jobs are missing."""
    missing = pending_jobs(truth_dir, plan)
    if missing:
        raise RunFailure(
            f"the truth is incomplete: {len(missing)} job(s) have no result yet "
            f"(first: {missing[0].name}); rerun to continue"
        )
    seeds = plan["seeds"]
    results = {
        (job.arch, job.seed): read_result(result_path(truth_dir, job))
        for job in all_jobs(len(plan["archs"]), seeds)
    }
    top1 = np.array(
        [[results[(a["index"], s)]["top1"] for s in range(seeds)] for a in plan["archs"]]
    )
    archs = [
        {
            "index": a["index"],
            "choices": a["choices"],
            "arch": a["arch"],
            "params": a["params"],
            "macs": a["macs"],
            "top1": top1[i].tolist(),
            "mean_top1": float(top1[i].mean()),
        }
        for i, a in enumerate(plan["archs"])
    ]
    rows = list(results.values())
    return {
        "format": TRUTH_FORMAT,
        "version": 1,
        "space": plan["space"],
        "data": plan["data"],
        "recipe": plan["recipe"],
        "seeds": seeds,
        "sampling": plan.get("sampling", []),  # how the architectures were chosen
        "archs": archs,
        "noise_ceiling": (
            named_ceiling(top1, [a["index"] for a in archs])
            if seeds >= 2 and len(archs) >= 3
            else None
        ),
        "jobs": len(rows),
        # a job copied from another truth brings its CPU; a run found finished brings none
        "cpu_seconds": float(sum(r["cpu_seconds"] for r in rows)),
        "reused_jobs": sum(1 for r in rows if r.get("reused_from")),
        "epoch_seconds": float(sum(r["epoch_seconds"] for r in rows)),
        "devices": sorted({str(r["device"]) for r in rows}),
    }


def truth_status(truth_dir: str | Path) -> dict[str, Any]:
    """Progress of a truth under way: jobs done, and the noise ceiling over the architectures
    already trained with at least two seeds (the seeds done so far)."""
    truth_dir = Path(truth_dir)
    plan = read_plan(truth_dir / PLAN_FILE)
    rows: dict[int, dict[int, float]] = {}
    cpu = 0.0
    for job in all_jobs(len(plan["archs"]), plan["seeds"]):
        if result_path(truth_dir, job).is_file():
            row = read_result(result_path(truth_dir, job))
            rows.setdefault(job.arch, {})[job.seed] = row["top1"]
            cpu += row["cpu_seconds"]
    seeds = min((len(r) for r in rows.values()), default=0)
    both = sorted(a for a, r in rows.items() if len(r) >= 2)
    common = min((len(rows[a]) for a in both), default=0)
    top1 = np.array([[rows[a][s] for s in sorted(rows[a])[:common]] for a in both])
    done = sum(len(r) for r in rows.values())
    return {
        "jobs_done": done,
        "jobs": len(plan["archs"]) * plan["seeds"],
        "archs_with_every_seed": sum(len(r) == plan["seeds"] for r in rows.values()),
        "seeds_complete": seeds if len(rows) == len(plan["archs"]) else 0,
        "cpu_seconds": cpu,
        "top1": {str(a): [rows[a][s] for s in sorted(rows[a])] for a in sorted(rows)},
        "noise_ceiling_so_far": named_ceiling(top1, both, 500) if len(both) >= 3 else None,
    }


def truth_file(path: str | Path) -> Path:
    """The `truth.json` that `path` names: the file itself, or the one in a truth folder or in a
    bench OUT's `truth/` (as `reuse:` takes them)."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / TRUTH_FILE, path / "truth" / TRUTH_FILE):
            if candidate.is_file():
                return candidate
        raise BadInput(f"{path} holds no {TRUTH_FILE} (nor truth/{TRUTH_FILE}): is it finished?")
    return path


def load_truth(path: str | Path) -> dict[str, Any]:
    """A `truth.json` (or the folder holding it), checked: format tag, space, architectures with
    their choices and one finite accuracy per seed, so a damaged file is refused in one line
    before anything reads it."""
    path = truth_file(path)
    data = io.read_json(path, "truth file")
    if not isinstance(data, dict) or data.get("format") != TRUTH_FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise BadInput(
            f"{path} is not a {TRUTH_FORMAT} file (format tag {found!r})"
            if found
            else f"{path} is not a {TRUTH_FORMAT} file (format tag missing)"
        )
    archs, seeds, space = data.get("archs"), data.get("seeds"), data.get("space")
    if not isinstance(archs, list) or len(archs) < 3 or not isinstance(seeds, int) or seeds < 1:
        raise BadInput(f"{path}: a truth needs 'seeds' (>= 1) and at least 3 'archs'")
    if not isinstance(space, dict) or not all(
        isinstance(space.get(k), str) for k in ("ref", "digest")
    ):
        raise BadInput(f"{path}: 'space' must name the space (ref, digest)")
    space.setdefault("name", space["ref"])
    for i, a in enumerate(archs):
        top1 = a.get("top1") if isinstance(a, dict) else None
        if (
            not isinstance(top1, list)
            or len(top1) != seeds
            or not all(isinstance(v, int | float) and np.isfinite(v) for v in top1)
        ):
            raise BadInput(f"{path}: arch {i} needs one finite top-1 per seed")
        a.setdefault("mean_top1", float(np.mean(top1)))  # derived: a hand-written truth omits it
        try:
            _key(a["choices"])
        except (KeyError, TypeError, ValueError):
            raise BadInput(f"{path}: arch {i} needs 'choices' as [cell, [op, ...]] pairs") from None
    if seeds < 2:  # one seed measures no noise, whatever an edited file claims
        data["noise_ceiling"] = None
    return data


def load_truth_of(path: str | Path, space: SearchSpace, name: str, of: str = "") -> dict[str, Any]:
    """A truth that must rank architectures of `space`, refused in one line otherwise (`name`
    and `of` say whose truth and space the message is about)."""
    truth = load_truth(path)
    if truth.get("space", {}).get("digest") != space.digest:
        raise BadInput(
            f"{name} {path} ranks architectures of {truth.get('space', {}).get('ref')!r}, "
            f"not of {of}{space.name!r}"
        )
    return truth


def truth_choices(truth: dict[str, Any]) -> list[list[Choice]]:
    return [list(_key(a["choices"])) for a in truth["archs"]]
