"""How much of a truth's seed noise is its validation set's sampling, and how it is spread.

Two runs of one network disagree on D of the N validation images. Were those disagreements coin
flips (neither run better on the images' distribution), the top-1 gap between the runs would
still have variance D / N^2: the part of the seed noise a larger validation set would remove.
Pooled over a truth's networks, the rest is training noise that only the recipe can lower. The
per-network gaps also show whether the noise is even (every network a little) or carried by a
few networks (`tail`: the benchmark's own `scatter_tail` of the recomputed top-1s).

Reads the truth's runs (`TRUTH/runs/aIII-sS/model.pt`, as `dnatool bench ranking` leaves them)
and its data (`OUT/data`, next to `OUT/truth`, unless `--data`), checks every recomputed top-1
against the truth's `results/aIII-sS.json`, and prints JSON:

    python benchmarks/val_sampling.py OUT/truth
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch

from dnatool.bench.stats import scatter_tail
from dnatool.cli.main import run_script
from dnatool.errors import BadInput

NAME = re.compile(r"a(\d{3})-s(\d+)")


def correctness(runs: Path, data: str, batch_size: int = 500) -> dict[tuple[int, int], np.ndarray]:
    """(arch, seed) -> whether each validation image is classified right, in the val order."""
    from torch.utils.data import DataLoader

    from dnatool.data.datasets import load_splits
    from dnatool.nn.model_run import is_model_run, load_model

    found: dict[tuple[int, int], np.ndarray] = {}
    val_sets: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for run in sorted(runs.iterdir()):
        match = NAME.fullmatch(run.name)
        if not match or not is_model_run(run):
            continue
        loaded = load_model(run)
        resolution = loaded.arch.resolution
        if resolution not in val_sets:
            val = load_splits(data, resolution, augment=False).val
            images, labels = zip(*DataLoader(val, batch_size=batch_size), strict=True)
            val_sets[resolution] = torch.cat(images), torch.cat(labels)
        images, labels = val_sets[resolution]
        model = loaded.model.eval()
        with torch.inference_mode():
            predicted = torch.cat([model(x).argmax(1) for x in images.split(batch_size)])
        found[int(match[1]), int(match[2])] = (predicted == labels).numpy()
    return found


def analyse(correct: dict[tuple[int, int], np.ndarray]) -> dict:
    """Per-network seed gaps against their sampling error, pooled into the two shares."""
    archs = sorted(a for a, s in correct if s == 0 and (a, 1) in correct)
    if len(archs) < 3:
        raise BadInput("need seeds 0 and 1 of at least 3 architectures")
    images = {len(correct[a, s]) for a in archs for s in (0, 1)}
    if len(images) != 1:
        raise BadInput(f"the runs were validated on different image counts: {sorted(images)}")
    n = images.pop()
    gap = np.array([100 * (correct[a, 0].mean() - correct[a, 1].mean()) for a in archs])
    disagree = np.array([int((correct[a, 0] != correct[a, 1]).sum()) for a in archs])
    sampling_var = 1e4 * disagree / n**2  # variance of the gap (points^2) under coin flips
    run_var = float(np.mean(gap**2) / 2)
    sampled = float(np.mean(sampling_var) / 2)
    top1 = np.array([[100 * correct[a, s].mean() for s in (0, 1)] for a in archs])
    tail = scatter_tail(top1)
    return {
        "archs": len(archs),
        "val_images": n,
        "run_sigma": float(np.sqrt(run_var)),
        "sampling_sigma": float(np.sqrt(sampled)),
        "sampling_share_of_variance": sampled / run_var if run_var else None,
        "training_sigma": float(np.sqrt(max(0.0, run_var - sampled))),
        "median_abs_gap": float(np.median(np.abs(gap))),
        "median_gap_sampling_se": float(np.median(np.sqrt(sampling_var))),
        "gaps_beyond_2_sampling_se": int(np.sum(np.abs(gap) > 2 * np.sqrt(sampling_var))),
        "tail": {
            **tail,
            "most_scattered_archs": [f"a{archs[r]:03d}" for r in tail["most_scattered"]],
        },
        "by_arch": {
            f"a{a:03d}": {
                "gap": round(float(g), 2),
                "disagree_pct": round(100 * float(d) / n, 2),
                "sampling_se": round(float(np.sqrt(v)), 2),
            }
            for a, g, d, v in zip(archs, gap, disagree, sampling_var, strict=True)
        },
    }


def plot(found: dict, path: Path) -> None:
    """Each network's seed gap against the band its validation sampling alone would give."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dnatool.utils.io import atomic_write

    names = list(found["by_arch"])
    gaps = [abs(found["by_arch"][a]["gap"]) for a in names]
    bands = [2 * found["by_arch"][a]["sampling_se"] for a in names]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(names)), 3.6))
    ax.bar(names, gaps, color="tab:blue", label="|top-1 gap| between seeds 0 and 1")
    ax.plot(names, bands, "k_", markersize=14, label="2 x its validation-sampling error")
    ax.set_ylabel("points")
    ax.set_title(
        f"run noise {found['run_sigma']:.2f} points, validation sampling "
        f"{found['sampling_sigma']:.2f} ({100 * found['sampling_share_of_variance']:.0f}% of the "
        f"variance); largest gap {100 * found['tail']['by_k'][0]['share']:.0f}% of it",
        fontsize=9,
    )
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=120))
    plt.close(fig)


def check_recorded(truth: Path, correct: dict[tuple[int, int], np.ndarray]) -> None:
    """Each run's recomputed top-1 must be the one its truth recorded: the same data and weights."""
    for (arch, seed), right in correct.items():
        result = truth / "results" / f"a{arch:03d}-s{seed}.json"
        if not result.is_file():
            continue
        recorded = json.loads(result.read_text())["top1"]
        if abs(100 * right.mean() - recorded) > 0.011:
            raise BadInput(
                f"a{arch:03d}-s{seed}: top-1 {100 * right.mean():.2f} here, {recorded} in "
                f"{result}: not the data it was validated on (pass --data)"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("truth", type=Path, help="a truth folder (plan.json, runs/, results/)")
    parser.add_argument("--data", help="the truth's data (default: data/ next to the truth)")
    parser.add_argument("--plot", type=Path, help="also draw the gaps against their bands (PNG)")
    args = parser.parse_args(argv)
    runs = args.truth / "runs"
    if not runs.is_dir():
        raise BadInput(f"{args.truth} has no runs/ folder (a truth of `dnatool bench ranking`)")
    correct = correctness(runs, args.data or str(args.truth.parent / "data"))
    check_recorded(args.truth, correct)
    found = analyse(correct)
    if args.plot:
        plot(found, args.plot)
    print(json.dumps(found, indent=1))
    return 0


if __name__ == "__main__":
    run_script(main)
