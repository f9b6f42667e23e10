"""How many items of each class a held-out split takes, and when a split can score retrieval.

A retrieval query needs another item of its class among the references, so a class that
appears in a held-out split (val or test) appears there with at least two items; and the
training split keeps at least two items of it, so that P×K batches still hold a positive
pair. A class too small for both stays whole in training, with a warning, instead of
leaving single items in val or test that no query can match.

A split scores retrieval only with two classes or more, one of them with two items: with
one class every neighbour of a query is relevant and MAP@R is 1.0 whatever the model,
and with no class of two items no query has a match and every metric is NaN. A split
that cannot score stops the run at start with the numbers and the fix.
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
#: Classes a split that scores retrieval needs: a relevant and an irrelevant one.
SCORED_CLASSES_MIN = 2


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
    none and is returned among the too-small classes. Classes are drawn in sorted order,
    one ``rng.choice`` each, so the same seed always takes the same items.
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


def hold_out_per_class(
    labels: np.ndarray,
    fraction: float,
    rng: np.random.Generator,
    setting: str,
    held: str = "val",
    held_min: int = HELD_OUT_MIN,
) -> np.ndarray:
    """Sorted indices of a ``fraction`` of every class large enough (:func:`take_per_class`).

    The classes too small stay whole in training, with one warning; if no class is large
    enough the run stops. ``setting`` names what asked for the hold-out
    (``dataset.split=samples``) and ``held`` what is held out (``val and test``).
    """
    taken, too_small = take_per_class(labels, fraction, rng, held_min=held_min)
    if len(too_small) == 0:
        return taken
    needed = held_min + TRAINED_MIN
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
    return taken


def scoring_problem(labels: np.ndarray, groups: np.ndarray | None = None) -> str | None:
    """Why a split with these labels cannot score retrieval, or None if it can.

    ``groups``: evaluated with each query's own group left out of its neighbours
    (``eval.exclude_same_group=true``), where a match must lie in another group.
    """
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) == 0:
        return "holds no item"
    if len(classes) < SCORED_CLASSES_MIN:
        return (
            f"holds a single class ({classes[0]}), so every neighbour of a query is of its "
            "class and every retrieval metric would be 1.0 whatever the model"
        )
    if counts.max() < HELD_OUT_MIN:
        return (
            f"has no class with {HELD_OUT_MIN} items, so no query has a match and every "
            "retrieval metric would be NaN"
        )
    if groups is not None:
        pairs = np.unique(np.stack([labels, groups]), axis=1)
        if np.unique(pairs[0], return_counts=True)[1].max() < HELD_OUT_MIN:
            return (
                f"has no class with items in {HELD_OUT_MIN} groups, so with "
                "eval.exclude_same_group=true no query has a match and every retrieval "
                "metric would be NaN"
            )
    return None


def require_scorable(
    labels: np.ndarray, split: str, fix: str, groups: np.ndarray | None = None
) -> None:
    """Stop the run unless the ``split`` split (val, test) can score retrieval."""
    problem = scoring_problem(labels, groups)
    if problem is not None:
        raise DmlError(f"the {split} split {problem}; {fix}")
