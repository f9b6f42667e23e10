"""Large Margin Nearest Neighbour (Weinberger & Saul 2009) as a deep metric loss."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dml.distances import Distance, References, SquaredEuclideanDistance, compare
from dml.losses.base import EmbeddingLoss, LossOutput, zero_loss
from dml.losses.triplet import windowed_hinge_sum, with_gradient
from dml.tuples import Mined, TripletSelection, sort_rows


class LMNNLoss(EmbeddingLoss):
    """Pull each sample's k target neighbours in; push impostors out past a unit margin.

    Target neighbours are each sample's ``k`` nearest same-class samples in the current
    embedding (ties to the lower index; chosen without gradient, as LMNN fixes them
    before optimising). The loss, per target pair, is
    (1 − μ)·d(i,j) + μ·Σ_l max(0, margin + d(i,j) − d(i,l)) over differently labelled l,
    with d the squared Euclidean distance of the Mahalanobis form and μ = ``push_weight``.
    Only LMNN's local targets are pulled, so a class may keep several modes, unlike
    losses that pull every positive. The impostor sum is the triplet loss's sorted pass,
    so it never lists the B·k·B triplets. PML has no LMNN; tests use a Python loop.
    """

    tuple_kind = None

    def __init__(
        self,
        k: int = 3,
        push_weight: float = 0.5,
        margin: float = 1.0,
        distance: Distance | None = None,
    ) -> None:
        super().__init__(distance if distance is not None else SquaredEuclideanDistance())
        if k < 1:
            raise ValueError("k must be at least 1")
        self.k = k
        self.push_weight = push_weight
        self.margin = margin

    def compute(
        self,
        embeddings: Tensor,
        labels: Tensor,
        mined: Mined | None = None,
        memory: References | None = None,
    ) -> LossOutput:
        if mined is not None:
            raise ValueError("LMNNLoss takes no miner: it picks its own targets and impostors")
        mat, pos, neg = compare(self.distance, embeddings, labels, memory)
        dist = self.distance.as_distance(mat)
        nearest, cols = sort_rows(torch.where(pos, dist.detach(), math.inf))
        k = min(self.k, pos.shape[1])
        targets = torch.zeros_like(pos).scatter_(1, cols[:, :k], nearest[:, :k] < math.inf)
        num_targets = int(targets.sum())
        if num_targets == 0:
            return LossOutput(zero_loss(embeddings), 0, 0)
        pull = torch.where(targets, dist, 0.0).sum()
        push = windowed_hinge_sum(dist, TripletSelection(targets, neg), self.margin)
        push_loss = with_gradient(dist, push.total, push.weight)
        loss = ((1 - self.push_weight) * pull + self.push_weight * push_loss) / num_targets
        return LossOutput(loss, push.num_tuples, push.num_active)
