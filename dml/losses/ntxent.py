"""NT-Xent / InfoNCE (Chen et al. SimCLR; van den Oord et al.), PML's NTXentLoss."""

from __future__ import annotations

import torch
from torch import Tensor

from dml.distances import CosineSimilarity, Distance, References, compare
from dml.losses.base import EmbeddingLoss, LossOutput, masked_logsumexp, zero_loss
from dml.tuples import Mined, pair_counts


class NTXentLoss(EmbeddingLoss):
    """Each positive pair classified against its anchor's negatives by softmax.

    −log(e^{s(a,p)/τ} / (e^{s(a,p)/τ} + Σₙ e^{s(a,n)/τ})), averaged over positive pairs; a
    distance enters as s = −d. A low temperature τ concentrates the gradient on the
    hardest negatives. Equals PML's NTXentLoss in value and gradient (PML adds the
    smallest float inside the log, which changes nothing measurable).
    """

    tuple_kind = "pairs"

    def __init__(self, temperature: float = 0.07, distance: Distance | None = None) -> None:
        super().__init__(distance if distance is not None else CosineSimilarity())
        self.temperature = temperature

    def compute(
        self,
        embeddings: Tensor,
        labels: Tensor,
        mined: Mined | None = None,
        memory: References | None = None,
    ) -> LossOutput:
        mat, pos, neg = compare(self.distance, embeddings, labels, memory)
        pos_count, neg_count = pair_counts(mined, pos, neg, mat.dtype)
        num_pos = int(pos_count.sum())
        if num_pos == 0 or neg_count.sum() == 0:
            return LossOutput(zero_loss(embeddings), num_pos, 0)
        logits = -self.distance.as_distance(mat) / self.temperature
        negatives = torch.where(
            neg_count.sum(1) > 0,
            masked_logsumexp(logits, neg_count),
            torch.finfo(mat.dtype).min,
        )
        per_pair = torch.logaddexp(logits, negatives.unsqueeze(1)) - logits
        return LossOutput((pos_count * per_pair).sum() / num_pos, num_pos, num_pos)
