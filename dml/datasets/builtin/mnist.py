"""Full MNIST and Fashion-MNIST (70,000 28×28 images each) from torchvision's raw files.

Nothing downloads unless ``download=true``, which is handed to torchvision as it is. The
official test file stays the test set under both splits, so test images are never seen
in training: ``split=samples`` tests on all of it, ``split=classes`` on its images of the
classes not trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchvision import datasets

from dml.datasets.base import DatasetSource, DataSplits, TensorLabeledDataset
from dml.datasets.splitting import check_split_settings, no_folds_reason, partition_split
from dml.errors import DmlError
from dml.transforms import SmallImageTransforms

VARIANTS = ("MNIST", "FashionMNIST")
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class TorchvisionMNIST(DatasetSource):
    """``variant`` picks torchvision's class, and with it the folder ``root/<variant>/raw``."""

    def __init__(
        self,
        root: str | Path,
        input_shape: Sequence[int],
        num_classes: int = 10,
        variant: str = "MNIST",
        download: bool = False,
        split: str = "samples",
        val_fraction: float = 0.1,
        train_classes: int | None = None,
        transform: SmallImageTransforms | None = None,
        seed: int = 0,
    ) -> None:
        if variant not in VARIANTS:
            raise DmlError(f"dataset.variant={variant!r} is not one of {VARIANTS}")
        check_split_settings(split, val_fraction)
        if list(input_shape) != [1, 28, 28]:
            raise DmlError(f"dataset.input_shape={list(input_shape)} must be [1, 28, 28]")
        self.root = Path(root).expanduser()
        self.input_shape = [1, 28, 28]
        self.num_classes = num_classes
        self.variant = variant
        self.download = download
        self.split = split
        self.val_fraction = val_fraction
        self.train_classes = train_classes
        self.transform = transform if transform is not None else SmallImageTransforms()
        self.seed = seed

    def folds_problem(self, setting: str = "dataset.folds") -> str | None:
        return no_folds_reason(self.split, setting=setting)

    def read(self, train: bool) -> tuple[Tensor, Tensor]:
        """Images as [N, 1, 28, 28] floats in [0, 1], and their labels."""
        raw = self.root / self.variant / "raw"
        try:
            data = getattr(datasets, self.variant)(
                str(self.root), train=train, download=self.download
            )
        except RuntimeError as exc:
            if self.download:
                raise DmlError(
                    f"torchvision could not download {self.variant} into {raw}: "
                    f"{str(exc).splitlines()[0]}"
                ) from exc
            raise DmlError(
                f"{self.variant} not found in {raw}: expected the uncompressed files "
                f"{', '.join(RAW_FILES)}; copy them there or set dataset.download=true"
            ) from exc
        except (AssertionError, ValueError, OSError) as exc:
            raise DmlError(
                f"cannot read {self.variant} from {raw}: {exc!r}; the files are "
                "damaged, replace them"
            ) from exc
        return data.data.unsqueeze(1).float() / 255.0, data.targets.long()

    def load(self) -> DataSplits:
        x, y = self.read(train=True)
        test_x, test_y = self.read(train=False)
        train, val, test = (
            torch.as_tensor(index)
            for index in partition_split(
                y.numpy(),
                test_y.numpy(),
                self.split,
                self.val_fraction,
                self.train_classes,
                np.random.default_rng(self.seed),
                self.class_folds,
            )
        )
        eval_tf = self.transform.eval_transform()
        return DataSplits(
            train=TensorLabeledDataset(x[train], y[train], self.transform.train_transform()),
            val=TensorLabeledDataset(x[val], y[val], eval_tf),
            test=TensorLabeledDataset(test_x[test], test_y[test], eval_tf),
        )
