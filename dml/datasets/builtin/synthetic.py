"""Gaussian clusters: a dataset of any size and difficulty, generated from a seed.

Benchmarks of losses, miners and metrics need data whose size and class overlap can be
dialled up and down without a download: ``num_classes`` centres are drawn around the
origin with spread ``center_std``, and each class's samples around its centre with
spread ``cluster_std``; their ratio sets how separable the classes are.

``groups_per_class`` splits each class into that many groups (recording sessions, videos)
that share an offset of spread ``group_std`` from the class centre: items of one group
are closer to each other than to the rest of their class, as frames of one video are,
and the group ids let ``eval.exclude_same_group=true`` measure retrieval across groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dml.datasets.base import ArraySource
from dml.errors import DmlError


@dataclass(kw_only=True, eq=False)
class GaussianClusters(ArraySource):
    dim: int
    samples_per_class: int
    #: Always [dim]; given only to be checked.
    input_shape: Sequence[int] | None = None
    cluster_std: float = 1.0
    center_std: float = 2.0
    groups_per_class: int | None = None
    group_std: float = 1.0

    def __post_init__(self) -> None:
        groups, size = self.groups_per_class, self.samples_per_class
        if groups is not None and not 1 <= groups <= size:
            raise DmlError(
                f"dataset.groups_per_class={groups} must lie between 1 and "
                f"dataset.samples_per_class={size}, or be null (no groups)"
            )
        if self.group_std < 0:
            raise DmlError(f"dataset.group_std={self.group_std} must not be negative")
        if self.num_classes < 2 or self.dim < 1 or size < 2:
            raise DmlError(
                f"dataset.num_classes={self.num_classes}, dim={self.dim}, samples_per_class="
                f"{size}: need at least 2 classes, 1 dimension and 2 samples per class"
            )
        if self.cluster_std <= 0 or self.center_std <= 0:
            raise DmlError(
                f"dataset.cluster_std={self.cluster_std} and center_std={self.center_std} "
                "must be positive"
            )
        if self.input_shape is not None and list(self.input_shape) != [self.dim]:
            raise DmlError(
                f"dataset.input_shape={list(self.input_shape)} must be [dim] = [{self.dim}]"
            )
        self.input_shape = [self.dim]
        super().__post_init__()

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        # Its own generator: the data must not change when the split's draws change.
        rng = np.random.default_rng([self.seed, 1])
        centers = rng.normal(0.0, self.center_std, size=(self.num_classes, self.dim))
        labels = np.repeat(np.arange(self.num_classes), self.samples_per_class)
        points = centers[labels] + rng.normal(0.0, self.cluster_std, size=(len(labels), self.dim))
        groups = self.group_ids()
        if groups is not None:
            # Drawn after the rest, so adding groups leaves centres and noise as they were.
            offsets = rng.normal(0.0, self.group_std, size=(int(groups.max()) + 1, self.dim))
            points += offsets[groups]
        return points.astype(np.float32), labels.astype(np.int64)

    def group_ids(self) -> np.ndarray | None:
        """Item i of a class is in that class's group i mod ``groups_per_class``."""
        if self.groups_per_class is None:
            return None
        within = np.tile(np.arange(self.samples_per_class), self.num_classes)
        labels = np.repeat(np.arange(self.num_classes), self.samples_per_class)
        return labels * self.groups_per_class + within % self.groups_per_class
