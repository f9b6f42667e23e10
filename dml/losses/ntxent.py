"""NT-Xent / InfoNCE (Chen et al. SimCLR; van den Oord et al.), PML's NTXentLoss."""

from __future__ import annotations

import torch
from torch import Tensor

from dml.distances import CosineSimilarity, Distance
from dml.losses.base import LossOutput, masked_logsumexp
from dml.losses.pair_loss import PairCounts, PairLoss


class NTXentLoss(PairLoss):
    """Each positive pair classified against its anchor's negatives by softmax.

    −log(e^{s(a,p)/τ} / (e^{s(a,p)/τ} + Σₙ e^{s(a,n)/τ})), averaged over positive pairs; a
    distance enters as s = −d. A low temperature τ concentrates the gradient on the
    hardest negatives. Equals PML's NTXentLoss in value and gradient (PML adds the
    smallest float inside the log, which changes nothing measurable).
    """

    against_negatives = True

    def __init__(self, temperature: float = 0.07, distance: Distance | None = None) -> None:
        super().__init__(distance if distance is not None else CosineSimilarity())
        self.temperature = temperature

    def score_pairs(self, mat: Tensor, counts: PairCounts, num_tuples: int) -> LossOutput:
        pos_count, neg_count = counts
        logits = -self.distance.as_distance(mat) / self.temperature
        negatives = torch.where(
            neg_count.sum(1) > 0,
            masked_logsumexp(logits, neg_count),
            torch.finfo(mat.dtype).min,
        )
        per_pair = torch.logaddexp(logits, negatives.unsqueeze(1)) - logits
        return LossOutput((pos_count * per_pair).sum() / num_tuples, num_tuples, num_tuples)
