"""scikit-learn's bundled tabular datasets (iris, wine, breast cancer), standardised.

They are the classic test bed of the linear (Mahalanobis) metric: few features on very
different scales, where a learned metric visibly beats the Euclidean one in k-NN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


class SklearnTabular(ArraySource):
    """Each feature is shifted and scaled by the training split's mean and std only.

    Statistics of the whole table would leak the test rows into the inputs; the
    training split's statistics are what a deployed model would also have.
    """

    def __init__(
        self,
        name: str,
        input_shape: Sequence[int],
        num_classes: int,
        split: str = "samples",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        train_classes: int | None = None,
        seed: int = 0,
    ) -> None:
        if name not in LOADERS:
            raise DmlError(f"dataset.name={name!r} is not one of {sorted(LOADERS)}")
        super().__init__(
            input_shape, num_classes, split, val_fraction, test_fraction, train_classes, seed
        )
        self.name = name

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
            return TensorLabeledDataset((split.features - mean) / std, split.labels)

        return DataSplits(
            train=standardised(raw.train),
            val=standardised(raw.val),
            test=standardised(raw.test),
        )
