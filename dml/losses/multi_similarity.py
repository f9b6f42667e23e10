"""Multi-similarity loss (Wang et al. 2019), PML's MultiSimilarityLoss."""

from __future__ import annotations

from torch import Tensor

from dml.distances import CosineSimilarity, Distance, References, compare
from dml.losses.base import EmbeddingLoss, LossOutput, masked_logsumexp, zero_loss
from dml.tuples import Mined, pair_counts


class MultiSimilarityLoss(EmbeddingLoss):
    """Per anchor, soft-max weighted pulls of its positives and pushes of its negatives.

    (1/α)·log(1 + Σₚ e^{−α(s−base)}) + (1/β)·log(1 + Σₙ e^{β(s−base)}), averaged over the
    batch anchors (those without pairs count as 0, as in PML). The weighting looks at
    each pair relative to its neighbours, so hard pairs dominate without a hard cut.
    Mined pairs only say which pairs exist: repeats count once, as PML's mask does.
    Equals PML's MultiSimilarityLoss in value and gradient.
    """

    tuple_kind = "pairs"

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

    def compute(
        self,
        embeddings: Tensor,
        labels: Tensor,
        mined: Mined | None = None,
        memory: References | None = None,
    ) -> LossOutput:
        mat, pos, neg = compare(self.distance, embeddings, labels, memory)
        if mined is None:
            pos_mask, neg_mask = pos.to(mat.dtype), neg.to(mat.dtype)
        else:
            pos_count, neg_count = pair_counts(mined, pos, neg)
            pos_mask, neg_mask = (pos_count > 0).to(mat.dtype), (neg_count > 0).to(mat.dtype)
        num_tuples = int(pos_mask.sum() + neg_mask.sum())
        if num_tuples == 0:
            return LossOutput(zero_loss(embeddings), 0, 0)
        pull = self.alpha * self.distance.margin_violation(mat, self.base)
        push = self.beta * self.distance.margin_violation(self.base, mat)
        per_anchor = masked_logsumexp(pull, pos_mask, add_one=True) / self.alpha
        per_anchor = per_anchor + masked_logsumexp(push, neg_mask, add_one=True) / self.beta
        return LossOutput(per_anchor.mean(), num_tuples, num_tuples)
