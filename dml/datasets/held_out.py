"""How many items of each class a held-out split takes, so that every split can be evaluated.

A retrieval query needs another item of its class among the references, so a class that
appears in a held-out split (val or test) appears there with at least two items; and the
training split keeps at least two items of it, so that P×K batches still hold a positive
pair. A class too small for both stays whole in training, with a warning, instead of
leaving single items in val or test that no query can match (every retrieval metric of a
split made only of those is NaN). A split left with no class at all stops the run at start
with the numbers and the fix.
"""

from __future__ import annotations

import logging

import numpy as np

from dml.errors import DmlError

log = logging.getLogger(__name__)

#: Items of a class that a held-out split needs: a query and its one relevant reference.
HELD_OUT_MIN = 2
#: Items of a class that training keeps: one positive pair.
TRAINED_MIN = 2


def take_per_class(
    labels: np.ndarray,
    fraction: float,
    rng: np.random.Generator,
    held_min: int = HELD_OUT_MIN,
    trained_min: int = TRAINED_MIN,
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices of a random ``fraction`` of every class, and the classes too small.

    Each class gives ``round(fraction * size)`` items, raised to ``held_min`` and capped so
    that ``trained_min`` stay behind; a class smaller than ``held_min + trained_min`` gives
    none and is returned among the too-small classes. Classes are drawn in sorted order, one
    ``rng.choice`` each, so a class large enough for its plain share is split exactly as by
    :func:`dml.datasets.base.stratified_take`.
    """
    taken, too_small = [], []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        count = min(max(held_min, round(fraction * len(members))), len(members) - trained_min)
        if count < held_min:
            too_small.append(cls)
            continue
        taken.append(rng.choice(members, size=count, replace=False))
    index = np.sort(np.concatenate(taken)) if taken else np.empty(0, dtype=np.int64)
    return index, np.asarray(too_small, dtype=labels.dtype)


def report_kept_whole(
    labels: np.ndarray, too_small: np.ndarray, needed: int, setting: str, held: str
) -> None:
    """Warn that ``too_small`` classes stay whole in training; fail if no class was held out.

    ``setting`` names the split setting (``dataset.split=samples``), ``held`` what was held
    out (``val and test``); ``needed`` is the class size that holding out takes.
    """
    if len(too_small) == 0:
        return
    classes, counts = np.unique(labels, return_counts=True)
    if len(too_small) == len(classes):
        raise DmlError(
            f"{setting}: no class has the {needed} items that {held} need ({HELD_OUT_MIN} "
            f"held out per split, {TRAINED_MIN} kept for training); the largest has "
            f"{counts.max()}: add items to the classes"
            + (", or use dataset.split=classes" if "samples" in setting else "")
        )
    first = too_small[0]
    log.warning(
        "%s: %d of %d classes have fewer than the %d items that %s need (e.g. class %s with "
        "%d); they stay whole in training and are not evaluated",
        setting,
        len(too_small),
        len(classes),
        needed,
        held,
        first,
        counts[np.searchsorted(classes, first)],
    )


def require_matches(labels: np.ndarray, split: str, fix: str) -> None:
    """Fail unless some class of a held-out split has two items (a query and its match)."""
    _, counts = np.unique(labels, return_counts=True)
    if len(counts) == 0 or counts.max() < HELD_OUT_MIN:
        raise DmlError(
            f"the {split} split has no class with {HELD_OUT_MIN} items, so no query has a "
            f"match and every retrieval metric would be NaN; {fix}"
        )
