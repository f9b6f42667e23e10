"""verification_metrics against brute-force threshold sweeps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dml.errors import DmlError
from dml.metrics import verification_metrics


def scored_pairs(n: int, seed: int, separation: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.3
    scores = rng.normal(size=n) + separation * same
    return np.round(scores, 2), same  # rounding makes tied scores common


def brute_force(val_s, val_y, test_s, test_y, far: float) -> tuple[float, float]:
    """Best validation accuracy over every possible cut, and TAR at FAR on the test set."""
    cuts = np.r_[np.inf, np.unique(val_s), -np.inf]
    val_accuracy = max(((val_s >= c) == val_y).mean() for c in cuts)
    tar = max(
        (test_s[test_y] >= c).mean()
        for c in np.r_[np.inf, np.unique(test_s)]
        if (test_s[~test_y] >= c).mean() <= far
    )
    return val_accuracy, tar


def test_threshold_and_tar_match_brute_force() -> None:
    val_s, val_y = scored_pairs(3000, seed=0)
    test_s, test_y = scored_pairs(15000, seed=1)
    got = verification_metrics(val_s, val_y, test_s, test_y)
    best_val, tar_3 = brute_force(val_s, val_y, test_s, test_y, 1e-3)
    _, tar_4 = brute_force(val_s, val_y, test_s, test_y, 1e-4)
    threshold = got["verification_threshold"]
    assert ((val_s >= threshold) == val_y).mean() == pytest.approx(best_val)
    assert got["verification_accuracy"] == pytest.approx(((test_s >= threshold) == test_y).mean())
    assert got["tar_at_far_1e_3"] == pytest.approx(tar_3)
    assert got["tar_at_far_1e_4"] == pytest.approx(tar_4)
    positives, negatives = test_s[test_y], test_s[~test_y]
    wins = (positives[:, None] > negatives).mean() + 0.5 * (positives[:, None] == negatives).mean()
    assert got["roc_auc"] == pytest.approx(wins)


def test_threshold_falls_between_the_classes() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    same = np.array([0, 0, 0, 1, 1])
    got = verification_metrics(scores, same, scores, same)
    assert got["verification_threshold"] == pytest.approx(0.55)
    assert got["verification_accuracy"] == 1.0
    assert got["roc_auc"] == 1.0


def test_tar_is_nan_without_enough_different_pairs(caplog) -> None:
    val_s, val_y = scored_pairs(500, seed=2)
    got = verification_metrics(val_s, val_y, val_s, val_y)
    assert math.isnan(got["tar_at_far_1e_3"]) and math.isnan(got["tar_at_far_1e_4"])
    assert "needs at least 1000 different pairs" in caplog.text


@pytest.mark.parametrize(
    ("val_same", "message"),
    [
        (np.array([0, 1, 1]), "equally long"),
        (np.array([0, 2, 1, 0]), "only 0/1"),
        (np.array([1, 1, 1, 1]), "both same and different"),
    ],
)
def test_bad_pairs_raise_one_line_dml_error(val_same: np.ndarray, message: str) -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4])
    with pytest.raises(DmlError, match=message) as caught:
        verification_metrics(scores, val_same, scores, np.array([0, 1, 0, 1]))
    assert "\n" not in str(caught.value)
