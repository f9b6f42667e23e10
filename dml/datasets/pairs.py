"""Siamese pair streams: a labelled split served as (first, second, same) pairs.

Hadsell, Chopra & LeCun train a Siamese network on pairs labelled only similar or
dissimilar, not on class-labelled batches. ``dataset.pairs=true`` serves the training split
that way: every epoch each item is the first member of one pair, and a set fraction of the
pairs (``dataset.positive_ratio``) are similar. Validation and test stay the labelled
retrieval evaluation.

The pairs of an epoch are a pure function of the seed and the epoch, and the sampler names
each pair by (epoch, position), so DataLoader workers, persistent or not, draw exactly the
pairs the main process would, and a resumed run draws what the uninterrupted one drew.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from dml.datasets.base import LabeledDataset
from dml.errors import DmlError


class PairBatch(NamedTuple):
    """One pair, or (after the DataLoader's collation, which keeps the type) a batch of them.

    ``same`` is True for a similar pair (Hadsell's y = 0) and False for a dissimilar one.
    """

    first: Tensor
    second: Tensor
    same: Tensor


class PairTable(NamedTuple):
    """Every pair of one epoch, as item indices into the labelled split."""

    first: Tensor
    second: Tensor
    same: Tensor


class PairDataset(Dataset):
    """Pairs drawn from a labelled dataset, with exactly ``round(positive_ratio · N)`` similar
    ones among the N pairs of an epoch.

    The first members are a random permutation of the split. A similar pair's second member
    is another item of the same class, uniformly; a dissimilar pair's is an item of any other
    class, uniformly. Only items whose class has a second member can start a similar pair.
    """

    def __init__(self, base: LabeledDataset, positive_ratio: float = 0.5, seed: int = 0) -> None:
        number = isinstance(positive_ratio, int | float) and not isinstance(positive_ratio, bool)
        if not number or not 0 < positive_ratio < 1:
            raise DmlError(
                f"dataset.positive_ratio={positive_ratio!r} must lie strictly between 0 and 1 "
                "(the fraction of similar pairs)"
            )
        labels = base.labels.long()
        classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
        if len(classes) < 2:
            raise DmlError(
                f"dataset.pairs=true needs at least 2 training classes to form dissimilar "
                f"pairs, but the training split has {len(classes)}"
            )
        self.base = base
        self.positive_ratio = float(positive_ratio)
        self.seed = seed
        self.epoch = 0
        self.num_similar = round(self.positive_ratio * len(labels))
        able = int(counts[inverse].ge(2).sum())
        if self.num_similar > able:
            raise DmlError(
                f"dataset.positive_ratio={positive_ratio} asks for {self.num_similar} similar "
                f"pairs per epoch, but only {able} training items have a same-class partner; "
                f"lower it to at most {able / len(labels):.3f}"
            )
        self._class = inverse
        self._counts = counts
        self._starts = torch.cumsum(counts, 0) - counts
        # Items grouped by class, and each item's position inside its class's block.
        self._order = torch.argsort(inverse, stable=True)
        self._rank = torch.empty_like(self._order)
        self._rank[self._order] = torch.arange(len(labels)) - self._starts[inverse[self._order]]
        self._cached: tuple[int, PairTable] | None = None

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def pairs(self, epoch: int) -> PairTable:
        """The pairs of ``epoch``, drawn without a Python loop over items."""
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        n = len(self._class)
        first = torch.randperm(n, generator=gen)
        cls = self._class[first]
        size, start = self._counts[cls], self._starts[cls]
        # Similar pairs go to a random subset of the items that have a same-class partner.
        priority = torch.rand(n, generator=gen, dtype=torch.float64)
        priority[size < 2] = 2.0
        same = torch.zeros(n, dtype=torch.bool)
        same[torch.argsort(priority)[: self.num_similar]] = True
        # A partner at a random non-zero offset inside the class block is never the item.
        offset = 1 + uniform_below(size - 1, gen)
        similar = self._order[start + (self._rank[first] + offset) % size]
        # A random item outside the class block: draw among n − size, skip over the block.
        outside = uniform_below(n - size, gen)
        dissimilar = self._order[torch.where(outside < start, outside, outside + size)]
        table = PairTable(first, torch.where(same, similar, dissimilar), same)
        self._cached = (epoch, table)
        return table

    def __getitem__(self, index: int | tuple[int, int]) -> PairBatch:
        """Pair ``position`` of ``epoch`` for an (epoch, position) index; an int is a position
        in the epoch last given to :meth:`set_epoch`."""
        epoch, position = index if isinstance(index, tuple) else (self.epoch, index)
        table = self.pairs(epoch)
        x1 = self.base[int(table.first[position])][0]
        x2 = self.base[int(table.second[position])][0]
        return PairBatch(x1, x2, table.same[position])


def uniform_below(high: Tensor, gen: torch.Generator) -> Tensor:
    """One integer in [0, high) per entry (``high`` ≥ 1 where it is used), from ``gen``."""
    draw = torch.rand(high.shape, generator=gen, dtype=torch.float64)
    return (draw * high).long().clamp_max(high - 1).clamp_min(0)


class PairSampler(Sampler[tuple[int, int]]):
    """Yields (epoch, position) for every pair of the epoch, in order (the pairs are already
    shuffled). Lightning calls :meth:`set_epoch` before each epoch."""

    def __init__(self, dataset: PairDataset) -> None:
        self.dataset = dataset
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, position) for position in range(len(self.dataset)))
