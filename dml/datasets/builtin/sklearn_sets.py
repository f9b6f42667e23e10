"""scikit-learn's bundled tabular datasets (iris, wine, breast cancer), standardised.

They are the classic test bed of the linear (Mahalanobis) metric: few features on very
different scales, where a learned metric visibly beats the Euclidean one in k-NN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import datasets

from dml.datasets.base import ArraySource, DataSplits, TensorLabeledDataset
from dml.errors import DmlError

LOADERS: dict[str, Callable[[], Any]] = {
    "iris": datasets.load_iris,
    "wine": datasets.load_wine,
    "breast_cancer": datasets.load_breast_cancer,
}


@dataclass(kw_only=True, eq=False)
class SklearnTabular(ArraySource):
    """Each feature is shifted and scaled by the training split's mean and std only.

    Statistics of the whole table would leak the test rows into the inputs; the
    training split's statistics are what a deployed model would also have.
    """

    name: str

    def __post_init__(self) -> None:
        if self.name not in LOADERS:
            raise DmlError(f"dataset.name={self.name!r} is not one of {sorted(LOADERS)}")
        super().__post_init__()

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        data = LOADERS[self.name]()
        if [data.data.shape[1]] != self.input_shape:
            raise DmlError(
                f"dataset.input_shape={self.input_shape} but {self.name} has "
                f"{data.data.shape[1]} features; set input_shape to [{data.data.shape[1]}]"
            )
        return data.data.astype(np.float32), data.target.astype(np.int64)

    def load(self) -> DataSplits:
        raw = super().load()
        train = raw.train.features
        mean = train.mean(dim=0)
        std = train.std(dim=0).clamp_min(1e-8)

        def standardised(split: TensorLabeledDataset) -> TensorLabeledDataset:
            return TensorLabeledDataset(
                (split.features - mean) / std, split.labels, split.transform, split.groups
            )

        return DataSplits(
            train=standardised(raw.train),
            val=standardised(raw.val),
            test=standardised(raw.test),
        )
