"""What every dataset source returns, and the shared base of in-memory sources.

A source is instantiated from ``conf/dataset/<name>.yaml`` and :meth:`DatasetSource.load`
returns :class:`DataSplits`. Every split is a :class:`LabeledDataset`: a torch Dataset that
also exposes all its labels at once, which the class-balanced sampler needs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from dml.datasets.checks import check_arrays
from dml.datasets.splitting import (
    ClassFolds,
    check_split_settings,
    no_folds_reason,
    split_indices,
)
from dml.errors import DmlError

if TYPE_CHECKING:
    from dml.transforms import TransformPair


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

    def collate_fn(self) -> Callable[[list[Any]], Any] | None:
        """How the loaders turn a list of items into a batch; None: torch's default
        stacking. Text sources tokenize here (:class:`dml.datasets.tokens.TokenBatches`)."""
        return None

    def folds_problem(self, setting: str = "dataset.folds") -> str | None:
        """Why this source cannot validate on class folds, or None if it can; ``setting``
        is the key the user asked for folds with, named in the fix."""
        return (
            f"{type(self).__name__} has no class split whose training classes could be "
            f"folded; use a dataset with split=classes, or drop {setting}"
        )

    def use_folds(self, folds: ClassFolds) -> None:
        """Validate on fold ``folds.fold`` of the training classes from now on."""
        problem = self.folds_problem(folds.setting)
        if problem is not None:
            raise DmlError(f"{folds.setting}={folds.folds}: {problem}")
        self.class_folds = folds


@dataclass(kw_only=True, eq=False)
class ArraySource(DatasetSource):
    """A source whose data fits in memory as one array; it is split here.

    ``split="samples"`` holds out a stratified fraction of every class (the same classes in
    every split). ``split="classes"`` is the DML protocol: the first ``train_classes`` classes
    (in sorted order) train, with a stratified ``val_fraction`` of them held out for
    validation, and the remaining classes form the test set, never seen in training. A class
    too small to give each held-out split two items stays whole in training
    (:mod:`dml.datasets.splitting`).

    ``transform`` (e.g. :class:`dml.transforms.SmallImageTransforms`) augments the training
    split item by item and normalises every split; without it items are returned as stored.

    The settings are fields, passed by keyword as Hydra passes ``dataset.*``, so that a
    subclass declares only its own.
    """

    input_shape: Sequence[int]
    num_classes: int
    split: str = "samples"
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    train_classes: int | None = None
    seed: int = 0
    transform: TransformPair | None = None

    def __post_init__(self) -> None:
        check_split_settings(self.split, self.val_fraction, self.test_fraction)
        self.input_shape = [int(n) for n in self.input_shape]

    @abstractmethod
    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All features (float32, already scaled) and integer labels."""

    def group_ids(self) -> np.ndarray | None:
        """Every item's group id, in the order of :meth:`arrays`; None: no groups."""
        return None

    def folds_problem(self, setting: str = "dataset.folds") -> str | None:
        return no_folds_reason(self.split, setting=setting)

    def load(self) -> DataSplits:
        features, labels = self.arrays()
        labels = check_arrays(features, labels, type(self).__name__)
        x = torch.as_tensor(features, dtype=torch.float32).reshape(-1, *self.input_shape)
        y = torch.as_tensor(labels, dtype=torch.long)
        found = self.group_ids()
        g = torch.as_tensor(found, dtype=torch.long) if found is not None else None
        train_idx, val_idx, test_idx = split_indices(
            labels,
            self.split,
            self.val_fraction,
            self.test_fraction,
            self.train_classes,
            np.random.default_rng(self.seed),
            self.class_folds,
        )
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
