"""Class-disjoint k-fold cross-validation of the training classes.

The Reality Check protocol (Musgrave et al., 2020) tunes on folds of whole classes: the
training classes are dealt into K folds, fold i validates and the others train, so every
validation score measures retrieval of classes the model never trained on, as the test
does. The test classes take no part: tuning never sees them.

``dataset.folds=K dataset.fold=i`` (keys of train.yaml, so they compose with every dataset
option) reach the source through :meth:`dml.datasets.base.DatasetSource.use_folds`; each
source that splits by class applies :meth:`ClassFolds.split` to its training classes.
Every fold must validate on at least two classes (see :mod:`.held_out`), so K is refused
at start, for every fold alike, when the smallest fold would hold fewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dml.datasets.splitting.held_out import SCORED_CLASSES_MIN
from dml.errors import DmlError


@dataclass(frozen=True)
class ClassFolds:
    """Fold ``fold`` of ``folds`` class-disjoint folds validates; the others train.

    ``setting`` is the key the user set the number of folds with (``dataset.folds``, or
    ``cv.folds`` when one job trains every fold), so that messages name what they typed.
    """

    folds: int
    fold: int
    setting: str = "dataset.folds"

    def __post_init__(self) -> None:
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2:
            raise DmlError(
                f"{self.setting}={self.folds!r} must be an integer of at least 2 (the number "
                "of class-disjoint folds), or null for no folds"
            )
        if isinstance(self.fold, bool) or not isinstance(self.fold, int):
            raise DmlError(f"dataset.fold={self.fold!r} must be an integer in [0, {self.folds})")
        if not 0 <= self.fold < self.folds:
            raise DmlError(
                f"dataset.fold={self.fold} lies outside [0, {self.folds}): with "
                f"dataset.folds={self.folds} the folds are 0 to {self.folds - 1}"
            )

    def check_class_count(self, classes: int) -> None:
        """Every fold must validate on at least two classes, so that it scores retrieval."""
        sizes = [len(part) for part in np.array_split(np.arange(classes), self.folds)]
        if min(sizes) >= SCORED_CLASSES_MIN:
            return
        head = f"{self.setting}={self.folds} deals the {classes} training classes into folds of "
        head += f"{', '.join(map(str, sizes))} classes"
        workable = list(range(2, classes // SCORED_CLASSES_MIN + 1))
        if not workable:
            raise DmlError(
                f"{head}, but a fold must validate on at least {SCORED_CLASSES_MIN} classes, "
                f"so folds need at least {2 * SCORED_CLASSES_MIN} training classes; train on "
                f"more classes (dataset.train_classes) or drop {self.setting}"
            )
        raise DmlError(
            f"{head}; a fold that validates on fewer than {SCORED_CLASSES_MIN} classes scores "
            f"retrieval 1.0 whatever the model: use {self.setting}={choices(workable)}, or "
            "train on more classes (dataset.train_classes)"
        )

    def assignment(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The fold of each of ``classes`` (sorted unique ids), dealt at random.

        A source calls this with its split generator in the same state for every fold
        (nothing it draws before depends on the fold), so the K runs of one dataset seed
        see one assignment and their validation classes never overlap.
        """
        self.check_class_count(len(classes))
        fold_of = np.empty(len(classes), dtype=np.int64)
        for index, members in enumerate(np.array_split(rng.permutation(len(classes)), self.folds)):
            fold_of[members] = index
        return fold_of

    def split(self, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Train and val positions in ``labels`` (the items of the training classes);
        the training positions shuffled, as the sources' other hold-outs return them."""
        classes, inverse = np.unique(labels, return_inverse=True)
        is_val = self.assignment(classes, rng)[inverse] == self.fold
        return rng.permutation(np.flatnonzero(~is_val)), np.flatnonzero(is_val)


def choices(values: list[int]) -> str:
    """``2``, ``2 or 3``, ``2, 3 or 4``, and ``2 to 9`` for longer runs."""
    if len(values) == 1:
        return str(values[0])
    if len(values) <= 4:
        return f"{', '.join(map(str, values[:-1]))} or {values[-1]}"
    return f"{values[0]} to {values[-1]}"


def no_folds_reason(
    split: str, key: str = "dataset.split", setting: str = "dataset.folds"
) -> str | None:
    """Why a source split by ``split`` (the value of ``key``) has no class folds, or None;
    ``setting`` is the key the user asked for folds with.

    Folds are whole classes of the training classes, so only a class split has them:
    ``split=samples`` puts every class in training and test alike.
    """
    if split == "classes":
        return None
    return (
        f"class folds need {key}=classes (validation on classes apart from the training "
        f"ones), not {split!r}; set {key}=classes or drop {setting}"
    )


def class_folds(folds: Any, fold: Any, setting: str = "dataset.folds") -> ClassFolds | None:
    """The folds that ``dataset.folds`` and ``dataset.fold`` ask for; None without folds."""
    if folds is None:
        if fold not in (None, 0):
            raise DmlError(
                f"dataset.fold={fold!r} picks a fold, but dataset.folds is not set; set "
                "dataset.folds=K (the number of class-disjoint folds) as well"
            )
        return None
    return ClassFolds(folds, fold, setting)
