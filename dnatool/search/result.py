"""`search.json` (winner arch, top-K, whole front) and `pareto.png`, both written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dnatool.arch.resolve import SEARCH_FORMAT
from dnatool.search.engine import SearchResult
from dnatool.utils import io

FORMAT = SEARCH_FORMAT
VERSION = 1


def to_dict(result: SearchResult, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The search.json object; `resolve_arch` reads its `winner.arch`."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "space": result.space.name,
        "winner": result.winner,
        "top": result.top,
        "front_axis": result.front_axis,
        "front": result.front,
        "budget": result.budget,
        "requested_budget": result.requested,
        "margin": result.margin,
        "weights": result.weights,
        "algorithm": result.algorithm,
        "front_size": len(result.front),
        "evaluated_space_size": result.evaluated_space_size,
        "seconds": result.seconds,
        "cost_seconds": result.cost_seconds,
        "inputs": inputs or {},
        **result.extra,
    }


def summary(result: SearchResult, search_json: str | None = None) -> dict[str, Any]:
    """The `search --json` object (contracts.md), plus where the files went."""
    w = result.winner
    out = {
        "arch": w["arch"],
        "score": w["score"],
        "latency_ms": w["latency_ms"],
        "params": w["params"],
        "macs": w["macs"],
        "front_size": len(result.front),
        "evaluated_space_size": result.evaluated_space_size,
        "seconds": result.seconds,
    }
    if search_json:
        out["search_json"] = search_json
    return {**out, **{k: v for k, v in result.extra.items() if k in ("verify", "evaluations")}}


def plot_path(out: Path) -> Path:
    """`pareto.png` next to `search.json`; `NAME.png` next to any other `NAME.json`."""
    return out.with_name("pareto.png") if out.name == "search.json" else out.with_suffix(".png")


def write(
    result: SearchResult, out: str | Path, inputs: dict[str, Any] | None = None, note: str = ""
) -> tuple[Path, Path]:
    out = Path(out)
    evolution = result.extra.get("evolution")
    if evolution:  # its fitness plot first, so that search.json can name it
        from dnatool.search.evolution import render_fitness, state_paths

        fitness = state_paths(out)[1]
        title = f"{result.space.name}: evolution, {evolution['evaluations']} evaluations"
        io.write_bytes(fitness, render_fitness(evolution["history"], evolution["fitness"], title))
        evolution["plot"] = str(fitness)
    io.write_json(out, to_dict(result, inputs))
    png = io.write_bytes(plot_path(out), render_plot(result, note))
    return out, png


def render_plot(result: SearchResult, note: str = "") -> bytes:
    """Score against the front's cost: the front, the top-K, the budget and the winner."""
    from dnatool.utils.plots import new_figure, png_bytes

    axis = result.front_axis
    fig = new_figure(figsize=(7, 4.5), dpi=110)
    ax = fig.add_subplot()
    xs = [p[axis] for p in result.front]
    ax.step(xs, [p["score"] for p in result.front], where="post", color="0.4", lw=1)
    ax.scatter(
        xs,
        [p["score"] for p in result.front],
        s=8,
        color="tab:blue",
        label=f"{'evaluated front' if result.extra.get('method') == 'spos' else 'Pareto front'} ({len(xs)})",
    )
    if len(result.top) > 1:
        ax.scatter(
            [t[axis] for t in result.top[1:]],
            [t["score"] for t in result.top[1:]],
            s=18,
            color="tab:orange",
            label=f"top {len(result.top)}",
        )
    ax.scatter(
        [result.winner[axis]],
        [result.winner["score"]],
        marker="*",
        s=160,
        color="tab:red",
        zorder=5,
        label="winner",
    )
    if axis in result.budget:
        ax.axvline(result.budget[axis], color="tab:red", ls="--", lw=1, label="budget")
        if result.requested[axis] != result.budget[axis]:
            ax.axvline(
                result.requested[axis], color="tab:red", ls=":", lw=1, label="budget before margin"
            )
    ax.set_xlabel(
        {"latency_ms": "predicted latency (ms)", "params": "params", "macs": "MACs"}[axis]
    )
    evolution = result.extra.get("evolution") or {}
    ax.set_ylabel(f"{evolution.get('fitness', 'weighted score')} (lower is better)")
    ax.set_title(
        f"{result.space.name}: {result.evaluated_space_size:.3g} architectures"
        + (f"  [{note}]" if note else ""),
        fontsize=9,
    )
    ax.legend(fontsize=8)
    return png_bytes(fig)
