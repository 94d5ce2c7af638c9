"""Rating quality of a rated supernet run: Kendall tau between its scores and retrained accuracy.

Samples many architectures of the run's space, keeps `--archs` of them spread evenly over the
range of supernet scores, retrains each from scratch with the same recipe and seed, and reports
Kendall tau / Spearman / Pearson between -score and top-1 (what the DNA papers report), plus a
scatter PNG. On the demo (`tiny` space, digits) every network is small and the data easy, so
accuracies differ by little and training noise is of the same size: read the figure with that.

    python benchmarks/rating_quality.py runs/demo/supernet --archs 12 --epochs 3 --out runs/rating_quality
"""

from __future__ import annotations

import argparse
import io as _io
import json
from pathlib import Path

import numpy as np

from dnatool.rate.ranking import arch_score, rank_correlations
from dnatool.rate.score_lists import load_score_lists, run_space
from dnatool.retrain.recipe import load_retrain_recipe
from dnatool.retrain.train import run_retrain
from dnatool.utils import io


def spread_sample(space, lists, count: int, pool: int, seed: int) -> list[tuple[list, float]]:
    """`count` architectures with scores evenly spread over a random pool's score range."""
    rng = np.random.default_rng(seed)
    candidates = [space.sample(rng) for _ in range(pool)]
    scored = sorted(((c, arch_score(lists, c)) for c in candidates), key=lambda item: item[1])
    picks = np.linspace(0, len(scored) - 1, count).round().astype(int)
    return [scored[i] for i in sorted(set(picks.tolist()))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a rated supernet run (dnatool train + dnatool rate)")
    parser.add_argument("--archs", type=int, default=12)
    parser.add_argument("--pool", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--recipe", default="retrain-tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/rating_quality")
    args = parser.parse_args()
    space = run_space(args.run)
    lists = load_score_lists(args.run, space)
    recipe = load_retrain_recipe(args.recipe, (f"epochs={args.epochs}",))
    rows = []
    for i, (choices, score) in enumerate(
        spread_sample(space, lists, args.archs, args.pool, args.seed)
    ):
        out = Path(args.out) / f"arch_{i:02d}"
        metrics = run_retrain(
            space.to_arch(choices, name=f"arch_{i:02d}"), recipe, out, resume=True
        )
        rows.append(
            {"choices": [[c, list(p)] for c, p in choices], "score": score, "top1": metrics["top1"]}
        )
        print(f"arch {i:2d}: score {score:.4f}  top-1 {metrics['top1']:.2f}%", flush=True)
    result = {
        "run": args.run,
        "space": space.name,
        "recipe": args.recipe,
        "epochs": args.epochs,
        **rank_correlations([r["score"] for r in rows], [r["top1"] for r in rows]),
        "rows": rows,
    }
    io.write_json(Path(args.out) / "rating_quality.json", result)
    _plot(rows, result, Path(args.out) / "rating_quality.png")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))


def _plot(rows: list[dict], result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter([r["score"] for r in rows], [r["top1"] for r in rows])
    ax.set_xlabel("supernet score (sum of block relative L1, lower is better)")
    ax.set_ylabel("top-1 after retraining (%)")
    ax.set_title(f"{result['space']}: Kendall tau {result['kendall_tau']:.2f}, n={result['n']}")
    fig.tight_layout()
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    io.write_bytes(path, buffer.getvalue())


if __name__ == "__main__":
    main()
