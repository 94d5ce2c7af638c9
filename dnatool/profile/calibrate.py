"""From in-context measurements to additive per-op latencies, and the whole-network calibration.

Ops are not timed alone: summing isolated ops overstated a small MBConv network by ~90% on
onnxruntime CPU (per-call overhead, cold caches, no neighbours). Instead each block is measured
as many short networks (random paths of that block at its real input shape), the per-call
overhead of such a network is measured with an empty network of the same input, and per-op
latencies are the non-negative least-squares solution of `sample - overhead = sum(ops)`.
What remains non-additive (fusion across blocks, memory traffic of the whole net) is removed by a
line `measured = a * sum + b` fitted on sampled whole networks and checked on held-out ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def solve_ops(
    rows: Sequence[Sequence[str]], targets: Sequence[float]
) -> dict[str, dict[str, float]]:
    """Per-key latency (NNLS) with its standard error and the number of rows that contain it."""
    from scipy.optimize import nnls

    keys = sorted({key for row in rows for key in row})
    index = {key: i for i, key in enumerate(keys)}
    x = np.zeros((len(rows), len(keys)))
    for r, row in enumerate(rows):
        for key in row:
            x[r, index[key]] += 1.0
    y = np.asarray(targets, dtype=float)
    coef, _ = nnls(x, y)
    stderr = _stderr(x, y, coef)
    counts = (x > 0).sum(axis=0)
    return {
        key: {"mean": float(coef[i]), "std": float(stderr[i]), "n": int(counts[i])}
        for key, i in index.items()
    }


def _stderr(x: np.ndarray, y: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Least-squares standard errors (NaN-free: zeros when the system has no spare rows)."""
    dof = x.shape[0] - x.shape[1]
    if dof <= 0:
        return np.zeros(x.shape[1])
    sigma2 = float(((y - x @ coef) ** 2).sum()) / dof
    return np.sqrt(np.clip(np.diag(np.linalg.pinv(x.T @ x)) * sigma2, 0.0, None))


def fit_line(raw: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """Robust `measured = a * raw + b` (Theil-Sen): a network hit by a load burst cannot tilt it."""
    from scipy.stats import theilslopes

    raw_a, meas_a = np.asarray(raw, dtype=float), np.asarray(measured, dtype=float)
    if len(raw_a) < 3 or np.ptp(raw_a) == 0:
        return float(np.median(meas_a / raw_a)), 0.0
    slope = float(theilslopes(meas_a, raw_a)[0])
    return slope, float(np.median(meas_a - slope * raw_a))


def accuracy(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Share within +-5% / +-10%, MAPE (fraction) and Spearman's rho of predicted vs measured."""
    from scipy.stats import spearmanr

    pred, meas = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    err = np.abs(pred - meas) / meas
    rho = (
        float(spearmanr(pred, meas).statistic)
        if len(pred) > 2 and np.ptp(meas) > 0
        else float("nan")
    )
    return {
        "within_5pct": float((err <= 0.05).mean()),
        "within_10pct": float((err <= 0.10).mean()),
        "mape": float(err.mean()),
        "spearman": rho,
    }


def calibrate(
    raw: Sequence[float], measured: Sequence[float], seed: int = 0, holdout: float = 1 / 3
) -> dict[str, Any]:
    """Fit on part of the networks, report accuracy on the held-out rest, then refit on all."""
    raw_a, meas_a = np.asarray(raw, dtype=float), np.asarray(measured, dtype=float)
    order = np.random.default_rng(seed).permutation(len(raw_a))
    n_hold = int(round(len(raw_a) * holdout)) if len(raw_a) >= 3 else 0
    hold, fit = order[:n_hold], order[n_hold:]
    a, b = fit_line(raw_a[fit], meas_a[fit])
    result: dict[str, Any] = {
        "method": "measured = a * sum(entries) + b, Theil-Sen on whole networks",
        "networks": len(raw_a),
        "holdout_networks": int(n_hold),
    }
    if n_hold:
        result["holdout"] = accuracy(a * raw_a[hold] + b, meas_a[hold])
    a, b = fit_line(raw_a, meas_a)
    result.update(
        a=a,
        b=b,
        fit=accuracy(a * raw_a + b, meas_a),
        uncalibrated_mape=float((np.abs(raw_a - meas_a) / meas_a).mean()),
    )
    return result
