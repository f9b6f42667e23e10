"""Neighbourhood Components Analysis (Goldberger et al. 2004), PML's NCALoss."""

from __future__ import annotations

import torch
from torch import Tensor

from dml.distances import Distance, References, SquaredEuclideanDistance, compare
from dml.losses.base import EmbeddingLoss, LossOutput, masked_logsumexp, zero_loss
from dml.tuples import Mined


class NCALoss(EmbeddingLoss):
    """Maximises leave-one-out soft nearest-neighbour accuracy.

    Each sample picks a neighbour j ≠ i with probability ∝ exp(−scale·d(i,j)); the loss
    is −log of the probability that the neighbour shares its label, averaged over
    samples that have a same-label neighbour. It is the smooth version of what a KNN
    classifier scores, so the learned metric is directly the one KNN wants. Equals PML's
    NCALoss (squared Euclidean by default, like PML), computed in log space: where PML
    drops a sample whose probability underflows to 0, dml keeps its large finite loss.
    """

    tuple_kind = None

    def __init__(self, softmax_scale: float = 1.0, distance: Distance | None = None) -> None:
        super().__init__(distance if distance is not None else SquaredEuclideanDistance())
        self.softmax_scale = softmax_scale

    def compute(
        self,
        embeddings: Tensor,
        labels: Tensor,
        mined: Mined | None = None,
        memory: References | None = None,
    ) -> LossOutput:
        if mined is not None:
            raise ValueError("NCALoss takes no miner")
        mat, pos, neg = compare(self.distance, embeddings, labels, memory)
        logits = -self.softmax_scale * self.distance.as_distance(mat)
        has_pos = pos.any(1)
        num_anchors = int(has_pos.sum())
        if num_anchors == 0:
            return LossOutput(zero_loss(embeddings), 0, 0)
        others = (pos | neg).to(mat.dtype)
        log_same = masked_logsumexp(logits, pos.to(mat.dtype))
        per_anchor = masked_logsumexp(logits, others) - log_same
        loss = torch.where(has_pos, per_anchor, 0.0).sum() / num_anchors
        return LossOutput(loss, num_anchors, num_anchors)
