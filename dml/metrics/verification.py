"""Pair verification metrics (face-verification style): is this pair the same identity?"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from dml.errors import DmlError
from dml.metrics import _inputs
from dml.metrics._inputs import ArrayLike

log = logging.getLogger(__name__)

FAR_LEVELS = {"tar_at_far_1e_3": 1e-3, "tar_at_far_1e_4": 1e-4}


def verification_metrics(
    val_scores: ArrayLike,
    val_same: ArrayLike,
    test_scores: ArrayLike,
    test_same: ArrayLike,
) -> dict[str, float]:
    """Accuracy, ROC AUC and TAR at fixed FAR for scored pairs.

    Scores are similarities: higher means "same". Pass negated distances otherwise.
    The accuracy threshold is chosen on the validation pairs and applied to the test
    pairs, because choosing it on the test pairs overstates accuracy. ROC AUC and
    TAR@FAR need no threshold from elsewhere and are computed on the test pairs.

    TAR at FAR f is the largest true-accept rate whose false-accept rate is at most f. It
    is NaN (with a warning) when there are fewer than 1/f different pairs, since no
    threshold can then resolve a false-accept rate that small.
    """
    val = _pairs("val", val_scores, val_same)
    test_s, test_y = _pairs("test", test_scores, test_same)
    threshold = _best_threshold(*val)
    fpr, tpr, _ = roc_curve(test_y, test_s)
    n_different = int((~test_y).sum())
    result = {
        "verification_threshold": threshold,
        "verification_accuracy": float(((test_s >= threshold) == test_y).mean()),
        "roc_auc": float(roc_auc_score(test_y, test_s)),
    }
    for name, far in FAR_LEVELS.items():
        if n_different * far < 1:
            log.warning(
                "%s is NaN: FAR %g needs at least %d different pairs, the test set has %d.",
                name,
                far,
                round(1 / far),
                n_different,
            )
            result[name] = float("nan")
        else:
            result[name] = float(tpr[fpr <= far].max())
    return result


def _best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold with the highest accuracy, midway between two distinct scores.

    Accepting everything scoring at least the i-th largest distinct score is evaluated
    for every i at once from cumulative counts, so this is one sort, not a loop."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order]
    last_of_value = np.r_[s[1:] != s[:-1], True]
    accepted_same = np.cumsum(y)[last_of_value]
    accepted_different = np.cumsum(~y)[last_of_value]
    correct = accepted_same + (len(y) - y.sum()) - accepted_different
    # Index 0 of the candidates accepts nothing.
    correct = np.r_[len(y) - y.sum(), correct]
    distinct = s[last_of_value]
    cuts = np.r_[np.inf, (distinct[:-1] + distinct[1:]) / 2, -np.inf]
    return float(cuts[int(np.argmax(correct))])


def _pairs(split: str, scores: ArrayLike, same: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s = _inputs.as_tensor(f"{split}_scores", scores)
    y = _inputs.as_tensor(f"{split}_same", same)
    if s.dim() != 1 or y.dim() != 1 or len(s) != len(y):
        raise DmlError(
            f"{split}_scores and {split}_same must be 1-D and equally long, got shapes "
            f"{tuple(s.shape)} and {tuple(y.shape)}"
        )
    s_np = s.cpu().double().numpy()
    if not np.isfinite(s_np).all():
        raise DmlError(f"{split}_scores has NaN or infinite values")
    y_np = y.cpu().numpy()
    if not np.isin(y_np, (0, 1)).all():
        raise DmlError(f"{split}_same must hold only 0/1 or booleans")
    y_np = y_np.astype(bool)
    if y_np.all() or not y_np.any():
        raise DmlError(f"{split} pairs need both same and different pairs")
    return s_np, y_np
