"""What noise ceiling can a truth reach? A model of its seed noise and spread, and its projections.

A truth's ceiling (mean seed-vs-seed Kendall tau) depends on three things: the per-run noise
(how far one seed's top-1 lands from the architecture's mean), how far apart the architectures'
true accuracies are, and how they are spaced. Each new truth costs CPU-hours, so before training
one this asks the kept truths what a design would reach. From a truth it estimates:

- `sigma`: the per-run noise, pooled within-architecture standard deviation over the seeds;
- the architectures' true accuracies: their seed means shrunk towards the grand mean by the part
  of their variance the noise explains (a seed mean of S runs carries sigma^2 / S of noise);

and projects the expected seed-pair tau, Monte Carlo with Gaussian noise of `sigma` per run, for:

- `same_networks`: these architectures again, the mean and the 95% range of the simulated
  ceilings (the model's check: the measured ceiling should fall in that range);
- `random_N`: N architectures drawn from their accuracy distribution (a smoothed bootstrap of
  the true accuracies: what drawing without looking at accuracy gives);
- `even_N`: N architectures evenly spaced over the same true-accuracy range (the best any sampling
  of this range can do: what spreading a truth in accuracy, e.g. from pilot runs, could reach);
- `pilot_N`: N of a pool of `--pool` networks drawn from that distribution, picked evenly
  spaced in a pilot's top-1 (`bench ranking -o sample=accuracy`), a pilot whose top-1 correlates
  `--pilot-r` with one full run's (8 of the narrow truth's 24 epochs: r 0.88);
- `sigma_for_target`: the per-run noise at which these networks would reach `--target`.

    python benchmarks/ceiling_model.py docs/figures/ranking-truth-narrow24-2026-12-05/truth.json

A truth under way (its folder: the results so far) or of one seed has no noise of its own to
measure: `--sigma-from REF` takes a reference truth's (same recipe and task), and the projections
become a forecast of the ceiling the truth is heading for, from its first seed's accuracies:

    python benchmarks/ceiling_model.py OUT/truth --sigma-from docs/figures/ranking-truth-narrow24-2026-12-05/truth.json

or, once some of its architectures have their second seed, its own noise so far (the
architectures with two seeds give sigma, every first seed the spread):

    python benchmarks/ceiling_model.py OUT/truth --sigma-from OUT/truth

The model is homoscedastic Gaussian noise on independent runs; `same_networks` against the
measured ceiling says how far to trust it for a given truth, and `tail` (the benchmark's own
`scatter_tail`, part of every noise ceiling) checks the one sigma: how much of the seed scatter
the 1-4 most scattered networks carry against what Gaussian noise gives (`gaussian_p`: the
chance of as large a share), and the noise the others have.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from dnatool.bench.stats import noise_ceiling, true_accuracies
from dnatool.bench.truth import load_truth, spread_picks, truth_status
from dnatool.cli.main import run_script
from dnatool.errors import BadInput


def tau_draws(true: np.ndarray, sigma: float, reps: int = 2000, seed: int = 0) -> np.ndarray:
    """Kendall tau between two independent noisy runs of every network in `true`, `reps` times."""
    rng = np.random.default_rng(seed)
    n = len(true)
    return np.array(
        [
            kendalltau(true + rng.normal(0, sigma, n), true + rng.normal(0, sigma, n))[0]
            for _ in range(reps)
        ]
    )


def expected_tau(true: np.ndarray, sigma: float, reps: int = 2000, seed: int = 0) -> float:
    """The ceiling a truth of the networks `true` has on average, at per-run noise `sigma`."""
    return float(tau_draws(true, sigma, reps, seed).mean())


def draw_pool(rng: np.random.Generator, true: np.ndarray, n: int) -> np.ndarray:
    """n networks' true accuracies from `true`'s distribution: a smoothed bootstrap with the same
    mean and variance (a plain bootstrap would repeat networks, whose ties no seed can order)."""
    var, mean = true.var(ddof=1), true.mean()
    width = 0.3 * np.sqrt(var)
    jitter = rng.choice(true, n) - mean + rng.normal(0, width, n)
    return mean + jitter / np.sqrt(1 + width**2 / var)


def random_design(true: np.ndarray, n: int, sigma: float, reps: int, seed: int) -> float:
    """Expected ceiling of n networks drawn from `true`'s distribution (uniform sampling)."""
    rng = np.random.default_rng([seed, 1])
    return float(
        np.mean(
            [
                expected_tau(draw_pool(rng, true, n), sigma, 20, seed + i)
                for i in range(max(reps // 20, 1))
            ]
        )
    )


def pilot_design(
    true: np.ndarray, sigma: float, n: int, pool: int, r: float, reps: int, seed: int
) -> float:
    """Expected ceiling of n networks picked evenly in pilot top-1 (the benchmark's own rule,
    `spread_picks`) from a pool of `pool` networks. The pilot is true + noise, its variance set
    so that the pilot correlates `r` with one run (true + sigma noise)."""
    rng = np.random.default_rng([seed, 2])
    var = true.var(ddof=1)
    pilot_sd = np.sqrt(max(var**2 / (r**2 * (var + sigma**2)) - var, 0.0))
    ceilings = []
    for i in range(max(reps // 20, 1)):
        candidates = draw_pool(rng, true, pool)
        pilot = candidates + rng.normal(0, pilot_sd, pool)
        order = np.argsort(pilot, kind="stable")
        picks = spread_picks(pilot[order], n, [])
        ceilings.append(expected_tau(candidates[order][picks], sigma, 20, seed + i))
    return float(np.mean(ceilings))


def sigma_for(true: np.ndarray, target: float, reps: int, seed: int) -> float:
    """The per-run noise at which `true` reaches `target` (bisection; tau falls as sigma grows)."""
    low, high = 0.0, float(np.ptp(true)) or 1.0
    for _ in range(20):
        mid = (low + high) / 2
        low, high = (mid, high) if expected_tau(true, mid, reps, seed) >= target else (low, mid)
    return (low + high) / 2


def project(
    top1: np.ndarray,
    sizes: list[int],
    target: float = 0.8,
    pool: int = 72,
    pilot_r: float = 0.88,
    reps: int = 2000,
    seed: int = 0,
    sigma: float | None = None,
) -> dict:
    """Every projection for the networks of `top1` (archs x seeds); `sigma`: a reference's noise."""
    acc = np.asarray(top1, dtype=np.float64)
    sigma, true = true_accuracies(acc, sigma)
    measured = noise_ceiling(acc, resamples=200) if acc.shape[1] >= 2 else None
    low, high = float(true.min()), float(true.max())
    same = tau_draws(true, sigma, reps, seed)
    return {
        "archs": int(acc.shape[0]),
        "seeds": int(acc.shape[1]),
        "sigma": sigma,
        "true_std": float(true.std(ddof=1)),
        "true_range": [low, high],
        "measured_ceiling": measured["kendall_tau"]["value"] if measured else None,
        "same_networks": float(same.mean()),
        "same_networks_95": [float(q) for q in np.quantile(same, [0.025, 0.975])],
        **{f"random_{n}": random_design(true, n, sigma, reps, seed) for n in sizes},
        **{f"even_{n}": expected_tau(np.linspace(low, high, n), sigma, reps, seed) for n in sizes},
        "pilot_pool": pool,
        "pilot_r": pilot_r,
        **{f"pilot_{n}": pilot_design(true, sigma, n, pool, pilot_r, reps, seed) for n in sizes},
        "target": target,
        "sigma_for_target": sigma_for(true, target, max(reps // 4, 100), seed),
        "tail": measured["tail"] if measured else None,
    }


def read_top1(path: Path) -> np.ndarray:
    """archs x seeds top-1 of a `truth.json`, or of a truth folder under way: every architecture
    with a result so far, at the seeds all of them have."""
    if not path.exists():
        raise BadInput(f"{path}: no such truth file or folder")
    if path.is_file():
        return np.array([a["top1"] for a in load_truth(path)["archs"]], dtype=np.float64)
    rows = list(truth_status(path)["top1"].values())
    if len(rows) < 3:
        raise BadInput(f"{path}: fewer than 3 architectures have a result yet")
    common = min(len(r) for r in rows)
    return np.array([r[:common] for r in rows], dtype=np.float64)


def read_pairs(path: Path) -> np.ndarray:
    """archs x 2 top-1 of the architectures that have two seeds: a truth's, or those of a truth
    under way so far (its own noise, while its first seed forecasts the spread)."""
    if path.is_dir():
        rows = [r[:2] for r in truth_status(path)["top1"].values() if len(r) >= 2]
        if len(rows) < 3:
            raise BadInput(f"{path}: fewer than 3 architectures have two seeds yet")
        return np.array(rows, dtype=np.float64)
    top1 = read_top1(path)
    if top1.shape[1] < 2:
        raise BadInput(f"{path}: one seed has no noise to give")
    return top1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("truths", type=Path, nargs="+", help="truth.json files")
    parser.add_argument("--sizes", default="12,18,24", help="numbers of networks to project")
    parser.add_argument("--target", type=float, default=0.8)
    parser.add_argument("--pool", type=int, default=72, help="pilot networks")
    parser.add_argument("--pilot-r", type=float, default=0.88, help="pilot vs run correlation")
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--sigma-from", type=Path, help="a reference truth: its per-run noise")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        raise BadInput(f"--sizes {args.sizes!r}: comma-separated numbers of networks") from None
    if min(sizes) < 3 or args.pool < max(sizes) or args.reps < 10:
        raise BadInput("--sizes of at least 3 networks, --pool at least the largest, --reps >= 10")
    if not 0 < args.pilot_r <= 1 or not 0 < args.target < 1:
        raise BadInput("--pilot-r in (0, 1] and --target in (0, 1)")
    sigma = true_accuracies(read_pairs(args.sigma_from))[0] if args.sigma_from else None
    out = {}
    for path in args.truths:
        top1 = read_top1(path)
        if top1.shape[1] < 2 and sigma is None:
            raise BadInput(f"{path}: one seed has no noise to measure; give --sigma-from")
        out[str(path)] = {
            **project(top1, sizes, args.target, args.pool, args.pilot_r, args.reps, sigma=sigma),
            **({"sigma_from": str(args.sigma_from)} if sigma is not None else {}),
        }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    run_script(main)
