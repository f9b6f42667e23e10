"""The splits themselves: which items train, validate and test under each setting.

- ``split=samples`` holds out a stratified fraction of every class for val and test (the
  same classes in every split).
- ``split=classes`` is the DML protocol: the first ``train_classes`` classes (in sorted
  order) train, with a stratified ``val_fraction`` of them held out for validation, and
  the remaining classes test, never seen in training.
- A benchmark (or MNIST's official files) fixes its own train and test partitions;
  validation is carved out of the training partition: whole classes
  (``val_split=classes``) or a share of every class (``samples``).
- A feature file may mark each row's split itself.

With class folds (:mod:`.folds`) validation is one fold of the training classes instead.
Every held-out split is checked to score retrieval (:mod:`.held_out`).
"""

from __future__ import annotations

import numpy as np

from dml.datasets.splitting.folds import ClassFolds
from dml.datasets.splitting.held_out import (
    HELD_OUT_MIN,
    SCORED_CLASSES_MIN,
    hold_out_per_class,
    require_scorable,
)
from dml.errors import DmlError

SPLITS = ("samples", "classes")
VAL_SPLITS = ("classes", "samples")
#: Values of a feature file's own split column (or array).
MARKED_SPLITS = ("train", "val", "test")


def check_split_settings(
    split: str,
    val_fraction: float,
    test_fraction: float | None = None,
    choices: tuple[str, ...] = SPLITS,
) -> None:
    """The settings every source that splits by :func:`split_indices` takes, checked once.

    ``test_fraction`` is None for a source whose test set is fixed (MNIST's test file).
    """
    if split not in choices:
        raise DmlError(f"dataset.split={split!r} is not one of {', '.join(choices)}")
    fractions = [("val_fraction", val_fraction)]
    if test_fraction is not None:
        fractions.append(("test_fraction", test_fraction))
    for name, value in fractions:
        if not 0 < value < 1:
            raise DmlError(f"dataset.{name}={value} must lie strictly between 0 and 1")
    if split == "samples" and test_fraction is not None and val_fraction + test_fraction >= 1:
        raise DmlError(
            f"dataset.val_fraction + dataset.test_fraction = {val_fraction + test_fraction} "
            "leaves no training data; make their sum less than 1"
        )


def train_class_count(classes: int, train_classes: int | None) -> int:
    """How many classes train under ``split=classes`` (default: half of them).

    The training classes are also the validation classes, and the others the test
    classes, so each side needs two classes to score retrieval.
    """
    if classes < 2 * SCORED_CLASSES_MIN:
        raise DmlError(
            f"dataset.split=classes needs at least {2 * SCORED_CLASSES_MIN} classes (2 to "
            f"train and validate on, 2 to test), but the data has {classes}; use "
            "dataset.split=samples"
        )
    count = train_classes if train_classes is not None else classes // 2
    if not SCORED_CLASSES_MIN <= count <= classes - SCORED_CLASSES_MIN:
        raise DmlError(
            f"dataset.train_classes={count} must lie between {SCORED_CLASSES_MIN} and "
            f"{classes - SCORED_CLASSES_MIN} (the data has {classes} classes): validation "
            "and test each need 2 classes to score retrieval"
        )
    return count


