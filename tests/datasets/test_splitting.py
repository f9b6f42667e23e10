"""Every split and fold rule (:mod:`dml.datasets.splitting`), checked against one table.

Each case names a splitting function, its labels and settings, and the classes (a tuple
of ids, or how many where the draw picks them) and item count that each split must get;
or the one-line refusal it must give. Every accepted split is also checked for what all
splits share: train, val and test are disjoint, cover every item, and val and test can
score retrieval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from dml.datasets.splitting import (
    ClassFolds,
    hold_out_val,
    marked_split,
    partition_split,
    require_scorable,
    scoring_problem,
    split_indices,
)
from dml.datasets.splitting.folds import choices
from dml.errors import DmlError

# What one split must hold: its class ids (or their number) and its item count.
Expected = tuple[tuple[int, ...] | int, int]


def per_class(*sizes: int) -> np.ndarray:
    """Labels 0, 1, … with ``sizes[c]`` items of class c."""
    return np.repeat(np.arange(len(sizes)), sizes)


@dataclass
class Case:
    run: Callable[[np.random.Generator], tuple[np.ndarray, ...]]
    labels: np.ndarray
    #: train, val, test: expected classes and items; or the refusal's text.
    expected: tuple[Expected, ...] | str
    #: Labels of the indices of the last part, where they index other labels (MNIST's
    #: test file).
    last_labels: np.ndarray | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def indices(labels: np.ndarray, *args: Any, **kwargs: Any) -> Callable[..., tuple]:
    return lambda rng: split_indices(labels, *args, rng, **kwargs)


TEN_BY_FOUR = per_class(10, 10, 10, 10)
SIX_BY_EIGHT = per_class(*[6] * 8)
SIX_BY_TEN = per_class(*[6] * 10)
MNIST_TRAIN, MNIST_TEST = np.arange(100) % 10, np.arange(40) % 10
MARKED = per_class(6, 6, 6, 6)

CASES: dict[str, Case] = {
    # split=samples: val and test take 2 items of every class, training keeps the rest.
    "samples": Case(
        indices(TEN_BY_FOUR, "samples", 0.1, 0.2, None),
        TEN_BY_FOUR,
        (((0, 1, 2, 3), 24), ((0, 1, 2, 3), 8), ((0, 1, 2, 3), 8)),
    ),
    # A class of 5 (under the 2 + 2 + 2 that val, test and training need) stays whole.
    "samples, a class too small stays in training": Case(
        indices(per_class(10, 10, 10, 5), "samples", 0.1, 0.2, None),
        per_class(10, 10, 10, 5),
        (((0, 1, 2, 3), 23), ((0, 1, 2), 6), ((0, 1, 2), 6)),
    ),
    "samples, one class large enough": Case(
        indices(per_class(10, 5, 5), "samples", 0.1, 0.2, None),
        per_class(10, 5, 5),
        "the val split holds a single class (0), so every neighbour of a query is of its "
        "class and every retrieval metric would be 1.0 whatever the model",
    ),
    "samples, no class large enough": Case(
        indices(per_class(5, 5), "samples", 0.1, 0.2, None),
        per_class(5, 5),
        "dataset.split=samples: no class has the 6 items that val and test need",
    ),
    # split=classes: the first half trains (2 of each held out for val), the rest tests.
    "classes": Case(
        indices(SIX_BY_EIGHT, "classes", 0.1, 0.2, None),
        SIX_BY_EIGHT,
        (((0, 1, 2, 3), 16), ((0, 1, 2, 3), 8), ((4, 5, 6, 7), 24)),
    ),
    "classes, train_classes=6": Case(
        indices(SIX_BY_EIGHT, "classes", 0.1, 0.2, 6),
        SIX_BY_EIGHT,
        (((0, 1, 2, 3, 4, 5), 24), ((0, 1, 2, 3, 4, 5), 12), ((6, 7), 12)),
    ),
    "classes, one test class": Case(
        indices(SIX_BY_EIGHT, "classes", 0.1, 0.2, 7),
        SIX_BY_EIGHT,
        "dataset.train_classes=7 must lie between 2 and 6 (the data has 8 classes)",
    ),
    "classes, one training class": Case(
        indices(SIX_BY_EIGHT, "classes", 0.1, 0.2, 1),
        SIX_BY_EIGHT,
        "dataset.train_classes=1 must lie between 2 and 6",
    ),
    "classes, three classes in all": Case(
        indices(per_class(6, 6, 6), "classes", 0.1, 0.2, None),
        per_class(6, 6, 6),
        "dataset.split=classes needs at least 4 classes (2 to train and validate on, 2 to "
        "test), but the data has 3",
    ),
    "classes, test classes of one item each": Case(
        indices(per_class(6, 6, 1, 1), "classes", 0.1, 0.2, 2),
        per_class(6, 6, 1, 1),
        "the test split has no class with 2 items",
    ),
    # Folds: one fold of the training classes validates, the test classes stay apart.
    "classes, 3 folds of 6": Case(
        indices(SIX_BY_TEN, "classes", 0.1, 0.2, 6, folds=ClassFolds(3, 1)),
        SIX_BY_TEN,
        ((4, 24), (2, 12), ((6, 7, 8, 9), 24)),
    ),
    "classes, 4 folds of 6": Case(
        indices(SIX_BY_TEN, "classes", 0.1, 0.2, 6, folds=ClassFolds(4, 0)),
        SIX_BY_TEN,
        "dataset.folds=4 deals the 6 training classes into folds of 2, 2, 1, 1 classes; a "
        "fold that validates on fewer than 2 classes scores retrieval 1.0 whatever the "
        "model: use dataset.folds=2 or 3, or train on more classes",
    ),
    "classes, 4 folds under cv.folds": Case(
        indices(SIX_BY_TEN, "classes", 0.1, 0.2, 6, folds=ClassFolds(4, 3, "cv.folds")),
        SIX_BY_TEN,
        "cv.folds=4 deals the 6 training classes into folds of 2, 2, 1, 1 classes",
    ),
    "classes, 2 folds of 3": Case(
        indices(SIX_BY_TEN, "classes", 0.1, 0.2, 3, folds=ClassFolds(2, 0)),
        SIX_BY_TEN,
        "dataset.folds=2 deals the 3 training classes into folds of 2, 1 classes, but a fold "
        "must validate on at least 2 classes, so folds need at least 4 training classes",
    ),
    # A fixed training partition (benchmarks): whole classes or a share of each.
    "val_split=classes": Case(
        lambda rng: hold_out_val(SIX_BY_TEN, "classes", 0.3, rng),
        SIX_BY_TEN,
        ((7, 42), (3, 18)),
    ),
    "val_split=classes, a small fraction still holds out two": Case(
        lambda rng: hold_out_val(SIX_BY_TEN, "classes", 0.01, rng),
        SIX_BY_TEN,
        ((8, 48), (2, 12)),
    ),
    "val_split=classes, three classes": Case(
        lambda rng: hold_out_val(per_class(6, 6, 6), "classes", 0.5, rng),
        per_class(6, 6, 6),
        "dataset.val_split=classes holds out whole classes, at least 2 to validate on and 2 "
        "left to train on, but the training partition has 3; set dataset.val_split=samples",
    ),
    "val_split=classes, too large a fraction": Case(
        lambda rng: hold_out_val(SIX_BY_TEN, "classes", 0.9, rng),
        SIX_BY_TEN,
        "dataset.val_fraction=0.9 of 10 training classes leaves fewer than 2 to train on",
    ),
    "val_split=samples": Case(
        lambda rng: hold_out_val(per_class(10, 10, 3), "samples", 0.25, rng),
        per_class(10, 10, 3),
        (((0, 1, 2), 19), ((0, 1), 4)),
    ),
    "val_split=samples with folds": Case(
        lambda rng: hold_out_val(SIX_BY_EIGHT, "samples", 0.25, rng, ClassFolds(2, 1)),
        SIX_BY_EIGHT,
        ((4, 24), (4, 24)),
    ),
    # MNIST's official files: the test file's classes follow the split.
    "partitions, samples": Case(
        lambda rng: partition_split(MNIST_TRAIN, MNIST_TEST, "samples", 0.1, None, rng),
        MNIST_TRAIN,
        ((10, 80), (10, 20), (10, 40)),
        last_labels=MNIST_TEST,
    ),
    "partitions, classes": Case(
        lambda rng: partition_split(MNIST_TRAIN, MNIST_TEST, "classes", 0.1, 6, rng),
        MNIST_TRAIN,
        (((0, 1, 2, 3, 4, 5), 48), ((0, 1, 2, 3, 4, 5), 12), ((6, 7, 8, 9), 16)),
        last_labels=MNIST_TEST,
    ),
    "partitions, classes, one test class": Case(
        lambda rng: partition_split(MNIST_TRAIN, MNIST_TEST, "classes", 0.1, 9, rng),
        MNIST_TRAIN,
        "dataset.train_classes=9 must lie between 2 and 8",
    ),
    # A feature file's own split column.
    "marked rows": Case(
        lambda rng: marked_split(
            MARKED, np.array(["train", "train", "val", "val", "test", "test"] * 4), 0.1, rng, "f"
        ),
        MARKED,
        (((0, 1, 2, 3), 8), ((0, 1, 2, 3), 8), ((0, 1, 2, 3), 8)),
    ),
    "marked rows without val": Case(
        lambda rng: marked_split(
            MARKED, np.array((["train"] * 4 + ["test"] * 2) * 4), 0.1, rng, "f"
        ),
        MARKED,
        (((0, 1, 2, 3), 8), ((0, 1, 2, 3), 8), ((0, 1, 2, 3), 8)),
    ),
    "marked rows, val of one class": Case(
        lambda rng: marked_split(
            MARKED,
            np.array(["train"] * 3 + ["test"] * 3 + ["train"] * 12 + ["val"] * 6),
            0.1,
            rng,
            "f",
        ),
        MARKED,
        "the val split holds a single class (3)",
    ),
    "marked rows, no test row": Case(
        lambda rng: marked_split(MARKED, np.array(["train"] * 24), 0.1, rng, "f: column 'split'"),
        MARKED,
        "f: column 'split' marks no row 'test'",
    ),
}


def described(labels: np.ndarray, index: np.ndarray, expected: Expected) -> Expected:
    """What ``index`` holds, in the form ``expected`` gives it (ids, or their number)."""
    classes = tuple(int(c) for c in np.unique(labels[index]))
    return (classes if isinstance(expected[0], tuple) else len(classes), len(index))


@pytest.mark.parametrize("name", list(CASES))
def test_splitting_rules(name: str) -> None:
    case = CASES[name]
    if isinstance(case.expected, str):
        with pytest.raises(DmlError) as info:
            case.run(np.random.default_rng(0))
        assert case.expected in str(info.value) and "\n" not in str(info.value)
        return
    parts = case.run(np.random.default_rng(0))
    label_sets = [case.labels] * len(parts)
    if case.last_labels is not None:
        label_sets[-1] = case.last_labels
    got = tuple(
        described(labels, index, want)
        for labels, index, want in zip(label_sets, parts, case.expected, strict=True)
    )
    assert got == case.expected
    same_labels = parts if case.last_labels is None else parts[:-1]
    joined = np.concatenate(same_labels)
    assert len(np.unique(joined)) == len(joined), "the splits overlap"
    # Every item is somewhere; of a fixed training partition, every item of the classes kept.
    kept = np.isin(case.labels, case.labels[joined]) if case.last_labels is not None else True
    assert (
        sorted(joined.tolist()) == np.flatnonzero(kept & np.ones(len(case.labels), bool)).tolist()
    )
    for labels, index in zip(label_sets[1:], parts[1:], strict=True):
        assert scoring_problem(labels[index]) is None


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if not isinstance(c.expected, str)])
def test_the_same_seed_gives_the_same_split(name: str) -> None:
    first = CASES[name].run(np.random.default_rng(5))
    second = CASES[name].run(np.random.default_rng(5))
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_the_folds_of_one_seed_are_disjoint_and_cover_the_training_classes() -> None:
    vals = []
    for fold in range(3):
        rng = np.random.default_rng(3)
        _, val, _ = split_indices(SIX_BY_TEN, "classes", 0.1, 0.2, 6, rng, ClassFolds(3, fold))
        vals.append(set(SIX_BY_TEN[val].tolist()))
    assert all(len(v) == 2 for v in vals)
    assert set().union(*vals) == set(range(6))


@pytest.mark.parametrize(
    ("labels", "groups", "problem"),
    [
        (np.array([], dtype=np.int64), None, "holds no item"),
        (np.array([4, 4, 4]), None, "holds a single class (4)"),
        (np.array([0, 1, 2]), None, "has no class with 2 items"),
        (np.array([0, 0, 1]), None, None),
        # With a query's own group left out, a match must lie in another group.
        (np.array([0, 0, 1, 1]), np.array([5, 5, 6, 6]), "has no class with items in 2 groups"),
        (np.array([0, 0, 1, 1]), np.array([5, 7, 6, 6]), None),
    ],
)
def test_a_split_scores_retrieval_with_two_classes_and_a_match(
    labels: np.ndarray, groups: np.ndarray | None, problem: str | None
) -> None:
    found = scoring_problem(labels, groups)
    assert found is None if problem is None else problem in (found or "")
    if problem is not None:
        with pytest.raises(DmlError, match="the test split .*; add items"):
            require_scorable(labels, "test", "add items", groups)


@pytest.mark.parametrize(
    ("values", "text"),
    [
        ([2], "2"),
        ([2, 3], "2 or 3"),
        ([2, 3, 4, 5], "2, 3, 4 or 5"),
        (list(range(2, 10)), "2 to 9"),
    ],
)
def test_workable_fold_counts_read_as_a_sentence(values: list[int], text: str) -> None:
    assert choices(values) == text
