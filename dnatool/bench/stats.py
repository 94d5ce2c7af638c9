"""The ranking benchmark's statistics: correlations with bootstrap intervals and the noise ceiling.

Pure numpy / scipy.stats. Intervals are percentile bootstraps over architectures (resampled with
replacement from a seeded generator): the papers' 23-architecture figures carry no interval, and
with 10-30 architectures a tau of 0.6 is compatible with a wide range. Resamples in which one side
is constant (no ranking to correlate) are dropped and counted.

The noise ceiling says how well one training of an architecture predicts another training of the
same architecture with another seed: the mean Kendall tau between seeds. Methods are scored against
the mean of S seeds, which is steadier than one seed: `perfect_rating` says what a rating that knew
every network's true accuracy would score against it, the most any method can reach on a truth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Any

import numpy as np

STATISTICS = ("kendall_tau", "spearman", "pearson")


def finite_or_none(value: Any) -> Any:
    """`value` with every NaN / infinity (an undefined statistic) replaced by None, recursively,
    so the JSON files stay strict JSON."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def _statistic(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
    from scipy import stats

    functions = {
        "kendall_tau": lambda x, y: stats.kendalltau(x, y).statistic,
        "spearman": lambda x, y: stats.spearmanr(x, y).statistic,
        "pearson": lambda x, y: stats.pearsonr(x, y).statistic,
    }
    return functions[name]


