"""Multi-similarity loss (Wang et al. 2019), PML's MultiSimilarityLoss."""

from __future__ import annotations

import torch
from torch import Tensor

from dml.distances import CosineSimilarity, Distance
from dml.losses.base import LossOutput, masked_logsumexp
from dml.losses.pair_loss import PairCounts, PairLoss
from dml.tuples import Mined, pair_counts


class MultiSimilarityLoss(PairLoss):
    """Per anchor, soft-max weighted pulls of its positives and pushes of its negatives.

    (1/α)·log(1 + Σₚ e^{−α(s−base)}) + (1/β)·log(1 + Σₙ e^{β(s−base)}), averaged over the
    batch anchors (those without pairs count as 0, as in PML). The weighting looks at
    each pair relative to its neighbours, so hard pairs dominate without a hard cut.
    Mined pairs only say which pairs exist: repeats count once, as PML's mask does.
    Equals PML's MultiSimilarityLoss in value and gradient.
    """

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        distance: Distance | None = None,
    ) -> None:
        super().__init__(distance if distance is not None else CosineSimilarity())
        self.alpha = alpha
        self.beta = beta
        self.base = base

    def pair_counts(
        self, mined: Mined | None, pos: Tensor, neg: Tensor, dtype: torch.dtype
    ) -> PairCounts:
        """Which pairs were mined, each once: PML's multi-similarity reads a mask."""
        if mined is None:
            return PairCounts(pos, neg)
        pos_count, neg_count = pair_counts(mined, pos, neg)
        return PairCounts(pos_count > 0, neg_count > 0)

    def score_pairs(self, mat: Tensor, counts: PairCounts, num_tuples: int) -> LossOutput:
        pos_mask, neg_mask = counts
        pull = self.alpha * self.distance.margin_violation(mat, self.base)
        push = self.beta * self.distance.margin_violation(self.base, mat)
        per_anchor = masked_logsumexp(pull, pos_mask, add_one=True) / self.alpha
        per_anchor = per_anchor + masked_logsumexp(push, neg_mask, add_one=True) / self.beta
        return LossOutput(per_anchor.mean(), num_tuples, num_tuples)
