"""Batch-hard mining (Hermans et al.), PML's BatchHardMiner, with an optional warm-up."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dml.distances import Distance, References
from dml.miners.base import Miner
from dml.tuples import Mined, Triplets, TripletSelection


class BatchHardMiner(Miner):
    """One triplet per anchor: its farthest positive and its closest negative.

    Anchors without a positive or without a negative are dropped. Ties go to the lowest
    index, as in PML, so the mined indices (and hence gradients) agree even on
    duplicated embeddings.

    ``warmup_epochs``: for the first epochs, mine semi-hard triplets (negatives farther
    than the positive but within ``warmup_margin``, as :class:`SemiHardMiner`) instead.
    An untrained network maps every input into one small region; the hardest negative of
    every anchor then sits as close as its hardest positive, and batch-hard's gradient
    shrinks the whole embedding further, into a collapse it rarely leaves. Semi-hard
    triplets spread the classes first. Training tells the miner its epoch through
    :meth:`set_epoch`; once the warm-up is over it is PML's BatchHardMiner.
    """

    def __init__(
        self,
        distance: Distance | None = None,
        warmup_epochs: int = 0,
        warmup_margin: float = 0.2,
        samples_per_class: int | None = None,
    ) -> None:
        super().__init__(distance)
        self.samples_per_class = samples_per_class
        self.warmup_epochs = warmup_epochs
        self.warmup_margin = warmup_margin
        self.epoch = warmup_epochs

    def set_epoch(self, epoch: int) -> None:
        """The 0-based training epoch about to run."""
        self.epoch = epoch

    @property
    def warming_up(self) -> bool:
        return self.epoch < self.warmup_epochs

    def mine(self, embeddings: Tensor, labels: Tensor, memory: References | None = None) -> Mined:
        dist, pos, neg = self.compare(embeddings, labels, memory)
        if self.samples_per_class is not None:
            group = rank_within_class(labels) // self.samples_per_class
            same = torch.ones_like(pos)
            same[:, : len(labels)] = group[:, None] == group[None, :]
            pos, neg = pos & same, neg & same
        if self.warming_up:
            return TripletSelection(pos, neg, dist, low=0.0, high=self.warmup_margin)
        positive = dist.masked_fill(~pos, -math.inf).max(dim=1).indices
        negative = dist.masked_fill(~neg, math.inf).min(dim=1).indices
        anchor = (pos.any(1) & neg.any(1)).nonzero(as_tuple=True)[0]
        return Triplets(anchor, positive[anchor], negative[anchor])


def rank_within_class(labels: Tensor) -> Tensor:
    """Each sample's 0-based position among the batch's samples of its class."""
    order = torch.argsort(labels, stable=True)
    ordered = labels[order]
    first = torch.searchsorted(ordered, ordered)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(labels), device=labels.device) - first
    return rank
