"""`dnatool bench ...`: the performance figures, as ratios measured in one run."""

from __future__ import annotations

from typing import Any

import click

from dnatool.cli._evolution import evolution_options, evolution_settings
from dnatool.cli._options import json_option


@click.group()
def bench() -> None:
    """Measure dnatool's performance claims on this machine."""


@bench.command("search")
@click.option(
    "--space", "space_name", default="dna-mbconv", show_default=True, help="Search space."
)
@click.option(
    "--fractions",
    default=",".join(f"{f:g}" for f in (0.55, 0.6, 0.65, 0.7, 0.8, 0.9)),
    show_default=True,
    help="Latency budgets as fractions of the [cheapest, costliest] range.",
)
@click.option(
    "--dfs-timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds each run of the paper's walk may take.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the synthetic data (and of the first evolution trial).",
)
@click.option(
    "--algorithm",
    type=click.Choice(["dfs", "evolution"]),
    default="dfs",
    show_default=True,
    help="The baseline measured against the exact optimum: the paper's walk (time) or SPOS's "
    "evolutionary search (optimality gap and evaluations).",
)
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Evolution: seeds per budget.",
)
@evolution_options
@json_option
def search(
    space_name: str,
    fractions: str,
    dfs_timeout: float,
    seed: int,
    algorithm: str,
    trials: int,
    as_json: bool,
    **evolution: Any,
) -> None:
    """Exact search against the paper's DFS (or SPOS's evolution) on SYNTHETIC score lists and
    latency table."""
    from dnatool.cli._console import Reporter, emit_json, info, out, progress
    from dnatool.errors import BadInput
    from dnatool.search.bench import bench_search

    try:
        values = [float(f) for f in fractions.split(",")]
    except ValueError:
        raise BadInput(f"bad --fractions {fractions!r}: expected comma-separated numbers") from None
    if not values or not all(0 <= f <= 1 for f in values):
        raise BadInput("--fractions must be numbers in [0, 1]")
    if algorithm == "evolution":
        settings = evolution_settings(evolution, seed)
        _bench_evolution(space_name, values, seed, trials, settings, as_json)
        return
    with progress() as bar:
        result = bench_search(space_name, values, dfs_timeout, seed, Reporter(bar))
    if as_json:
        emit_json(result)
        return
    for row in result["rows"]:
        dfs = (
            f"{row['dfs_seconds']:.3f} s"
            if row["dfs_finished"]
            else f"> {dfs_timeout:g} s (timeout)"
        )
        out.print(
            f"budget {row['budget_ms']:.3f} ms: exact {row['exact_seconds'] * 1e3:.1f} ms, dfs {dfs}, "
            f"same optimum {'n/a' if row['same_optimum'] is None else row['same_optimum']}"
        )
    bound = " (lower bound: some walks timed out)" if result["speedup_is_lower_bound"] else ""
    same = (
        "n/a (no walk finished within --dfs-timeout, nothing to compare)"
        if result["same_optimum"] is None
        else result["same_optimum"]
    )
    out.print(
        f"{result['space']}: {result['space_size']:,} architectures; speedup "
        f"{result['speedup']:.1f}x{bound}; same optimum {same}"
    )
    info(result["data"])


def _bench_evolution(
    space_name: str, fractions: list[float], seed: int, trials: int, settings: Any, as_json: bool
) -> None:
    from dnatool.cli._console import Reporter, emit_json, info, out, progress
    from dnatool.search.bench import bench_evolution

    with progress() as bar:
        result = bench_evolution(space_name, fractions, seed, trials, settings, Reporter(bar))
    if as_json:
        emit_json(result)
        return
    for row in result["rows"]:
        out.print(
            f"budget {row['budget_ms']:.3f} ms, seed {row['seed']}: gap {100 * row['gap']:.3f}% "
            f"({row['evaluations']} evaluations, {row['evolution_seconds']:.2f} s), "
            f"optimum found {row['found_optimum']}",
            highlight=False,
        )
    out.print(
        f"{result['space']}: {result['distinct_space_size']:,} distinct architectures; evolution "
        f"gap to the exact optimum mean {100 * result['gap_mean']:.3f}%, max "
        f"{100 * result['gap_max']:.3f}%; optimum found in {result['found_optimum']}/"
        f"{result['runs']} runs; {result['evaluations_mean']:.0f} evaluations per run",
        highlight=False,
    )
    info(result["data"])


@bench.command("serve")
@click.option(
    "--model",
    "model_ref",
    default=None,
    help="An .onnx file, model run or ARCH (default: a random arch of the tiny space).",
)
@click.option(
    "--clients",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Concurrent clients, each sending batch-1 requests back to back.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=0.5),
    default=6.0,
    show_default=True,
    help="Measured time per mode, split over alternating rounds.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="On/off phases alternate this many times (load drift hits both alike).",
)
@click.option("--max-batch", type=click.IntRange(min=2), default=32, show_default=True)
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=2.0, show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="onnxruntime intra-op threads of both servers (0: its default).",
)
@json_option
def serve(
    model_ref: str | None,
    clients: int,
    seconds: float,
    rounds: int,
    max_batch: int,
    max_wait_ms: float,
    threads: int,
    as_json: bool,
) -> None:
    """Requests/s and latency of `dnatool serve` with dynamic batching on vs off."""
    from dnatool.cli._console import emit_json, info, out
    from dnatool.serve.bench import bench_serve

    result = bench_serve(
        model_ref,
        clients,
        seconds,
        rounds,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        threads=threads,
        report=lambda event, **f: info(str(f["message"])) if event == "log" else None,
    )
    if as_json:
        emit_json(result)
        return
    out.print(
        f"{clients} clients, {result['model']}: batching on {result['batched_rps']:.0f} req/s "
        f"(p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, mean batch "
        f"{result['mean_batch']:.1f}), off {result['unbatched_rps']:.0f} req/s: ratio "
        f"{result['ratio']}x, errors {result['errors']}",
        highlight=False,
    )