def _correlate(name: str, x: np.ndarray, y: np.ndarray) -> float:
    """The statistic, or NaN when either side is constant (it is undefined there)."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(_statistic(name)(x, y))


def bootstrap_correlations(
    predicted: Sequence[float],
    actual: Sequence[float],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Kendall tau, Spearman rho and Pearson r between `predicted` (higher = better) and `actual`,
    each with a percentile bootstrap interval: {"n", name: {"value", "low", "high"}, ...}."""
    x = np.asarray(predicted, dtype=np.float64)
    y = np.asarray(actual, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 3:
        raise ValueError("need two 1-d sequences of the same length (>= 3)")
    if not 0 < confidence < 1 or resamples < 1:
        raise ValueError("confidence must be in (0, 1) and resamples >= 1")
    index = _resampled_rows(x.size, resamples, seed, 2718)
    result: dict[str, Any] = {"n": int(x.size), "confidence": confidence, "resamples": resamples}
    for name in STATISTICS:
        draws = np.array([_correlate(name, x[i], y[i]) for i in index])
        low, high, dropped = _interval(draws, confidence)
        result[name] = {
            "value": _correlate(name, x, y),
            "low": low,
            "high": high,
            "dropped": dropped,
        }
    return result


def _resampled_rows(n: int, resamples: int, seed: int, stream: int) -> np.ndarray:
    """Bootstrap resamples of n architectures (resamples x n indices), seeded per statistic
    family; equal (seed, stream) give equal resamples, which pairs two methods' draws."""
    return np.random.default_rng([seed, stream]).integers(0, n, size=(resamples, n))


def method_correlations(
    scores: Sequence[float],
    accuracies: Sequence[float],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Ratings are losses (lower is better): correlate -score with the trained accuracy."""
    return bootstrap_correlations(
        -np.asarray(scores, dtype=np.float64), accuracies, resamples, confidence, seed
    )


def _interval(draws: np.ndarray, confidence: float) -> tuple[float, float, int]:
    """Percentile interval of the finite draws, and how many were dropped (undefined)."""
    kept = draws[np.isfinite(draws)]
    if not kept.size:
        return float("nan"), float("nan"), int(draws.size)
    low, high = np.quantile(kept, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high), int(draws.size - kept.size)


def _mean_correlation(
    score_sets: np.ndarray, accuracies: np.ndarray, rows: np.ndarray, name: str
) -> float:
    """Mean over runs of the statistic between -scores (losses: lower is better) and accuracy
    on the architectures `rows`; NaN when it is undefined for every run."""
    values = [_correlate(name, -scores[rows], accuracies[rows]) for scores in score_sets]
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _score_sets(sets: Sequence[Sequence[float]], n: int) -> np.ndarray:
    array = np.asarray(sets, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] != n:
        raise ValueError(f"need one or more score lists of {n} architectures each")
    return array


def seed_mean_correlation(
    score_sets: Sequence[Sequence[float]],
    accuracies: Sequence[float],
    statistic: str = "kendall_tau",
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """A method trained with several supernet seeds: the mean over its runs of the statistic
    (scores are losses), each run's value, and a bootstrap interval of the mean over
    architectures. The seeds' spread is the method's own noise, which one run's figure hides."""
    acc = np.asarray(accuracies, dtype=np.float64)
    sets = _score_sets(score_sets, acc.size)
    index = _resampled_rows(acc.size, resamples, seed, 2718)
    draws = np.array([_mean_correlation(sets, acc, rows, statistic) for rows in index])
    low, high, dropped = _interval(draws, confidence)
    values = [_correlate(statistic, -scores, acc) for scores in sets]
    return {
        "statistic": statistic,
        "runs": int(sets.shape[0]),
        "value": _mean_correlation(sets, acc, np.arange(acc.size), statistic),
        "low": low,
        "high": high,
        "dropped": dropped,
        "values": values,
        "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
    }


def size_matched_agreement(
    score_sets: Sequence[Sequence[float]],
    accuracies: Sequence[float],
    sizes: Sequence[float],
    ratio: float = 1.25,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """How often a rating orders two networks of about the same size (within `ratio` of each
    other's MACs) as training does: the choice a search under a budget makes, which the size
    alone cannot. Share of concordant pairs (score ties count half, accuracy ties are left out),
    the mean over runs, with a bootstrap interval over architectures (a resample's pairs are
    those of distinct networks it drew)."""
    acc = np.asarray(accuracies, dtype=np.float64)
    sets = _score_sets(score_sets, acc.size)
    size = np.asarray(sizes, dtype=np.float64)
    if size.shape != acc.shape or not np.all(np.isfinite(size) & (size > 0)) or ratio <= 1:
        raise ValueError("need one positive size per architecture and a ratio above 1")
    size = np.log(size)
    a_sign = np.sign(acc[:, None] - acc[None, :])
    # both symmetric (n x n): a pair is judged the same whichever way a resample draws it
    pair = (np.abs(size[:, None] - size[None, :]) < np.log(ratio)) & (a_sign != 0)
    agree = np.array([np.sign(s[None, :] - s[:, None]) * a_sign for s in sets])  # +1 concordant
    i, j = np.triu_indices(acc.size, 1)

    def share(rows: np.ndarray) -> float:
        a, b = rows[i], rows[j]
        keep = pair[a, b]  # a drawn twice is no pair: its accuracy sign is 0
        if not keep.any():
            return float("nan")
        return float(np.mean((agree[:, a[keep], b[keep]] + 1) / 2))

    index = _resampled_rows(acc.size, resamples, seed, 1414)
    draws = np.array([share(rows) for rows in index])
    low, high, dropped = _interval(draws, confidence)
    return {
        "ratio": ratio,
        "pairs": int(pair[i, j].sum()),
        "value": share(np.arange(acc.size)),
        "low": low,
        "high": high,
        "dropped": dropped,
    }


def paired_difference(
    first: Sequence[Sequence[float]],
    second: Sequence[Sequence[float]],
    accuracies: Sequence[float],
    statistic: str = "kendall_tau",
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """How much better `first` ranks than `second` (each one or more runs' scores, losses): the
    difference of their mean statistics, with a paired bootstrap (both scored on the same resampled
    architectures, so the architectures' shared difficulty cancels; two separate intervals
    overlap far more than the difference's) and the share of resamples in which `first` is ahead."""
    acc = np.asarray(accuracies, dtype=np.float64)
    a, b = _score_sets(first, acc.size), _score_sets(second, acc.size)
    index = _resampled_rows(acc.size, resamples, seed, 1618)
    draws = np.array(
        [
            _mean_correlation(a, acc, rows, statistic) - _mean_correlation(b, acc, rows, statistic)
            for rows in index
        ]
    )
    low, high, dropped = _interval(draws, confidence)
    everything = np.arange(acc.size)
    finite = draws[np.isfinite(draws)]
    return {
        "statistic": statistic,
        "value": _mean_correlation(a, acc, everything, statistic)
        - _mean_correlation(b, acc, everything, statistic),
        "low": low,
        "high": high,
        "dropped": dropped,
        "share_ahead": float(np.mean(finite > 0)) if finite.size else float("nan"),
    }


def scatter_tail(
    top1: np.ndarray | Sequence[Sequence[float]],
    largest: int = 4,
    reps: int = 20000,
    seed: int = 0,
) -> dict[str, Any]:
    """Is the seed noise one sigma for every network, or carried by a few?

    The share of the summed within-architecture squared deviations that the k most scattered
    architectures carry (k = 1..`largest`), against the share under Gaussian noise of one sigma
    (chi-square draws with seeds - 1 degrees of freedom, `reps` simulated truths of this size):
    its mean, the chance of a share at least as large (`gaussian_p`), and the per-run noise of
    the other architectures, measured and as that Gaussian noise would leave it. A small
    `gaussian_p` says the ceiling is held by those architectures, which a third seed or a recipe
    that trains them reliably would address, not by noise spread over all of them.
    """
    acc = np.asarray(top1, dtype=np.float64)
    n, seeds = acc.shape
    scatter = ((acc - acc.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    order = np.argsort(-scatter, kind="stable")
    ranked = scatter[order]
    draws = np.random.default_rng([seed, 2718]).chisquare(seeds - 1, (reps, n))
    draws = -np.sort(-draws, axis=1)
    sigma = np.sqrt(ranked.sum() / (n * (seeds - 1)))
    nan = float("nan")  # no scatter at all (every seed equal): no share to judge
    by_k = []
    for k in range(1, min(largest, n - 1) + 1):
        share = ranked[:k].sum() / ranked.sum() if ranked.sum() > 0 else nan
        simulated = draws[:, :k].sum(axis=1) / draws.sum(axis=1)
        by_k.append(
            {
                "k": k,
                "share": float(share),
                "gaussian_share": float(simulated.mean()),
                "gaussian_p": float(np.mean(simulated >= share)) if np.isfinite(share) else nan,
                "sigma_without": float(np.sqrt(ranked[k:].sum() / ((n - k) * (seeds - 1)))),
                "gaussian_sigma_without": float(
                    sigma * np.mean(np.sqrt(draws[:, k:].mean(axis=1) / draws.mean(axis=1)))
                ),
            }
        )
    return {"sigma": float(sigma), "most_scattered": order[: len(by_k)].tolist(), "by_k": by_k}


def noise_ceiling(
    top1: np.ndarray | Sequence[Sequence[float]],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Reliability of a truth of `top1` (archs x seeds, percent).

    `kendall_tau`: mean Kendall tau between the accuracies of every pair of seeds, with a bootstrap
    interval over architectures; `mean_seed_difference`: mean |top1_a - top1_b| over architectures
    and seed pairs; `spread`: range of the per-architecture means (`spread_std`: their standard
    deviation); `spread_ratio` = spread / mean_seed_difference (and `spread_std_ratio`);
    `tail`: whether a few architectures carry the seed noise (`scatter_tail`).
    """
    acc = np.asarray(top1, dtype=np.float64)
    if acc.ndim != 2 or acc.shape[0] < 3 or acc.shape[1] < 2:
        raise ValueError("need an (archs >= 3) x (seeds >= 2) array of accuracies")
    pairs = list(combinations(range(acc.shape[1]), 2))

    def mean_tau(rows: np.ndarray) -> float:
        values = [_correlate("kendall_tau", acc[rows, a], acc[rows, b]) for a, b in pairs]
        finite = [v for v in values if np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    everything = np.arange(acc.shape[0])
    rng = np.random.default_rng([seed, 3141])
    draws = np.array(
        [mean_tau(rng.integers(0, acc.shape[0], acc.shape[0])) for _ in range(resamples)]
    )
    kept = draws[np.isfinite(draws)]
    low, high = (
        np.quantile(kept, [(1 - confidence) / 2, (1 + confidence) / 2])
        if kept.size
        else (
            np.nan,
            np.nan,
        )
    )
    differences = np.array([np.abs(acc[:, a] - acc[:, b]) for a, b in pairs])
    means = acc.mean(axis=1)
    mean_difference = float(differences.mean())
    spread = float(np.ptp(means))
    spread_std = float(means.std(ddof=1))
    pearson = float(np.mean([_correlate("pearson", acc[:, a], acc[:, b]) for a, b in pairs]))
    n = acc.shape[1]
    held_out = (
        float(
            np.mean(
                [
                    _correlate("kendall_tau", acc[:, s], np.delete(acc, s, axis=1).mean(axis=1))
                    for s in range(n)
                ]
            )
        )
        if n >= 3
        else None
    )
    return {
        "archs": int(acc.shape[0]),
        "seeds": int(acc.shape[1]),
        "kendall_tau": {"value": mean_tau(everything), "low": float(low), "high": float(high)},
        "pairwise_kendall_tau": [
            {"seeds": [a, b], "value": _correlate("kendall_tau", acc[:, a], acc[:, b])}
            for a, b in pairs
        ],
        "spearman": float(
            np.mean([_correlate("spearman", acc[:, a], acc[:, b]) for a, b in pairs])
        ),
        "pearson": pearson,
        "seed_mean_reliability": n * pearson / (1 + (n - 1) * pearson),
        "held_out_seed_tau": held_out,
        "mean_seed_difference": mean_difference,
        "max_seed_difference": float(differences.max()),
        "spread": spread,
        "spread_std": spread_std,
        "spread_ratio": spread / mean_difference if mean_difference > 0 else float("inf"),
        "spread_std_ratio": spread_std / mean_difference if mean_difference > 0 else float("inf"),
        "tail": scatter_tail(acc, seed=seed),
    }


def true_accuracies(
    top1: np.ndarray | Sequence[Sequence[float]], sigma: float | None = None
) -> tuple[float, np.ndarray]:
    """(per-run noise sigma, the architectures' true accuracies) of an archs x seeds array.

    sigma is the pooled within-architecture standard deviation (or a reference truth's, given;
    then one seed is enough); the true accuracies are the seed means shrunk towards the grand mean
    by the part of their variance that noise explains (a mean of S runs carries sigma^2 / S).
    """
    acc = np.asarray(top1, dtype=np.float64)
    if sigma is None:
        sigma = float(np.sqrt(acc.var(axis=1, ddof=1).mean()))
    means = acc.mean(axis=1)
    observed = means.var(ddof=1)
    true = max(observed - sigma**2 / acc.shape[1], 0.0)
    shrink = np.sqrt(true / observed) if observed > 0 else 0.0
    return sigma, means.mean() + (means - means.mean()) * shrink


def perfect_rating(
    top1: np.ndarray | Sequence[Sequence[float]],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any] | None:
    """The Kendall tau a perfect rating would score against this truth's seed means.

    A rating that knew every network's true accuracy (`true_accuracies`) still meets the noise
    of the S runs averaged into each mean; that tau, not 1, is the most a method can reach, and
    the room between a baseline and it bounds any lead over that baseline. Simulated `resamples`
    times with Gaussian run noise, under two models that bracket the truth: `pooled` (one sigma for
    every network: spreads the noise of a few scattered networks over all, too low a ceiling when a
    few carry it) and `per_network` (each network its own seeds' standard deviation: too high a
    ceiling, as a two-seed spread often lands near zero). Each model's `seed_pair_tau` (the ceiling
    it predicts) is its check against the measured one. None with one seed (no noise to measure)
    or where the noise explains all of the spread (no true order left to rate).
    """
    acc = np.asarray(top1, dtype=np.float64)
    n, seeds = acc.shape
    if seeds < 2 or n < 3:
        return None
    sigma, true = true_accuracies(acc)
    if np.ptp(true) == 0:  # the noise explains all the spread: no true order to rate
        return None
    noise = {"pooled": np.full(n, sigma), "per_network": acc.std(axis=1, ddof=1)}
    rng = np.random.default_rng([seed, 1618])
    models = {}
    for name, scale in noise.items():
        runs = true + rng.normal(0.0, 1.0, (resamples, seeds, n)) * scale
        perfect = _kendall_rows(np.broadcast_to(true, (resamples, n)), runs.mean(axis=1))
        pairs = _kendall_rows(runs[:, 0], runs[:, 1])
        low, high, _ = _interval(perfect, confidence)
        models[name] = {
            "value": float(np.nanmean(perfect)),
            "low": low,
            "high": high,
            "seed_pair_tau": float(np.nanmean(pairs)),
        }
    return {"sigma": sigma, "seeds": seeds, **models}


def _kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall tau-b between the rows of x and y (draws x n), vectorised over the draws (the
    simulations' thousands of small rankings); NaN where a row is constant."""
    i, j = np.triu_indices(x.shape[1], 1)
    sx, sy = np.sign(x[:, j] - x[:, i]), np.sign(y[:, j] - y[:, i])
    norm = np.sqrt((sx**2).sum(axis=1) * (sy**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, (sx * sy).sum(axis=1) / norm, np.nan)
