"""Two truths of the same networks (e.g. one recipe at 24 and at 48 epochs): which is more reliable?

A longer recipe is only worth its CPU if it shrinks the seed gaps more than the spread between
architectures, so the ranking a method is judged against holds still. On the architectures both
truths trained (matched by their choices; a truth made with `sample: truth` keeps its source's
order), this reports each truth's noise ceiling and spread, the per-architecture seed gaps side by
side with a Wilcoxon signed-rank test of their difference, and how far the second truth's ranking
moved from the first's (Kendall tau of their seed means):

    python benchmarks/truth_compare.py docs/figures/ranking-truth-narrow24-2026-12-05/truth.json \\
        OUT/truth/truth.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, wilcoxon

from dnatool.bench.stats import noise_ceiling
from dnatool.bench.truth import load_truth, truth_choices
from dnatool.cli.main import run_script
from dnatool.errors import BadInput


def _summary(top1: np.ndarray, recipe: dict) -> dict:
    ceiling = noise_ceiling(top1)
    return {
        "epochs": recipe.get("epochs"),
        "seed_tau": ceiling["kendall_tau"],
        "mean_seed_difference": ceiling["mean_seed_difference"],
        "spread": ceiling["spread"],
        "spread_ratio": ceiling["spread_ratio"],
        "mean_top1": float(top1.mean()),
    }


def compare(first: dict, second: dict) -> dict:
    """Both truths restricted to their common architectures, in the first truth's order; the
    first two seeds of each (their seed gap is |seed 0 - seed 1|)."""
    theirs = dict(zip(map(tuple, truth_choices(second)), second["archs"], strict=True))
    common = [
        (a, theirs[key])
        for key, a in zip(map(tuple, truth_choices(first)), first["archs"], strict=True)
        if key in theirs
    ]
    if min(first["seeds"], second["seeds"]) < 2:
        raise BadInput("both truths need two seeds: their seed gaps are compared")
    if len(common) < 3:
        raise BadInput(f"the truths share {len(common)} architectures; need at least 3")
    a = np.array([x["top1"][:2] for x, _ in common], dtype=np.float64)
    b = np.array([y["top1"][:2] for _, y in common], dtype=np.float64)
    gap_a, gap_b = np.abs(a[:, 0] - a[:, 1]), np.abs(b[:, 0] - b[:, 1])
    moved = kendalltau(a.mean(axis=1), b.mean(axis=1))[0]
    return {
        "archs": len(common),
        "first": _summary(a, first.get("recipe") or {}),
        "second": _summary(b, second.get("recipe") or {}),
        "seed_gap_by_arch": {
            f"a{x['index']:03d}": [round(float(g), 2), round(float(h), 2)]
            for (x, _), g, h in zip(common, gap_a, gap_b, strict=True)
        },
        "seed_gap_smaller_in_second": int(np.sum(gap_b < gap_a)),
        "seed_gap_wilcoxon_p": float(wilcoxon(gap_a, gap_b).pvalue)
        if np.any(gap_a != gap_b)
        else 1.0,
        "kendall_tau_between_means": float(moved),
        "mean_top1_gain": float((b.mean(axis=1) - a.mean(axis=1)).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path, help="truth.json (the reference)")
    parser.add_argument("second", type=Path, help="truth.json of the same networks")
    args = parser.parse_args(argv)
    print(json.dumps(compare(load_truth(args.first), load_truth(args.second)), indent=1))
    return 0


if __name__ == "__main__":
    run_script(main)
