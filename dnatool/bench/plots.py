"""The ranking benchmark's figures: one scatter per method, one summary (through utils/plots)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dnatool.utils.plots import new_figure, save_png

STAT_LABELS = {"kendall_tau": "Kendall tau", "spearman": "Spearman rho", "pearson": "Pearson r"}


def _num(value: Any) -> float:
    """None (an undefined statistic in the JSON) plots as NaN."""
    return float("nan") if value is None else float(value)


def _interval(stat: dict[str, Any]) -> str:
    value, low, high = (_num(stat[k]) for k in ("value", "low", "high"))
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def scatter_plot(truth: dict[str, Any], result: dict[str, Any], path: Path) -> Path:
    """Method score (lower is better) against trained top-1: the seed mean, bars from the lowest
    to the highest seed."""
    top1 = np.array([a["top1"] for a in truth["archs"]], dtype=float)
    mean = top1.mean(axis=1)
    scores = np.asarray(result["scores"], dtype=float)
    fig = new_figure(figsize=(5.5, 4.2))
    ax = fig.subplots()
    ax.errorbar(
        scores,
        mean,
        yerr=[mean - top1.min(axis=1), top1.max(axis=1) - mean],
        fmt="o",
        capsize=3,
        alpha=0.85,
    )
    ax.set_xlabel(f"{result['method']} score (lower is better)")
    ax.set_ylabel(f"top-1 trained from scratch (%), {truth['seeds']} seed(s)")
    ax.set_title(
        f"{result['method']}: tau {_interval(result['kendall_tau'])}, n={result['n']}", fontsize=9
    )
    ax.grid(alpha=0.3)
    return save_png(fig, path, dpi=100)


def _method_entries(summary: dict[str, Any]) -> dict[str, Any]:
    """One entry per method: a method trained with several supernet seeds is its seed mean
    (named `NAME xN`, each seed's value kept for the dots), the others their single run."""
    seeded = summary.get("supernet_seeds") or {}
    owner = {run: group for group, entry in seeded.items() for run in entry["runs"]}
    entries: dict[str, Any] = {}
    for name, result in summary["methods"].items():
        group = owner.get(name)
        if group is None:
            entries[name] = result
        elif name == seeded[group]["runs"][0]:
            entries[f"{group} x{len(seeded[group]['runs'])}"] = seeded[group]
    return entries


def summary_plot(summary: dict[str, Any], path: Path) -> Path:
    """Tau / rho / r of every method with their intervals (a method with several supernet seeds:
    their mean, each seed a dot), the size-only baselines (hatched) they must beat, the truth's
    noise ceiling, and what a perfect rating's tau would be (both noise models, dotted)."""
    entries = _method_entries(summary)
    baselines = {f"{k} (size)": v for k, v in (summary.get("baselines") or {}).items()}
    entries.update(baselines)
    methods = list(entries)
    fig = new_figure(figsize=(max(6.5, 1.0 + 1.05 * len(methods)), 4.0))
    ax = fig.subplots()
    width = 0.8 / len(STAT_LABELS)
    for j, (key, label) in enumerate(STAT_LABELS.items()):
        values = [entries[m][key] for m in methods]
        x = np.arange(len(methods)) + (j - 1) * width
        centre = np.array([_num(v["value"]) for v in values])
        errors = np.nan_to_num(
            [
                centre - np.array([_num(v["low"]) for v in values]),
                np.array([_num(v["high"]) for v in values]) - centre,
            ]
        )
        bars = ax.bar(x, np.nan_to_num(centre), width, yerr=errors, capsize=3, label=label)
        for bar, name in zip(bars, methods):
            if name in baselines:
                bar.set_hatch("//")
                bar.set_alpha(0.5)
        for position, value in zip(x, values):
            seeds = [_num(v) for v in value.get("values", [])]
            ax.scatter(
                [position] * len(seeds), seeds, c="white", edgecolors="black", s=14, zorder=3
            )
    ceiling = (summary["truth"].get("noise_ceiling") or {}).get("kendall_tau")
    if ceiling and ceiling["value"] is not None:  # in the legend: a label on the line hid bars
        label = f"noise ceiling (tau between seeds) {ceiling['value']:.2f}"
        if ceiling["low"] is not None and ceiling["high"] is not None:
            ax.axhspan(ceiling["low"], ceiling["high"], color="grey", alpha=0.15)
            label += f", 95% CI [{ceiling['low']:.2f}, {ceiling['high']:.2f}] shaded"
        ax.axhline(ceiling["value"], color="black", linestyle="--", linewidth=1, label=label)
    perfect = summary["truth"].get("perfect_rating")
    low, high = (_num((perfect or {}).get(m, {}).get("value")) for m in ("pooled", "per_network"))
    if np.isfinite(low) and np.isfinite(
        high
    ):  # the most a rating's tau can reach against the means
        ax.axhline(low, color="tab:purple", linestyle=":", linewidth=1.2)
        ax.axhline(
            high,
            color="tab:purple",
            linestyle=":",
            linewidth=1.2,
            label=f"perfect rating's tau against the seed means {low:.2f}-{high:.2f}",
        )
    long = max(len(m) for m in methods) > 10  # variant names: tilt them rather than overlap
    ax.set_xticks(
        np.arange(len(methods)),
        methods,
        rotation=20 if long else 0,
        ha="right" if long else "center",
    )
    ax.set_xlim(-0.6, len(methods) - 0.4)
    ax.set_ylim(-1, 1)
    ax.axhline(0, color="grey", linewidth=0.5)
    from dnatool.bench.ranking import truth_label

    ax.set_title(f"ranking fidelity: {truth_label(summary['truth'])}", fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    return save_png(fig, path, dpi=100)
