"""`dnatool search RUN --latency 10ms --lut LUT`: the exact best architecture under budgets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dnatool.cli._evolution import evolution_options, evolution_settings, seed_option
from dnatool.cli._options import json_option


def parse_margin(text: str) -> float:
    """`0.05` or `5%`."""
    from dnatool.errors import BadInput

    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise BadInput(
            f"bad --margin {text!r}: expected a fraction such as 0.05 or a percentage such as 5%"
        ) from None
    return value


def parse_weights(text: str | None) -> list[float] | None:
    from dnatool.errors import BadInput

    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise BadInput(
            f"bad --weights {text!r}: expected comma-separated numbers, one per block"
        ) from None


def default_top(algorithm: str) -> int:
    """The paper's walk finds one architecture; the exact search and evolution keep five."""
    return 1 if algorithm == "dfs" else 5


def parse_budgets(latency: str | None, params: str | None, macs: str | None) -> dict[str, float]:
    from dnatool.utils.units import parse_count, parse_latency_ms

    budgets = {}
    if latency is not None:
        budgets["latency_ms"] = parse_latency_ms(latency)
    if params is not None:
        budgets["params"] = parse_count(params)
    if macs is not None:
        budgets["macs"] = parse_count(macs)
    return budgets


@click.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--latency", help="Latency budget, e.g. 10ms, 800us (needs --lut).")
@click.option("--params", help="Parameter budget, e.g. 5.3M.")
@click.option("--macs", help="MACs budget, e.g. 400M.")
@click.option(
    "--lut",
    type=click.Path(exists=True, dir_okay=False),
    help="Latency table from `dnatool profile`.",
)
@click.option("--space", "space_ref", help="Search space (default: the run's recipe.space).")
@click.option(
    "--weights", help="Per-block score weights lambda_k, comma-separated (default all 1)."
)
@click.option(
    "--margin", default="0", show_default=True, help="Search at budget * (1 - P); 0.05 or 5%."
)
@click.option(
    "--top",
    type=int,
    default=None,
    help="How many best architectures to keep [default: 5; 1 with --algorithm dfs].",
)
@click.option(
    "--algorithm",
    type=click.Choice(["exact", "dfs", "evolution"]),
    default=None,
    help="exact: Pareto fronts / branch-and-bound; dfs: the paper's walk (baseline); evolution: "
    "SPOS's evolutionary search [default: exact; evolution on SPOS runs].",
)
@evolution_options
@seed_option
@click.option("--verify", is_flag=True, help="Measure the winner on the table's backend.")
@click.option(
    "--force", is_flag=True, help="Search with a latency table that failed its hold-out check."
)
@click.option(
    "--out", type=click.Path(dir_okay=False), help="Result file (default RUN/search.json)."
)
@json_option
def search(
    run: str,
    latency: str | None,
    params: str | None,
    macs: str | None,
    lut: str | None,
    space_ref: str | None,
    weights: str | None,
    margin: str,
    top: int | None,
    algorithm: str,
    verify: bool,
    force: bool,
    out: str | None,
    as_json: bool,
    **evolution: Any,
) -> None:
    """Find the best architecture of RUN's rated space under the given budgets, exactly (or by
    evolution: SPOS runs, whose fitness is the supernet's top-1)."""
    from dnatool.cli._console import Reporter, emit_json, info, progress
    from dnatool.search import result as R
    from dnatool.search.run import search_run
    from dnatool.utils.runs import run_method

    spos = run_method(run) == "spos"
    algorithm = algorithm or ("evolution" if spos else "exact")
    if algorithm == "evolution":
        evolution_settings(evolution)  # bad settings: one line before any work
    if spos:
        from dnatool.search.spos import search_spos_run as search_run

    budgets = parse_budgets(latency, params, macs)
    if lut is not None and not force:
        from dnatool.profile.lut import refuse_failed

        refuse_failed(lut)
    with progress() as bar:
        result, path, png = search_run(
            run,
            budgets,
            lut=lut,
            out=out,
            space_ref=space_ref,
            report=Reporter(bar),
            verify=verify,
            weights=parse_weights(weights),
            top=default_top(algorithm) if top is None else top,
            margin=parse_margin(margin),
            algorithm=algorithm,
            **({"evolution": evolution_settings(evolution)} if algorithm == "evolution" else {}),
        )
    skipped = result.extra.get("verify", {}).get("skipped")
    if skipped:
        info(f"verify skipped: {skipped}")
    if as_json:
        emit_json(R.summary(result, str(path)))
        return
    _print(result, path, png)


def _print(result: Any, path: Path, png: Path) -> None:
    from dnatool.cli._console import info, out
    from dnatool.utils.units import format_count

    w = result.winner
    lat = f"{w['latency_ms']:.3f} ms  " if w["latency_ms"] is not None else ""
    out.print(
        f"winner: score {w['score']:.5f}  {lat}params {format_count(w['params'])}  "
        f"MACs {format_count(w['macs'])}"
    )
    for k, (cell, ops) in enumerate(w["choices"]):
        out.print(f"  block {k}: cell {cell} ops {ops}")
    v = result.extra.get("verify", {})
    if "measured_ms" in v:
        drift = (
            f"; reference network {v['drift']:.2f}x its time in the table, "
            f"{100 * v['drift_corrected_error']:+.1f}% with that divided out"
            if "drift" in v
            else ""
        )
        out.print(
            f"verify: predicted {v['predicted_ms']:.3f} ms, measured {v['measured_ms']:.3f} ms "
            f"({100 * v['error']:+.1f}%){drift}"
        )
    evolution = result.extra.get("evolution")
    if evolution:
        top1 = f" (top-1 {w['top1']:.2f}%)" if "top1" in w else ""
        info(
            f"evolution{top1}: {evolution['evaluations']:,} architectures evaluated in "
            f"{len(evolution['history']) - 1} generations, {result.seconds:.3f} s; wrote {path}, "
            f"{png} and {evolution['plot']}"
        )
        return
    info(
        f"{result.evaluated_space_size:,} distinct architectures, front of {len(result.front)} points, "
        f"searched in {result.seconds:.3f} s; wrote {path} and {png}"
    )
