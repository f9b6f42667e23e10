"""EmbeddingDataModule: train/val/test loaders around a dataset source."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from dml.datasets.base import DatasetSource, DataSplits
from dml.datasets.pairs import PairDataset, PairSampler
from dml.errors import DmlError
from dml.samplers import ClassBalancedBatchSampler


class EmbeddingDataModule(pl.LightningDataModule):
    """Training batches come from the P×K sampler; evaluation batches are sequential.

    With ``pairs`` the training batches are instead ``batch_size`` Siamese pairs
    (:class:`dml.datasets.pairs.PairBatch`), ``positive_ratio`` of them similar.
    """

    def __init__(
        self,
        source: DatasetSource,
        batch_size: int = 128,
        samples_per_class: int = 16,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        seed: int = 0,
        pairs: bool = False,
        positive_ratio: float = 0.5,
    ) -> None:
        super().__init__()
        if not isinstance(pairs, bool):
            raise DmlError(f"dataset.pairs={pairs!r} must be true or false")
        self.source = source
        self.batch_size = batch_size
        self.samples_per_class = samples_per_class
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        # Pinned memory only helps copies to a GPU.
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.persistent_workers = persistent_workers and num_workers > 0
        self.seed = seed
        self.pairs = pairs
        self.positive_ratio = positive_ratio
        self._splits: DataSplits | None = None

    @property
    def splits(self) -> DataSplits:
        if self._splits is None:
            self._splits = self.source.load()
        return self._splits

    def setup(self, stage: str | None = None) -> None:
        if self.pairs:
            self.train_pairs()
        else:
            self.train_sampler()

    def train_pairs(self) -> PairDataset:
        """Built once; building it checks that the ratio of similar pairs can be met."""
        if not hasattr(self, "_train_pairs"):
            self._train_pairs = PairDataset(self.splits.train, self.positive_ratio, self.seed)
        return self._train_pairs

    def train_sampler(self) -> ClassBalancedBatchSampler:
        """Built once; building it checks that P×K batches can be formed at all."""
        if not hasattr(self, "_train_sampler"):
            self._train_sampler = ClassBalancedBatchSampler(
                self.splits.train.labels, self.batch_size, self.samples_per_class, self.seed
            )
        return self._train_sampler

    def train_dataloader(self) -> DataLoader:
        if self.pairs:
            pairs = self.train_pairs()
            return DataLoader(
                pairs,
                batch_size=self.batch_size,
                sampler=PairSampler(pairs),
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
                persistent_workers=self.persistent_workers,
            )
        return DataLoader(
            self.splits.train,
            batch_sampler=self.train_sampler(),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def _eval_loader(self, dataset: object) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.eval_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.splits.val)

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """The test set, or for query/gallery benchmarks (In-Shop) the queries, then the gallery."""
        if self.splits.query is not None and self.splits.gallery is not None:
            return [self._eval_loader(self.splits.query), self._eval_loader(self.splits.gallery)]
        return self._eval_loader(self.splits.test)