def split_indices(
    labels: np.ndarray,
    split: str,
    val_fraction: float,
    test_fraction: float,
    train_classes: int | None,
    rng: np.random.Generator,
    folds: ClassFolds | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, val and test indices of data that has no split of its own.

    Shared by every such source (in-memory arrays, image folders, feature files), so
    ``split=classes`` means the same thing for all of them. With ``folds`` (only under
    ``split=classes``) validation is one class fold of the training classes.
    """
    classes = np.unique(labels)
    if split == "samples":
        setting = "dataset.split=samples"
        fix = "add items to the classes, or use dataset.split=classes"
        held = hold_out_per_class(
            labels, val_fraction + test_fraction, rng, setting, "val and test", 2 * HELD_OUT_MIN
        )
        rest = np.setdiff1d(np.arange(len(labels)), held)
        share = val_fraction / (val_fraction + test_fraction)
        val = held[hold_out_per_class(labels[held], share, rng, setting, "val")]
        test = np.setdiff1d(held, val)
        require_scorable(labels[val], "val", fix)
        require_scorable(labels[test], "test", fix)
        return rng.permutation(rest), val, test
    n_train = train_class_count(len(classes), train_classes)
    seen = np.isin(labels, classes[:n_train])
    seen_idx = np.flatnonzero(seen)
    test = np.flatnonzero(~seen)
    require_scorable(
        labels[test],
        "test",
        f"the test classes (all but the first dataset.train_classes={n_train}) need more items",
    )
    if folds is not None:
        train, val = folds.split(labels[seen_idx], rng)
        val = seen_idx[val]
        require_scorable(labels[val], "val", "the classes of the fold need more items")
        return seen_idx[train], val, test
    taken = hold_out_per_class(labels[seen_idx], val_fraction, rng, "dataset.split=classes")
    val = seen_idx[taken]
    train = np.setdiff1d(seen_idx, val)
    require_scorable(
        labels[val], "val", "the training classes need more items, or raise dataset.train_classes"
    )
    return rng.permutation(train), val, test


def hold_out_val(
    labels: np.ndarray,
    val_split: str,
    val_fraction: float,
    rng: np.random.Generator,
    folds: ClassFolds | None = None,
    setting: str = "dataset.val_split",
) -> tuple[np.ndarray, np.ndarray]:
    """Train and val indices carved out of a fixed training partition.

    ``val_split=classes`` holds out whole training classes, so validation measures what
    the benchmark's test measures, retrieval among classes never trained on, and the
    best checkpoint is the one that generalises. ``samples`` holds out a stratified
    fraction of every class's images (classes too small stay in training). ``folds``
    holds out one class fold instead (``val_fraction`` then plays no part). ``setting``
    names the key that chose ``val_split``, for the messages.
    """
    if val_split not in VAL_SPLITS:
        raise DmlError(f"{setting}={val_split!r} is not one of {', '.join(VAL_SPLITS)}")
    if folds is not None:
        train, val = folds.split(labels, rng)
        require_scorable(labels[val], "val", "the classes of the fold need more items")
        return train, val
    if not 0 < val_fraction < 1:
        raise DmlError(f"dataset.val_fraction={val_fraction} must lie strictly between 0 and 1")
    if val_split == "classes":
        return hold_out_classes(labels, val_fraction, rng, setting)
    taken = hold_out_per_class(labels, val_fraction, rng, f"{setting}=samples")
    require_scorable(labels[taken], "val", "add items to the training classes")
    is_val = np.zeros(len(labels), dtype=bool)
    is_val[taken] = True
    return rng.permutation(np.flatnonzero(~is_val)), taken


def hold_out_classes(
    labels: np.ndarray, val_fraction: float, rng: np.random.Generator, setting: str
) -> tuple[np.ndarray, np.ndarray]:
    """A ``val_fraction`` of the classes, at least two, and two left to train on."""
    classes = np.unique(labels)
    if len(classes) < 2 * SCORED_CLASSES_MIN:
        raise DmlError(
            f"{setting}=classes holds out whole classes, at least {SCORED_CLASSES_MIN} to "
            f"validate on and {SCORED_CLASSES_MIN} left to train on, but the training "
            f"partition has {len(classes)}; set {setting}=samples"
        )
    count = max(SCORED_CLASSES_MIN, round(val_fraction * len(classes)))
    if count > len(classes) - SCORED_CLASSES_MIN:
        raise DmlError(
            f"dataset.val_fraction={val_fraction} of {len(classes)} training classes leaves "
            f"fewer than {SCORED_CLASSES_MIN} to train on; lower it or set {setting}=samples"
        )
    held = rng.choice(classes, size=count, replace=False)
    is_val = np.isin(labels, held)
    require_scorable(labels[is_val], "val", f"raise dataset.val_fraction or set {setting}=samples")
    return rng.permutation(np.flatnonzero(~is_val)), np.flatnonzero(is_val)


def partition_split(
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    split: str,
    val_fraction: float,
    train_classes: int | None,
    rng: np.random.Generator,
    folds: ClassFolds | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train and val indices into a fixed training partition, test indices into a fixed
    test partition (MNIST's official files), under ``split``.

    ``split=samples`` tests on the whole test partition; ``split=classes`` keeps the
    first ``train_classes`` classes of the training partition and tests on the test
    partition's items of the others, so no test image is ever trained on.
    """
    train_pool = np.arange(len(train_labels))
    test = np.arange(len(test_labels))
    if split == "classes":
        classes = np.union1d(train_labels, test_labels)
        seen = classes[: train_class_count(len(classes), train_classes)]
        train_pool = np.flatnonzero(np.isin(train_labels, seen))
        test = np.flatnonzero(~np.isin(test_labels, seen))
    require_scorable(test_labels[test], "test", "the test partition needs more classes")
    train, val = hold_out_val(
        train_labels[train_pool], "samples", val_fraction, rng, folds, "dataset.split"
    )
    return train_pool[train], train_pool[val], test


def marked_split(
    labels: np.ndarray,
    marks: np.ndarray,
    val_fraction: float,
    rng: np.random.Generator,
    where: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows a file marks train, val and test. A file with no val rows gets a
    stratified ``val_fraction`` of the train rows as validation. ``where`` names the
    file and its split column (or array), for the messages."""
    parts = {name: np.flatnonzero(marks == name) for name in MARKED_SPLITS}
    for name in ("train", "test"):
        if len(parts[name]) == 0:
            raise DmlError(
                f"{where} marks no row {name!r}; mark some, or use dataset.split=samples or classes"
            )
    train, val = parts["train"], parts["val"]
    if len(val) == 0:
        val = train[
            hold_out_per_class(labels[train], val_fraction, rng, f"{where} (no 'val' rows)")
        ]
        train = np.setdiff1d(train, val)
    for name, index in (("val", val), ("test", parts["test"])):
        require_scorable(
            labels[index],
            name,
            f"mark rows of two or more classes {name!r} in {where}, two of some class",
        )
    return rng.permutation(train), val, parts["test"]