@bench.command("rate")
@click.option("--layers", type=click.IntRange(min=1, max=6), default=4, show_default=True)
@click.option(
    "--width",
    type=click.IntRange(min=4),
    default=16,
    show_default=True,
    help="Channels of the cell.",
)
@click.option(
    "--size",
    type=click.IntRange(min=2),
    default=8,
    show_default=True,
    help="Input height and width.",
)
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True)
@click.option(
    "--bn-recalibrate",
    is_flag=True,
    help="Also recalibrate BN per candidate (the released code's way).",
)
@json_option
def rate(
    layers: int, width: int, size: int, batch: int, bn_recalibrate: bool, as_json: bool
) -> None:
    """Prefix-shared rating against naive per-path evaluation of one cell (DNA's 6 ops)."""
    from dnatool.cli._console import emit_json, out
    from dnatool.rate.bench import bench_rate

    result = bench_rate(
        layers=layers, width=width, size=size, batch=batch, recalibrate=bn_recalibrate
    )
    if as_json:
        emit_json(result)
        return
    out.print(
        f"{result['paths']} paths of a {layers}-layer, {result['ops']}-op cell: shared "
        f"{result['shared_seconds']:.2f} s ({result['shared_layer_evals']} layer evals), naive "
        f"{result['naive_seconds']:.2f} s ({result['naive_layer_evals']}); speedup "
        f"{result['speedup']:.2f}x (count predicts {result['predicted_speedup']:.2f}x); "
        f"identical scores: {result['identical']}"
    )


@bench.command("ranking")
@click.argument("recipe", required=False)
@click.option(
    "-o",
    "--override",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe key (repeatable), e.g. -o archs=8 -o seeds=2.",
)
@click.option("--out", default="runs/bench-ranking", show_default=True, help="Benchmark folder.")
@click.option(
    "--truth", "truth_path", default=None, help="Reuse this truth.json (no truth training)."
)
@click.option(
    "--methods",
    default=None,
    help="Comma-separated methods (default: the recipe's; `none`: build the truth only).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Local processes training truth jobs (under torchrun each rank takes its share).",
)
@click.option("--status", is_flag=True, help="Report the progress of OUT's truth and exit.")
@click.option(
    "--rescore",
    "rescore_path",
    default=None,
    metavar="SUMMARY",
    help="Judge a kept ranking.json's methods against --truth (the same networks) from the "
    "scores it keeps: no supernet trains.",
)
@json_option
def ranking(
    recipe: str | None,
    overrides: tuple[str, ...],
    out: str,
    truth_path: str | None,
    methods: str | None,
    workers: int,
    status: bool,
    rescore_path: str | None,
    as_json: bool,
) -> None:
    """Ranking fidelity: Kendall / Spearman / Pearson between each method's ratings and accuracy
    trained from scratch (RECIPE: default bench-ranking)."""
    import os

    from dnatool.bench.ranking import load_ranking_recipe, run_ranking, summary_lines, tail_line
    from dnatool.cli._console import Reporter, emit_json, progress
    from dnatool.cli._console import out as console
    from dnatool.errors import BadInput

    if status:
        from pathlib import Path

        from dnatool.bench.truth import PLAN_FILE, truth_status

        folder = next(
            (d for d in (Path(out) / "truth", Path(out)) if (d / PLAN_FILE).is_file()), None
        )  # a bench's OUT, or a truth folder itself
        if folder is None:
            raise BadInput(f"{out} holds no truth under way (no truth/{PLAN_FILE})")
        state = truth_status(folder)
        if as_json:
            emit_json(state)
            return
        ceiling = state["noise_ceiling_so_far"]
        tau = ceiling["kendall_tau"]["value"] if ceiling else None
        console.print(
            f"{state['jobs_done']}/{state['jobs']} jobs, {state['cpu_seconds']:.0f} s CPU; "
            f"tau between seeds so far: {'n/a' if tau is None else f'{tau:.3f}'}",
            highlight=False,
        )
        tail = tail_line(ceiling["tail"], ceiling["archs"]) if ceiling else None
        if tail:
            console.print(tail, highlight=False)
        return
    resolved = load_ranking_recipe(recipe or "bench-ranking", overrides)
    if rescore_path is not None:
        from dnatool.bench.ranking import rescore

        if truth_path is None or methods is not None:
            raise BadInput("--rescore takes --truth (the truth to judge against) and no --methods")
        summary = rescore(rescore_path, truth_path, resolved, out)
        if as_json:
            emit_json(summary)
            return
        for line in summary_lines(summary):
            console.print(line, highlight=False)
        return
    names = None if methods is None else [m.strip() for m in methods.split(",") if m.strip()]
    if names == []:
        raise BadInput("--methods names no method (`none` builds the truth only)")
    names = [] if names == ["none"] else names
    with progress() as bar:
        if os.environ.get("RANK", "0") != "0":  # torchrun: only rank 0 talks
            run_ranking(resolved, out, names, truth_path, workers)
            return
        summary = run_ranking(resolved, out, names, truth_path, workers, Reporter(bar))
    if summary is None:
        return
    if as_json:
        emit_json(summary)
        return
    for line in summary_lines(summary):
        console.print(line, highlight=False)
