"""Verification over the pairs of one split: is this pair the same identity?

Face and speaker verification accept a pair when its embedding distance is at most a
threshold. Every same-class and every different-class pair of the split is scored, up to
``max_pairs`` of each kind; beyond that a uniform random sample (with replacement, fixed
by ``seed``) stands in, and the counts used are reported with the metrics. ROC AUC, the
equal error rate, and the true-accept rate at fixed false-accept rates (with the distance
threshold that achieves each) come from scikit-learn's ROC curve of the pair distances.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import auc, roc_curve
from torch import Tensor

from dml.errors import DmlError
from dml.metrics import _inputs
from dml.metrics._inputs import ArrayLike

log = logging.getLogger(__name__)

FAR_LEVELS = (1e-2, 1e-3)
MAX_PAIRS = 1_000_000
# Pairs whose distances are computed at once (their difference vectors sit in memory).
DISTANCE_CHUNK = 65536
# Points kept of an ROC curve for plotting: enough to look smooth on a log FAR axis.
CURVE_POINTS = 2000


@dataclass(frozen=True)
class RocCurve:
    """An ROC curve (false-accept rate, true-accept rate), thinned for plotting."""

    far: np.ndarray
    tar: np.ndarray
    roc_auc: float
    eer: float
    same_pairs: int
    different_pairs: int


@dataclass(frozen=True)
class PairVerification:
    """The metrics, the ROC curve (None without both kinds of pairs), and why any metric
    is NaN, one sentence per reason, for the caller to report as often as it sees fit
    (a run evaluating every epoch says it once)."""

    metrics: dict[str, float]
    curve: RocCurve | None
    notes: list[str]


def far_name(far: float) -> str:
    """``1e-2`` for 0.01: the suffix of ``tar_at_far_1e-2`` and ``threshold_at_far_1e-2``."""
    mantissa, exponent = f"{far:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def verification_keys(far_levels: Sequence[float] = FAR_LEVELS) -> list[str]:
    keys = ["roc_auc", "eer"]
    for far in far_levels:
        keys += [f"tar_at_far_{far_name(far)}", f"threshold_at_far_{far_name(far)}"]
    return [*keys, "verification_same_pairs", "verification_different_pairs"]


def split_verification(
    embeddings: ArrayLike,
    labels: ArrayLike,
    far_levels: Sequence[float] = FAR_LEVELS,
    max_pairs: int = MAX_PAIRS,
    seed: int = 0,
) -> PairVerification:
    """Verification metrics over the same- and different-class pairs of one split.

    A pair is accepted when its Euclidean distance is at most the threshold, so
    ``threshold_at_far_<f>`` is the largest distance threshold whose false-accept rate is
    at most f, and ``tar_at_far_<f>`` the true-accept rate there. Both are NaN (with a
    note) when the split has fewer than 1/f different pairs, since no threshold can
    then resolve so small a rate. ``eer`` is where the ROC curve (linear between its
    points) crosses false-accept rate = false-reject rate. Without same-class or without
    different-class pairs every value is NaN, so that a split of singletons warns rather
    than stops a run.
    """
    x = _inputs.embeddings("embeddings", embeddings)
    y = _inputs.integer_ids("labels", labels, len(x)).to(x.device)
    if isinstance(max_pairs, bool) or not isinstance(max_pairs, int) or max_pairs < 1:
        raise DmlError(f"eval.verification_max_pairs={max_pairs!r} must be a positive integer")
    generator = torch.Generator().manual_seed(seed)
    same_first, same_second, same_total = same_class_pairs(y.cpu(), max_pairs, generator)
    diff_first, diff_second, diff_total = different_class_pairs(y.cpu(), max_pairs, generator)
    metrics = dict.fromkeys(verification_keys(far_levels), float("nan"))
    metrics["verification_same_pairs"] = float(len(same_first))
    metrics["verification_different_pairs"] = float(len(diff_first))
    for kind, used, total in (
        ("same-class", len(same_first), same_total),
        ("different-class", len(diff_first), diff_total),
    ):
        if used < total:
            log.debug("verification: a random %d of the %d %s pairs", used, total, kind)
    if len(same_first) == 0 or len(diff_first) == 0:
        note = (
            f"verification metrics are NaN: the split has {same_total} same-class and "
            f"{diff_total} different-class pairs, and needs both"
        )
        return PairVerification(metrics, None, [note])
    distances = torch.cat(
        [
            pair_distances(x, same_first.to(x.device), same_second.to(x.device)),
            pair_distances(x, diff_first.to(x.device), diff_second.to(x.device)),
        ]
    )
    same = np.r_[np.ones(len(same_first), bool), np.zeros(len(diff_first), bool)]
    scores = -distances.double().cpu().numpy()
    far, tar, thresholds = roc_curve(same, scores, drop_intermediate=False)
    metrics["roc_auc"] = float(auc(far, tar))
    metrics["eer"] = equal_error_rate(far, tar)
    notes = []
    for level in far_levels:
        if len(diff_first) * level < 1:
            notes.append(
                f"tar_at_far_{far_name(level)} is NaN: a false-accept rate of {level:g} needs "
                f"at least {round(1 / level)} different-class pairs, the split has "
                f"{len(diff_first)}"
            )
        tar_at, threshold = tar_at_far(far, tar, thresholds, level, len(diff_first))
        metrics[f"tar_at_far_{far_name(level)}"] = tar_at
        metrics[f"threshold_at_far_{far_name(level)}"] = threshold
    curve = RocCurve(
        *thinned(far, tar),
        roc_auc=metrics["roc_auc"],
        eer=metrics["eer"],
        same_pairs=len(same_first),
        different_pairs=len(diff_first),
    )
    return PairVerification(metrics, curve, notes)


def tar_at_far(
    far: np.ndarray, tar: np.ndarray, thresholds: np.ndarray, level: float, different: int
) -> tuple[float, float]:
    """The true-accept rate at false-accept rate ``level``, and its distance threshold.

    ``thresholds`` are roc_curve's score thresholds (negated distances): a pair is
    accepted when its score is at least the threshold, i.e. its distance at most minus it.
    At the first point nothing is accepted, so no finite threshold exists: NaN."""
    if different * level < 1:
        return float("nan"), float("nan")
    last = int(np.searchsorted(far, level, side="right")) - 1
    threshold = float(-thresholds[last]) if last > 0 else float("nan")
    return float(tar[last]), threshold


def equal_error_rate(far: np.ndarray, tar: np.ndarray) -> float:
    """Where the ROC curve, linear between its points, has FAR = FRR (= 1 − TAR).

    FAR − FRR rises from −1 (accept nothing) to 1 (accept everything) along the curve, so
    it changes sign once, between two consecutive points."""
    gap = far - (1.0 - tar)
    after = int(np.argmax(gap >= 0))
    before = after - 1
    step = gap[before] / (gap[before] - gap[after])
    return float(far[before] + step * (far[after] - far[before]))


def thinned(far: np.ndarray, tar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most about CURVE_POINTS points, spread evenly on both a linear and a log FAR
    axis, always keeping each FAR's highest TAR (the curve's upper envelope)."""
    if len(far) <= CURVE_POINTS:
        return far, tar
    half = CURVE_POINTS // 2
    positive = far[far > 0]
    low = positive.min() if len(positive) else 1.0
    grid = np.r_[np.linspace(0.0, 1.0, half), np.geomspace(low, 1.0, half)]
    keep = np.unique(np.clip(np.searchsorted(far, grid, side="right") - 1, 0, len(far) - 1))
    keep = np.unique(np.r_[0, keep, len(far) - 1])
    return far[keep], tar[keep]


