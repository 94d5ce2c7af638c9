"""Where a ranking truth's seed noise comes from, read from its runs' per-epoch curves.

A truth's ceiling (seed-vs-seed Kendall tau) is limited by how far two seeds of one architecture
end apart. This reads `curves.csv` of every (architecture, seed) run (the `retrain` runs under
`TRUTH/runs/aIII-sS/`, or a folder of `aIII-sS.csv` copies such as the kept
`docs/figures/ranking-truth-narrow24-2026-12-05/curves/`) and asks whether the final gap between
seeds 0 and 1 is a noisy end (then averaging the last epochs would shrink it) or a difference
carried from earlier in training (then the gap at epoch k and the train-loss gap predict it):

    python benchmarks/truth_noise.py docs/figures/ranking-truth-narrow24-2026-12-05/curves
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr

from dnatool.bench.stats import noise_ceiling
from dnatool.cli.main import run_script
from dnatool.errors import BadInput

NAME = re.compile(r"a(\d{3})-s(\d+)")


def read_curves(folder: Path) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    """(arch, seed) -> column arrays, from `aIII-sS.csv` files or `aIII-sS/curves.csv` runs."""
    found = {}
    for path in sorted([*folder.glob("a*-s*.csv"), *folder.glob("a*-s*/curves.csv")]):
        match = NAME.fullmatch(path.parent.name if path.name == "curves.csv" else path.stem)
        if not match:
            continue
        with path.open() as handle:
            rows = list(csv.DictReader(handle))
        try:
            columns = {
                key: np.array([float(r[key]) for r in rows]) for key in ("top1", "train_loss")
            }
        except (KeyError, TypeError, ValueError):
            raise BadInput(f"{path}: not a run's curves (numeric top1 and train_loss)") from None
        if len(rows) == 0:
            raise BadInput(f"{path}: no epochs recorded")
        found[int(match[1]), int(match[2])] = columns
    return found


def analyse(curves: dict[tuple[int, int], dict[str, np.ndarray]]) -> dict:
    """A run shorter than the longest is unfinished (a truth under way): its last epoch is not
    its end, so its architecture is left out, and named in `unfinished`."""
    epochs = max((len(c["top1"]) for c in curves.values()), default=0)
    unfinished = sorted(f"a{a:03d}-s{s}" for (a, s), c in curves.items() if len(c["top1"]) < epochs)
    done = {key for key, c in curves.items() if len(c["top1"]) == epochs}
    archs = sorted(a for a, s in done if s == 0 and (a, 1) in done)
    if len(archs) < 3:
        raise BadInput(
            f"need seeds 0 and 1 of at least 3 architectures, each run {epochs} epochs"
            + (f" ({len(unfinished)} runs unfinished)" if unfinished else "")
        )
    s0 = [curves[a, 0] for a in archs]
    s1 = [curves[a, 1] for a in archs]
    final = np.array([a["top1"][-1] - b["top1"][-1] for a, b in zip(s0, s1, strict=True)])

    def gap_at(epoch: int) -> np.ndarray:
        return np.array([a["top1"][epoch - 1] - b["top1"][epoch - 1] for a, b in zip(s0, s1)])

    loss_gap = np.array([a["train_loss"][-1] - b["train_loss"][-1] for a, b in zip(s0, s1)])
    averaged = {}
    for k in (1, 3, 5):
        top1 = [[a["top1"][-k:].mean(), b["top1"][-k:].mean()] for a, b in zip(s0, s1)]
        ceiling = noise_ceiling(top1, resamples=100)  # the benchmark's own seed statistics
        averaged[f"last_{k}"] = {
            "seed_tau": ceiling["kendall_tau"]["value"],
            "mean_seed_difference": ceiling["mean_seed_difference"],
        }
    checkpoints = sorted({e for e in (epochs // 6, epochs // 3, epochs // 2) if e >= 1})
    return {
        "archs": len(archs),
        "epochs": epochs,
        "unfinished": unfinished,
        "mean_seed_difference": float(np.mean(np.abs(final))),
        "final_gap_by_arch": {f"a{a:03d}": round(float(g), 2) for a, g in zip(archs, final)},
        "last_epochs_averaged": averaged,
        "pearson_final_gap_vs_gap_at_epoch": {
            str(e): float(pearsonr(gap_at(e), final)[0]) for e in checkpoints
        },
        "pearson_final_gap_vs_train_loss_gap": float(pearsonr(loss_gap, final)[0]),
        "final_train_loss": [
            float(min(c["train_loss"][-1] for c in s0 + s1)),
            float(max(c["train_loss"][-1] for c in s0 + s1)),
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="TRUTH/runs, or a folder of aIII-sS.csv")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        raise BadInput(f"{args.folder}: not a folder of runs or curves")
    curves = read_curves(args.folder)
    print(json.dumps(analyse(curves), indent=1))
    return 0


if __name__ == "__main__":
    run_script(main)
