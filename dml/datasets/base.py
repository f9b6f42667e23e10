"""What every dataset source returns, and the shared splitting of in-memory arrays.

A source is instantiated from ``conf/dataset/<name>.yaml`` and :meth:`DatasetSource.load`
returns :class:`DataSplits`. Every split is a :class:`LabeledDataset`: a torch Dataset that
also exposes all its labels at once, which the class-balanced sampler needs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from dml.datasets.checks import check_arrays
from dml.datasets.folds import ClassFolds, split_folds_problem
from dml.datasets.held_out import (
    HELD_OUT_MIN,
    TRAINED_MIN,
    report_kept_whole,
    require_matches,
    take_per_class,
)
from dml.errors import DmlError

if TYPE_CHECKING:
    from dml.transforms import TransformPair

SPLITS = ("samples", "classes")


class LabeledDataset(Dataset):
    """A dataset whose ``labels`` tensor holds the label of every item, in order.

    ``groups``, where the data has them, holds every item's group id: items that share
    a recording (frames of one video, photos of one shoot) and are near-duplicates
    rather than independent views of their class. ``eval.exclude_same_group=true``
    evaluates with a query's own group removed from its neighbours (the
    re-identification protocol). ``None`` means the data defines no groups.

    ``class_names[label]`` names a class (an image folder, a text label in a feature file)
    and ``paths[i]`` is item i's file, where the data has them, so that plots and
    ``dml embed`` can show what a label or an index stands for.
    """

    labels: Tensor
    groups: Tensor | None = None
    class_names: list[str] | None = None
    paths: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def class_labels(self) -> Tensor:
        """Every item's true class, also where training hides it (semi-supervised):
        what splits.json records, so a leak of test classes shows there."""
        return self.labels


class TensorLabeledDataset(LabeledDataset):
    """In-memory features with integer labels; ``transform`` applies per item."""

    def __init__(
        self,
        features: Tensor,
        labels: Tensor,
        transform: Callable[[Tensor], Tensor] | None = None,
        groups: Tensor | None = None,
    ) -> None:
        if len(features) != len(labels):
            raise DmlError(
                f"{len(features)} feature rows but {len(labels)} labels; they must match"
            )
        if groups is not None and len(groups) != len(labels):
            raise DmlError(f"{len(groups)} group ids but {len(labels)} labels; they must match")
        self.features = features
        self.labels = labels.long()
        self.transform = transform
        self.groups = groups.long() if groups is not None else None

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        x = self.features[index]
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[index]


class GroupedDataset(Dataset):
    """``(input, label, group)`` items of a dataset with groups, for evaluation loaders: the
    group ids travel in the batches, so they stay aligned with the embeddings however the
    loader orders or shards the items."""

    def __init__(self, dataset: LabeledDataset) -> None:
        if dataset.groups is None:
            raise DmlError(f"{type(dataset).__name__} defines no groups")
        self.dataset = dataset
        self.labels = dataset.labels
        self.groups = dataset.groups

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, Tensor, Tensor]:
        x, label = self.dataset[index]
        return x, label, self.groups[index]


def stacked_inputs(dataset: LabeledDataset) -> Tensor:
    """Every item's input, through the dataset's own (eval) transform, as one tensor.

    The raw-input baseline (identity embedding) is measured on exactly what the model
    sees, so the two numbers compare like for like.
    """
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


@dataclass
class DataSplits:
    """The three splits; ``query`` and ``gallery`` only where the benchmark defines them.

    In-Shop is evaluated by retrieving each query image among a separate gallery. Its
    source sets both, and ``test`` is then their union, so code that only knows the
    query-equals-reference protocol still has a test set to evaluate.
    """

    train: LabeledDataset
    val: LabeledDataset
    test: LabeledDataset
    query: LabeledDataset | None = None
    gallery: LabeledDataset | None = None

    def __post_init__(self) -> None:
        if (self.query is None) != (self.gallery is None):
            raise DmlError(
                "a dataset source set only one of query and gallery; set both or neither"
            )


class DatasetSource(ABC):
    """Knows where a dataset lives and how it is split.

    ``reads_files`` says whether its items are files read and decoded on access (image
    benchmarks) rather than rows already in memory: ``data.num_workers=auto`` starts
    worker processes only for the former (:mod:`dml.training.workers`).

    ``transform`` is the source's transform pair, or None when items are served as
    stored; pictures and exported models read its normalisation from it.
    """

    reads_files: ClassVar[bool] = False

    #: Class-disjoint folds of the training classes (``dataset.folds``/``dataset.fold``),
    #: set through :meth:`use_folds`; None: the source's own validation hold-out.
    class_folds: ClassFolds | None = None

    transform: TransformPair | None = None

    @abstractmethod
    def load(self) -> DataSplits:
        """Read the data and return its three splits."""

    def folds_problem(self) -> str | None:
        """Why this source cannot validate on class folds, or None if it can."""
        return (
            f"{type(self).__name__} has no class split whose training classes could be "
            "folded; use a dataset with split=classes, or drop dataset.folds"
        )

    def use_folds(self, folds: ClassFolds) -> None:
        """Validate on fold ``folds.fold`` of the training classes from now on."""
        problem = self.folds_problem()
        if problem is not None:
            raise DmlError(f"dataset.folds={folds.folds}: {problem}")
        self.class_folds = folds


class ArraySource(DatasetSource):
    """A source whose data fits in memory as one array; it is split here.

    ``split="samples"`` holds out a stratified fraction of every class (the same classes in
    every split). ``split="classes"`` is the DML protocol: the first ``train_classes`` classes
    (in sorted order) train, with a stratified ``val_fraction`` of them held out for
    validation, and the remaining classes form the test set, never seen in training. A class
    too small to give each held-out split two items stays whole in training
    (:mod:`dml.datasets.held_out`).

    ``transform`` (e.g. :class:`dml.transforms.SmallImageTransforms`) augments the training
    split item by item and normalises every split; without it items are returned as stored.
    """

    def __init__(
        self,
        input_shape: list[int],
        num_classes: int,
        split: str = "samples",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        train_classes: int | None = None,
        seed: int = 0,
        transform: TransformPair | None = None,
    ) -> None:
        if split not in SPLITS:
            raise DmlError(f"dataset.split={split!r} is not one of {SPLITS}")
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 < value < 1:
                raise DmlError(f"dataset.{name}={value} must lie strictly between 0 and 1")
        if split == "samples" and val_fraction + test_fraction >= 1:
            raise DmlError(
                f"dataset.val_fraction + dataset.test_fraction = {val_fraction + test_fraction} "
                "leaves no training data; make their sum less than 1"
            )
        self.input_shape = list(input_shape)
        self.num_classes = num_classes
        self.split = split
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.train_classes = train_classes
        self.seed = seed
        self.transform = transform

    @abstractmethod
    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All features (float32, already scaled) and integer labels."""

    def group_ids(self) -> np.ndarray | None:
        """Every item's group id, in the order of :meth:`arrays`; None: no groups."""
        return None

    def folds_problem(self) -> str | None:
        return split_folds_problem(self.split)

    def load(self) -> DataSplits:
        features, labels = self.arrays()
        labels = check_arrays(features, labels, type(self).__name__)
        x = torch.as_tensor(features, dtype=torch.float32).reshape(-1, *self.input_shape)
        y = torch.as_tensor(labels, dtype=torch.long)
        found = self.group_ids()
        g = torch.as_tensor(found, dtype=torch.long) if found is not None else None
        train_idx, val_idx, test_idx = self.split_indices(labels)
        train_tf = self.transform.train_transform() if self.transform is not None else None
        eval_tf = self.transform.eval_transform() if self.transform is not None else None

        def part(
            index: np.ndarray, transform: Callable[[Tensor], Tensor] | None
        ) -> TensorLabeledDataset:
            groups = g[index] if g is not None else None
            return TensorLabeledDataset(x[index], y[index], transform, groups)

        return DataSplits(
            train=part(train_idx, train_tf),
            val=part(val_idx, eval_tf),
            test=part(test_idx, eval_tf),
        )

    def split_indices(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return split_indices(
            labels,
            self.split,
            self.val_fraction,
            self.test_fraction,
            self.train_classes,
            np.random.default_rng(self.seed),
            self.class_folds,
        )


def split_indices(
    labels: np.ndarray,
    split: str,
    val_fraction: float,
    test_fraction: float,
    train_classes: int | None,
    rng: np.random.Generator,
    folds: ClassFolds | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, val and test indices under ``split`` (see :class:`ArraySource`).

    Shared by every source that has no split of its own (in-memory arrays, image folders),
    so ``split=classes`` means the same thing for all of them. With ``folds`` (only under
    ``split=classes``) validation is one class fold of the training classes instead of a
    stratified share of each.
    """
    classes = np.unique(labels)
    if split == "samples":
        held, too_small = take_per_class(
            labels, val_fraction + test_fraction, rng, held_min=2 * HELD_OUT_MIN
        )
        needed = 2 * HELD_OUT_MIN + TRAINED_MIN
        report_kept_whole(labels, too_small, needed, "dataset.split=samples", "val and test")
        rest = np.setdiff1d(np.arange(len(labels)), held)
        share = val_fraction / (val_fraction + test_fraction)
        val = held[take_per_class(labels[held], share, rng, trained_min=HELD_OUT_MIN)[0]]
        test = np.setdiff1d(held, val)
        return rng.permutation(rest), val, test
    n_train = train_classes if train_classes is not None else len(classes) // 2
    if not 0 < n_train < len(classes):
        raise DmlError(
            f"dataset.train_classes={n_train} must lie between 1 and {len(classes) - 1} "
            f"(the data has {len(classes)} classes)"
        )
    seen = np.isin(labels, classes[:n_train])
    seen_idx = np.flatnonzero(seen)
    if folds is not None:
        train, val = folds.split(labels[seen_idx], rng)
        return seen_idx[train], seen_idx[val], np.flatnonzero(~seen)
    taken, too_small = take_per_class(labels[seen_idx], val_fraction, rng)
    report_kept_whole(
        labels[seen_idx], too_small, HELD_OUT_MIN + TRAINED_MIN, "dataset.split=classes", "val"
    )
    val = seen_idx[taken]
    train = np.setdiff1d(seen_idx, val)
    test = np.flatnonzero(~seen)
    require_matches(
        labels[test],
        "test",
        f"the test classes (all but the first dataset.train_classes={n_train}) need more items",
    )
    return rng.permutation(train), val, test


VAL_SPLITS = ("classes", "samples")


def hold_out_val(
    labels: np.ndarray,
    val_split: str,
    val_fraction: float,
    rng: np.random.Generator,
    folds: ClassFolds | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Train and val indices carved out of a benchmark's fixed training set.

    ``val_split=classes`` holds out whole training classes, so validation measures what
    the benchmark's test measures, retrieval among classes never trained on, and the
    best checkpoint is the one that generalises. ``samples`` holds out a stratified
    fraction of every class's images (classes with a single image stay in training).
    ``folds`` holds out one class fold instead (``val_fraction`` then plays no part).
    """
    if val_split not in VAL_SPLITS:
        raise DmlError(f"dataset.val_split={val_split!r} is not one of {VAL_SPLITS}")
    if folds is not None:
        return folds.split(labels, rng)
    if not 0 < val_fraction < 1:
        raise DmlError(f"dataset.val_fraction={val_fraction} must lie strictly between 0 and 1")
    if val_split == "classes":
        classes = np.unique(labels)
        count = max(1, round(val_fraction * len(classes)))
        if count == 1 and len(classes) >= 4:
            # A validation set of one class retrieves nothing else: every metric would be
            # 1 and no negative distance defined. Two, where two still remain to train on.
            count = 2
        if count >= len(classes):
            raise DmlError(
                f"dataset.val_fraction={val_fraction} of {len(classes)} training classes leaves "
                "none to train on; lower it or set dataset.val_split=samples"
            )
        held = rng.choice(classes, size=count, replace=False)
        is_val = np.isin(labels, held)
        require_matches(
            labels[is_val], "val", "raise dataset.val_fraction or set dataset.val_split=samples"
        )
    else:
        taken, too_small = take_per_class(labels, val_fraction, rng)
        report_kept_whole(
            labels, too_small, HELD_OUT_MIN + TRAINED_MIN, "dataset.val_split=samples", "val"
        )
        is_val = np.zeros(len(labels), dtype=bool)
        is_val[taken] = True
    return rng.permutation(np.flatnonzero(~is_val)), np.flatnonzero(is_val)


def stratified_take(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of a random ``fraction`` of every class (at least one item per class)."""
    taken = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        count = max(1, round(fraction * len(members)))
        taken.append(rng.choice(members, size=min(count, len(members)), replace=False))
    return np.sort(np.concatenate(taken))
