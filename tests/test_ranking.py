from __future__ import annotations

import numpy as np
import pytest

from dnatool.rate.ranking import arch_score, rank_correlations
from dnatool.rate.score_lists import ScoreList


def test_perfect_and_reversed_rankings():
    accuracies = [70.0, 72.5, 75.0, 79.0]
    lower_is_better = [0.9, 0.7, 0.5, 0.1]
    assert rank_correlations(lower_is_better, accuracies)["kendall_tau"] == pytest.approx(1.0)
    reversed_ = rank_correlations(lower_is_better[::-1], accuracies)
    assert reversed_["kendall_tau"] == pytest.approx(-1.0) and reversed_[
        "spearman"
    ] == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        rank_correlations([1.0, 2.0], [1.0, 2.0])


def test_arch_score_sums_the_chosen_rows():
    lists = [
        ScoreList(
            cells=np.array([0, 0, 1]),
            paths=np.array([[0, -1], [1, -1], [0, 1]]),
            scores=np.array([0.5, 0.25, 0.125]),
        ),
        ScoreList(np.array([0, 0]), np.array([[0], [1]]), np.array([1.0, 2.0])),
    ]
    assert arch_score(lists, [(1, (0, 1)), (0, (1,))]) == pytest.approx(2.125)
    assert arch_score(lists, [(0, (1,)), (0, (0,))], weights=[2.0, 1.0]) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="not in the score list"):
        arch_score(lists, [(1, (1, 1)), (0, (0,))])
