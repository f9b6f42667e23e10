"""EmbeddingDataModule: train/val/test loaders around a dataset source."""

from __future__ import annotations

from typing import TypeVar

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from dml.datasets.base import DatasetSource, DataSplits, GroupedDataset, LabeledDataset
from dml.datasets.pairs import PairDataset, PairSampler
from dml.datasets.splitting import require_scorable
from dml.errors import DmlError
from dml.training.samplers import (
    ClassBalancedBatchSampler,
    ShardedSampler,
    fitted_batch_size,
)
from dml.training.workers import AUTO, resolve_num_workers, resolve_persistent_workers

T = TypeVar("T")


class EmbeddingDataModule(pl.LightningDataModule):
    """Training batches come from the P×K sampler; evaluation batches are sequential.
    Items become batches by the source's ``collate_fn`` (text is tokenized there).

    With ``pairs`` the training batches are instead ``batch_size`` Siamese pairs
    (:class:`dml.datasets.pairs.PairBatch`), ``positive_ratio`` of them similar.
    """

    def __init__(
        self,
        source: DatasetSource,
        batch_size: int = 128,
        samples_per_class: int = 16,
        eval_batch_size: int = 512,
        num_workers: int | str = AUTO,
        pin_memory: bool = False,
        persistent_workers: bool | str = AUTO,
        seed: int = 0,
        eval_groups: bool = False,
        pairs: bool = False,
        positive_ratio: float = 0.5,
        batch_size_chosen: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(pairs, bool):
            raise DmlError(f"dataset.pairs={pairs!r} must be true or false")
        self.source = source
        self.batch_size = batch_size
        self.samples_per_class = samples_per_class
        self.eval_batch_size = eval_batch_size
        # auto: workers for file-backed data only (see dml.training.workers).
        self.num_workers = resolve_num_workers(num_workers, source)
        # Pinned memory only helps copies to a GPU.
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.persistent_workers = resolve_persistent_workers(persistent_workers, self.num_workers)
        self.seed = seed
        # Evaluation batches carry group ids (eval.exclude_same_group).
        self.eval_groups = eval_groups
        self.pairs = pairs
        self.positive_ratio = positive_ratio
        # False: batch_size is train.yaml's default, which shrinks to the classes of a small
        # training split without a warning (see fitted_batch_size).
        self.batch_size_chosen = batch_size_chosen
        self._splits: DataSplits | None = None

    @property
    def splits(self) -> DataSplits:
        if self._splits is None:
            self._splits = self.source.load()
        return self._splits

    def setup(self, stage: str | None = None) -> None:
        """For training, check at once that its batches can be formed; testing a
        checkpoint (dml eval) draws no training batch, so it neither checks nor warns."""
        self.check_scorable(stage)
        if stage in (None, "fit"):
            if self.pairs:
                self.train_pairs()
            else:
                self.train_sampler()
        if self.eval_groups:
            self.check_groups()

    def check_scorable(self, stage: str | None) -> None:
        """The evaluated splits must score retrieval, whatever the source (a user's own
        included): the sources' split rules check this with their own fixes; this is the
        net under all of them, before any training."""
        splits = self.splits
        evaluated = {"test": splits.test}
        if stage in (None, "fit", "validate"):
            evaluated = {"val": splits.val, **evaluated}
        for name, dataset in evaluated.items():
            groups = dataset.groups if self.eval_groups else None
            require_scorable(
                dataset.class_labels.numpy(),
                name,
                f"{type(self.source).__name__} must give it 2 classes or more, one of them "
                "with 2 items" + (" in different groups" if groups is not None else ""),
                groups.numpy() if groups is not None else None,
            )

    def check_groups(self) -> None:
        """Every evaluated split must define groups, or excluding them means nothing."""
        splits = self.splits
        evaluated = {"val": splits.val, "test": splits.test}
        if splits.query is not None and splits.gallery is not None:
            evaluated = {"val": splits.val, "query": splits.query, "gallery": splits.gallery}
        for name, dataset in evaluated.items():
            if dataset.groups is None:
                raise DmlError(
                    f"eval.exclude_same_group=true, but the {name} split of "
                    f"{type(self.source).__name__} has no group ids; set "
                    "eval.exclude_same_group=false, or use data with groups (dataset=inshop, "
                    "dataset=imagefolder with subfolders, dataset=synthetic "
                    "dataset.groups_per_class=N)"
                )

    def train_pairs(self) -> PairDataset:
        """Built once; building it checks that the ratio of similar pairs can be met."""
        if not hasattr(self, "_train_pairs"):
            self._train_pairs = PairDataset(self.splits.train, self.positive_ratio, self.seed)
        return self._train_pairs

    def train_sampler(self) -> ClassBalancedBatchSampler:
        """Built once; building it checks that P×K batches can be formed at all."""
        if not hasattr(self, "_train_sampler"):
            labels = self.splits.train.labels
            batch_size = fitted_batch_size(
                labels, self.batch_size, self.samples_per_class, chosen=self.batch_size_chosen
            )
            self._train_sampler = ClassBalancedBatchSampler(
                labels, batch_size, self.samples_per_class, self.seed
            )
        return self._train_sampler

    def process_share(self) -> tuple[int, int]:
        """(processes, this one's rank) of the attached trainer: (1, 0) outside DDP."""
        if self.trainer is None:
            return 1, 0
        return self.trainer.world_size, self.trainer.global_rank

    def _shard(self, items: Sampler[T]) -> Sampler[T]:
        """Under DDP, this process's share of the training batches (or pairs)."""
        processes, rank = self.process_share()
        return ShardedSampler(items, processes, rank) if processes > 1 else items

    def train_dataloader(self) -> DataLoader:
        if self.pairs:
            pairs = self.train_pairs()
            return DataLoader(
                pairs,
                batch_size=self.batch_size,
                sampler=self._shard(PairSampler(pairs)),
                collate_fn=self.source.collate_fn(),
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
                persistent_workers=self.persistent_workers,
            )
        return DataLoader(
            self.splits.train,
            batch_sampler=self._shard(self.train_sampler()),
            collate_fn=self.source.collate_fn(),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def eval_loader(self, dataset: LabeledDataset, groups: bool = False) -> DataLoader:
        """``groups``: batches are (inputs, labels, group ids)."""
        return DataLoader(
            GroupedDataset(dataset) if groups else dataset,
            batch_size=self.eval_batch_size,
            shuffle=False,
            sampler=self._eval_sampler(dataset),
            collate_fn=self.source.collate_fn(),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def _eval_sampler(self, dataset: LabeledDataset) -> DistributedSampler | None:
        """Under DDP, every process evaluates every n-th sample (padded to equal lengths,
        so the processes run the same number of steps); the module gathers the embeddings
        with their indices and drops the padding's copies before computing metrics."""
        processes, rank = self.process_share()
        if processes == 1:
            return None
        return DistributedSampler(dataset, num_replicas=processes, rank=rank, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self.splits.val, self.eval_groups)

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """The test set, or for query/gallery benchmarks (In-Shop) the queries, then the gallery."""
        if self.splits.query is not None and self.splits.gallery is not None:
            return [
                self.eval_loader(self.splits.query, self.eval_groups),
                self.eval_loader(self.splits.gallery, self.eval_groups),
            ]
        return self.eval_loader(self.splits.test, self.eval_groups)
