"""Contrastive loss (Hadsell, Chopra & LeCun 2006), with PML's variant as an option."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from dml.distances import Distance, References, compare
from dml.losses.base import EmbeddingLoss, LossOutput, zero_loss
from dml.tuples import Mined, pair_counts


class ContrastiveLoss(EmbeddingLoss):
    """Similar pairs are pulled inside ``pos_margin``, dissimilar ones pushed past ``neg_margin``.

    ``form="hadsell"`` (default) is the paper's loss: a similar pair pays
    ½·max(0, d − pos_margin)² and a dissimilar pair ½·max(0, neg_margin − d)², averaged
    over all pairs together (with pos_margin = 0 this is exactly ½d² and ½max(0, m − d)²).
    The square makes the pull vanish smoothly at the margin.

    ``form="pml"`` is pytorch-metric-learning's ContrastiveLoss: unsquared hinges
    max(0, d − pos_margin) and max(0, neg_margin − d), each side averaged over its pairs
    with a positive loss (AvgNonZeroReducer), and the two averages summed. It equals PML's
    value and gradient, except that PML returns 0 whenever every mined index list holds at
    most one element; here such a batch is scored normally.

    For a similarity (cosine) the inequalities flip: similar pairs are pulled above
    ``pos_margin``, dissimilar ones pushed below ``neg_margin``, as in PML.
    """

    tuple_kind = "pairs"

    def __init__(
        self,
        pos_margin: float = 0.0,
        neg_margin: float = 1.0,
        form: Literal["hadsell", "pml"] = "hadsell",
        distance: Distance | None = None,
    ) -> None:
        super().__init__(distance)
        if form not in ("hadsell", "pml"):
            raise ValueError(f"form must be 'hadsell' or 'pml', not {form!r}")
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin
        self.form = form

    def compute(
        self,
        embeddings: Tensor,
        labels: Tensor,
        mined: Mined | None = None,
        memory: References | None = None,
    ) -> LossOutput:
        mat, pos, neg = compare(self.distance, embeddings, labels, memory)
        pos_count, neg_count = pair_counts(mined, pos, neg, mat.dtype)
        pos_loss = F.relu(self.distance.margin_violation(mat, self.pos_margin))
        neg_loss = F.relu(self.distance.margin_violation(self.neg_margin, mat))
        if self.form == "hadsell":
            pos_loss = 0.5 * pos_loss.square()
            neg_loss = 0.5 * neg_loss.square()
        num_tuples = int(pos_count.sum() + neg_count.sum())
        pos_active = torch.where(pos_loss > 0, pos_count, 0.0)
        neg_active = torch.where(neg_loss > 0, neg_count, 0.0)
        num_active = int(pos_active.sum() + neg_active.sum())
        if self.form == "hadsell":
            if num_tuples == 0:
                return LossOutput(zero_loss(embeddings), 0, 0)
            total = (pos_count * pos_loss).sum() + (neg_count * neg_loss).sum()
            return LossOutput(total / num_tuples, num_tuples, num_active)
        loss = _weighted_mean(pos_loss, pos_active, embeddings) + _weighted_mean(
            neg_loss, neg_active, embeddings
        )
        return LossOutput(loss, num_tuples, num_active)


def _weighted_mean(values: Tensor, weights: Tensor, anchor: Tensor) -> Tensor:
    """Mean of ``values`` counted ``weights`` times each; a graph-attached zero if none."""
    denominator = weights.sum()
    if denominator == 0:
        return zero_loss(anchor)
    return (weights * values).sum() / denominator
