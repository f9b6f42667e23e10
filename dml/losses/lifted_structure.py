"""Lifted structured loss (Oh Song et al. 2016), PML's LiftedStructureLoss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dml.distances import Distance
from dml.losses.base import LossOutput, masked_logsumexp
from dml.losses.pair_loss import PairCounts, PairLoss


class LiftedStructureLoss(PairLoss):
    """Each positive pair (i, j) against every negative of either end, softly.

    ½·max(0, log Σ e^{neg_margin − d(·,n)} + d(i,j) − pos_margin)², where the sum runs over
    the negative pairs anchored at i or at j, averaged over positive pairs. Lifting the
    batch to all pairs gives each positive pair many negatives at the cost of one B×R
    matrix. Equals PML's LiftedStructureLoss (value and gradient), with its weighting of
    repeated mined pairs; PML returns 0 when every mined list has at most one pair, dml
    scores such a batch.
    """

    against_negatives = True

    def __init__(
        self, neg_margin: float = 1.0, pos_margin: float = 0.0, distance: Distance | None = None
    ) -> None:
        super().__init__(distance)
        self.neg_margin = neg_margin
        self.pos_margin = pos_margin

    def score_pairs(self, mat: Tensor, counts: PairCounts, num_tuples: int) -> LossOutput:
        pos_count, neg_count = counts
        push = self.distance.margin_violation(self.neg_margin, mat)
        has_neg = neg_count.sum(1) > 0
        lowest = torch.finfo(mat.dtype).min
        row = torch.where(has_neg, masked_logsumexp(push, neg_count), lowest)
        # References beyond the batch (memory) anchor no negative pairs.
        ref = F.pad(row, (0, mat.shape[1] - len(row)), value=lowest)
        either = torch.logaddexp(row.unsqueeze(1), ref.unsqueeze(0))
        either = torch.where(has_neg.unsqueeze(1) | (ref > lowest).unsqueeze(0), either, 0.0)
        hinge = F.relu(either + self.distance.margin_violation(mat, self.pos_margin))
        per_pair = 0.5 * hinge * hinge
        num_active = int((pos_count * (per_pair > 0)).sum())
        return LossOutput((pos_count * per_pair).sum() / num_tuples, num_tuples, num_active)
