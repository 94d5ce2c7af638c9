"""From in-context measurements to additive per-op latencies, and the whole-network calibration.

Ops are not timed alone: summing isolated ops overstated a small MBConv network by ~90% on
onnxruntime CPU (per-call overhead, cold caches, no neighbours). Instead each block is measured
as many short networks (random paths of that block at its real input shape), the per-call
overhead of such a network is measured with an empty network of the same input, and per-op
latencies are the non-negative least-squares solution of `sample - overhead = sum(ops)`.
What remains non-additive (fusion across blocks, memory traffic of the whole net) is removed by a
line `measured = a * sum + b` fitted on whole networks spread over the space's MACs range and
checked on held-out ones. Calibration is kept physical: per-op latencies are non-negative (NNLS)
and the slope positive, and a table that fails its own hold-out check says so in its header.
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


def fit_line(raw: Sequence[float], measured: Sequence[float]) -> tuple[float, float, str | None]:
    """Robust `measured = a * raw + b` (Theil-Sen: a network hit by a load burst cannot tilt it),
    constrained to what is physical: a > 0. A slope <= 0 (networks whose entries sum to more
    measured faster, the signature of noise larger than the differences) is replaced by the
    proportional fit `a = median(measured / raw)`, b = 0; the third value says so (else None)."""
    from scipy.stats import theilslopes

    raw_a, meas_a = np.asarray(raw, dtype=float), np.asarray(measured, dtype=float)
    proportional = float(np.median(meas_a / raw_a))
    if len(raw_a) < 3 or np.ptp(raw_a) == 0:
        return proportional, 0.0, "too few distinct networks for a line: proportional fit"
    slope = float(theilslopes(meas_a, raw_a)[0])
    if not slope > 0:
        return (
            proportional,
            0.0,
            f"Theil-Sen slope {slope:.3g} <= 0 is not physical: proportional fit instead",
        )
    return slope, float(np.median(meas_a - slope * raw_a)), None


def accuracy(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float | None]:
    """Share within +-5% / +-10%, MAPE (fraction), Spearman's rho and Kendall's tau of predicted
    vs measured. Rank correlations are None where undefined (fewer than 3 networks, or a constant
    on either side: a constant predictor orders nothing)."""
    from scipy.stats import kendalltau, spearmanr

    pred, meas = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    err = np.abs(pred - meas) / meas
    ranked = len(pred) > 2 and np.ptp(meas) > 0 and np.ptp(pred) > 0
    return {
        "within_5pct": float((err <= 0.05).mean()),
        "within_10pct": float((err <= 0.10).mean()),
        "mape": float(err.mean()),
        "spearman": float(spearmanr(pred, meas).statistic) if ranked else None,
        "kendall": float(kendalltau(pred, meas).statistic) if ranked else None,
    }


def constant_baseline(measured: Sequence[float]) -> dict[str, float | None]:
    """`accuracy` of the constant predictor that says the median of the measured networks for
    every one: the baseline a table must beat (on a narrow range it scores well by itself)."""
    meas = np.asarray(measured, dtype=float)
    return {
        **accuracy(np.full(len(meas), np.median(meas)), meas),
        "constant_ms": float(np.median(meas)),
    }


HOLDOUT_MAPE = 0.10  # the hold-out check: held-out MAPE at most this ...
# ... and below the constant predictor's on the same held-out networks.


def calibrate(
    raw: Sequence[float], measured: Sequence[float], seed: int = 0, holdout: float = 1 / 3
) -> dict[str, Any]:
    """Fit on part of the networks, check on the held-out rest, then refit on all.

    `check` is the table's own verdict on itself: passed when the slope is positive, the held-out
    MAPE is at most `HOLDOUT_MAPE` and below that of a constant predictor (the median of the
    held-out networks). `search` refuses a table that failed it unless forced.
    """
    raw_a, meas_a = np.asarray(raw, dtype=float), np.asarray(measured, dtype=float)
    order = np.random.default_rng(seed).permutation(len(raw_a))
    n_hold = int(round(len(raw_a) * holdout)) if len(raw_a) >= 3 else 0
    hold, fit = order[:n_hold], order[n_hold:]
    a, b, first = fit_line(raw_a[fit], meas_a[fit])
    result: dict[str, Any] = {
        "method": "measured = a * sum(entries) + b, Theil-Sen on whole networks, a > 0",
        "networks": len(raw_a),
        "holdout_networks": int(n_hold),
    }
    if n_hold:
        result["holdout"] = accuracy(a * raw_a[hold] + b, meas_a[hold])
        result["holdout_constant"] = constant_baseline(meas_a[hold])
    a, b, constrained = fit_line(raw_a, meas_a)
    result.update(
        a=a,
        b=b,
        fit=accuracy(a * raw_a + b, meas_a),
        uncalibrated_mape=float((np.abs(raw_a - meas_a) / meas_a).mean()),
    )
    if constrained or first:
        result["constrained"] = constrained or f"on the fitted part: {first}"
    result["check"] = holdout_check(result)
    return result


def holdout_check(cal: dict[str, Any]) -> dict[str, Any]:
    """{passed, reason}: the rule of `calibrate`, with the figures that decided it in words."""
    rule = (
        f"slope > 0 from the data, held-out MAPE <= {HOLDOUT_MAPE:.0%} and below a constant "
        "predictor's"
    )
    hold, const = cal.get("holdout"), cal.get("holdout_constant")
    if not hold or not const:
        return {"passed": False, "rule": rule, "reason": "no held-out networks"}
    problems = []
    if cal.get("constrained"):
        problems.append(cal["constrained"])
    if hold["mape"] > HOLDOUT_MAPE:
        problems.append(f"held-out MAPE {hold['mape']:.1%} > {HOLDOUT_MAPE:.0%}")
    if hold["mape"] >= const["mape"]:
        problems.append(
            f"held-out MAPE {hold['mape']:.1%} is no better than a constant's {const['mape']:.1%}"
        )
    reason = "; ".join(problems) or (
        f"held-out MAPE {hold['mape']:.1%} (a constant: {const['mape']:.1%}) on "
        f"{cal['holdout_networks']} networks"
    )
    return {"passed": not problems, "rule": rule, "reason": reason}
