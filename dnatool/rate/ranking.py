"""Rating quality: how well supernet scores rank architectures by their standalone accuracy.

The DNA papers report Kendall tau (0.62-0.64 for DNA on ImageNet, -0.18 for SPOS), Spearman and
Pearson between a NAS method's ratings and the accuracies of the same architectures trained from
scratch. Scores are losses (lower is better), so they are negated before correlating.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dnatool.rate.score_lists import ScoreList


def rank_correlations(scores: Sequence[float], accuracies: Sequence[float]) -> dict[str, float]:
    """Kendall tau, Spearman rho and Pearson r between -scores and accuracies (scipy.stats)."""
    from scipy import stats

    predicted = -np.asarray(scores, dtype=np.float64)
    actual = np.asarray(accuracies, dtype=np.float64)
    if predicted.shape != actual.shape or predicted.size < 3:
        raise ValueError("need the same number (>= 3) of scores and accuracies")
    return {
        "kendall_tau": float(stats.kendalltau(predicted, actual).statistic),
        "spearman": float(stats.spearmanr(predicted, actual).statistic),
        "pearson": float(stats.pearsonr(predicted, actual).statistic),
        "n": int(predicted.size),
    }


def arch_score(score_lists: Sequence[ScoreList], choices: Sequence[tuple], weights=None) -> float:
    """Sum over blocks of lambda_k * the rated score of the chosen (cell, path)."""
    total = 0.0
    for k, choice in enumerate(choices):
        try:
            score = score_lists[k].score_of(choice)
        except KeyError:
            raise ValueError(f"block {k}: choice {choice} is not in the score list") from None
        total += (1.0 if weights is None else weights[k]) * score
    return total
