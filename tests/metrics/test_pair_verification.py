"""split_verification against scikit-learn's ROC and a brute-force loop over every pair."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from sklearn.metrics import roc_auc_score, roc_curve

from dml.errors import DmlError
from dml.metrics.pair_verification import (
    different_class_pairs,
    far_name,
    same_class_pairs,
    split_verification,
)


def grid_embeddings(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer-grid points (many tied and zero distances) and labels with singletons."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n // 4, size=n)
    labels[:3] = [1000, 1001, 1002]  # classes of one sample
    points = rng.integers(-2, 3, size=(n, 3)) + labels[:, None] % 3
    points[5] = points[6]  # a duplicate
    return points.astype(np.float32), labels


def all_pairs(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance and same-class flag of every unordered pair, by an obvious loop."""
    distances, same = [], []
    for i, j in itertools.combinations(range(len(x)), 2):
        distances.append(float(np.linalg.norm(x[i].astype(np.float64) - x[j])))
        same.append(labels[i] == labels[j])
    return np.array(distances), np.array(same)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_sklearn_and_brute_force(seed: int) -> None:
    x, labels = grid_embeddings(160, seed)
    distances, same = all_pairs(x, labels)
    got = split_verification(x, labels).metrics

    assert got["verification_same_pairs"] == same.sum()
    assert got["verification_different_pairs"] == (~same).sum()
    assert got["roc_auc"] == pytest.approx(roc_auc_score(same, -distances), abs=1e-12)

    far, tar, _ = roc_curve(same, -distances)
    eer = brentq(lambda rate: 1 - rate - np.interp(rate, far, tar), 0.0, 1.0, xtol=1e-12)
    assert got["eer"] == pytest.approx(eer, abs=1e-9)

    pos, neg = distances[same], distances[~same]
    for level in (1e-2, 1e-3):
        name = far_name(level)
        # The best TAR over every threshold a pair distance offers, with FAR <= level.
        cuts = np.r_[-1.0, np.unique(distances)]
        best = max((pos <= t).mean() for t in cuts if (neg <= t).mean() <= level)
        assert got[f"tar_at_far_{name}"] == pytest.approx(best)
        threshold = got[f"threshold_at_far_{name}"]
        if best > 0:
            assert (neg <= threshold).mean() <= level
            assert (pos <= threshold).mean() == pytest.approx(best)
        else:
            assert math.isnan(threshold)


def test_names_follow_the_far_levels() -> None:
    assert far_name(1e-2) == "1e-2" and far_name(1e-3) == "1e-3" and far_name(0.05) == "5e-2"


def test_exact_enumeration_lists_each_pair_once() -> None:
    _, labels = grid_embeddings(90, 3)
    y = torch.as_tensor(labels)
    generator = torch.Generator().manual_seed(0)
    first, second, total = same_class_pairs(y, 10**6, generator)
    expected = {(i, j) for i, j in itertools.combinations(range(90), 2) if labels[i] == labels[j]}
    got = {tuple(sorted(p)) for p in zip(first.tolist(), second.tolist(), strict=True)}
    assert got == expected and len(first) == total == len(expected)
    first, second, total = different_class_pairs(y, 10**6, generator)
    got = {tuple(sorted(p)) for p in zip(first.tolist(), second.tolist(), strict=True)}
    assert len(got) == len(first) == total == 90 * 89 // 2 - len(expected)


def test_too_many_pairs_are_sampled_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(8), 40)
    x = (rng.normal(size=(320, 6)) + 1.5 * np.eye(8, 6)[labels]).astype(np.float32)
    full = split_verification(x, labels).metrics
    with caplog.at_level("DEBUG", logger="dml.metrics.pair_verification"):
        sampled = split_verification(x, labels, max_pairs=20000).metrics
    assert sampled["verification_same_pairs"] == 6240  # 8 * 40 * 39 / 2, all of them
    assert sampled["verification_different_pairs"] == 20000
    assert "a random 20000 of the 44800 different-class pairs" in caplog.text
    assert sampled["roc_auc"] == pytest.approx(full["roc_auc"], abs=0.01)

    y = torch.as_tensor(labels)
    generator = torch.Generator().manual_seed(1)
    first, second, total = same_class_pairs(y, 1000, generator)
    assert total == 6240 and len(first) == 1000
    assert bool((y[first] == y[second]).all()) and bool((first != second).all())
    first, second, _ = different_class_pairs(y, 1000, generator)
    assert len(first) == 1000 and bool((y[first] != y[second]).all())


def test_a_split_without_same_class_pairs_gives_nan() -> None:
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    got = split_verification(x, np.arange(10))
    assert "0 same-class and 45 different-class pairs, and needs both" in got.notes[0]
    assert got.curve is None and math.isnan(got.metrics["roc_auc"])
    assert got.metrics["verification_same_pairs"] == 0


def test_tar_is_nan_without_enough_different_pairs() -> None:
    x, labels = grid_embeddings(40, 5)  # 40 items: fewer than 1000 different pairs
    result = split_verification(x, labels)
    got = result.metrics
    assert len(result.notes) == 1 and "needs at least 1000 different-class pairs" in result.notes[0]
    assert math.isnan(got["tar_at_far_1e-3"]) and math.isnan(got["threshold_at_far_1e-3"])
    assert not math.isnan(got["tar_at_far_1e-2"])


def test_tar_at_far_accepts_exactly_the_allowed_false_accepts() -> None:
    """200 different pairs at FAR 1e-2 allow exactly 2 false accepts (1.0 and 1.1): the
    threshold goes up to the last positive before the third (1.2), not only to the second."""
    from dml.metrics.pair_verification import tar_at_far

    rng = np.random.default_rng(7)
    neg = rng.permutation(np.arange(200) / 10 + 1.0)
    pos = np.r_[0.5, 1.05, 1.12, 1.15, rng.uniform(2.0, 30.0, 96)]
    same = np.r_[np.ones(100, bool), np.zeros(200, bool)]
    far, tar, thresholds = roc_curve(same, -np.r_[pos, neg], drop_intermediate=False)
    got, threshold = tar_at_far(far, tar, thresholds, 1e-2, 200)
    assert threshold == pytest.approx(1.15)
    assert got == pytest.approx(4 / 100)  # the positives at 0.5, 1.05, 1.12 and 1.15


@pytest.mark.parametrize(
    ("embeddings", "labels", "max_pairs", "message"),
    [
        (np.zeros((4, 2), np.float32), np.array([0, 1, 0]), 10, "labels has 3 entries"),
        (np.zeros((4, 2), np.float32), np.array([0.0, 1, 0, 1]), 10, "must hold integers"),
        (np.full((4, 2), np.nan, np.float32), np.array([0, 1, 0, 1]), 10, "NaN or infinite"),
        (np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1]), 0, "positive integer"),
        (np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1]), True, "positive integer"),
    ],
)
def test_bad_inputs_raise_one_line_dml_error(
    embeddings: np.ndarray, labels: np.ndarray, max_pairs: int, message: str
) -> None:
    with pytest.raises(DmlError, match=message) as caught:
        split_verification(embeddings, labels, max_pairs=max_pairs)
    assert "\n" not in str(caught.value)