def pair_distances(x: Tensor, first: Tensor, second: Tensor) -> Tensor:
    """Euclidean distance of each listed pair, DISTANCE_CHUNK pairs at a time."""
    return torch.cat(
        [
            (x[first[i : i + DISTANCE_CHUNK]] - x[second[i : i + DISTANCE_CHUNK]]).norm(dim=1)
            for i in range(0, len(first), DISTANCE_CHUNK)
        ]
        or [x.new_empty(0)]
    )


def same_class_pairs(
    labels: Tensor, max_pairs: int, generator: torch.Generator
) -> tuple[Tensor, Tensor, int]:
    """Both members of every same-class pair (each unordered pair once), or of a uniform
    sample of ``max_pairs`` of them when there are more; and how many there are."""
    order = torch.sort(labels, stable=True).indices
    _, counts = torch.unique_consecutive(labels[order], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    per_class = counts * (counts - 1) // 2
    total = int(per_class.sum())
    if total <= max_pairs:
        # Sorted position p of a class [s, s + c) pairs with positions p + 1 … s + c − 1.
        ends = torch.repeat_interleave(starts + counts, counts)
        position = torch.arange(len(labels))
        partners = ends - position - 1
        first = torch.repeat_interleave(position, partners)
        offset = torch.arange(len(first)) - torch.repeat_interleave(
            torch.cumsum(partners, 0) - partners, partners
        )
        second = first + 1 + offset
        return order[first], order[second], total
    cls = torch.multinomial(per_class.double(), max_pairs, replacement=True, generator=generator)
    size = counts[cls]
    a = (torch.rand(max_pairs, generator=generator) * size).long()
    b = (torch.rand(max_pairs, generator=generator) * (size - 1)).long()
    b = b + (b >= a).long()
    return order[starts[cls] + a], order[starts[cls] + b], total


def different_class_pairs(
    labels: Tensor, max_pairs: int, generator: torch.Generator
) -> tuple[Tensor, Tensor, int]:
    """Both members of every different-class pair, or of a uniform sample of
    ``max_pairs`` of them when there are more; and how many there are."""
    n = len(labels)
    counts = torch.unique(labels, return_counts=True)[1]
    total = n * (n - 1) // 2 - int((counts * (counts - 1) // 2).sum())
    if total <= max_pairs:
        first, second = torch.triu_indices(n, n, offset=1)
        differ = labels[first] != labels[second]
        return first[differ], second[differ], total
    # Uniform pairs of distinct items, keeping the different-class ones, until enough.
    share = total / (n * (n - 1) / 2)
    found_first, found_second, found = [], [], 0
    while found < max_pairs:
        draw = int((max_pairs - found) / share * 1.1) + 16
        first = torch.randint(n, (draw,), generator=generator)
        second = torch.randint(n - 1, (draw,), generator=generator)
        second = second + (second >= first).long()
        differ = labels[first] != labels[second]
        found_first.append(first[differ])
        found_second.append(second[differ])
        found += int(differ.sum())
    return (
        torch.cat(found_first)[:max_pairs],
        torch.cat(found_second)[:max_pairs],
        total,
    )
