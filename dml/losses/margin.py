"""Margin loss (Wu et al., "Sampling matters in deep embedding learning"), PML's MarginLoss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dml.distances import Distance, References, compare
from dml.losses.base import EmbeddingLoss, LossOutput, check_labels_fit, zero_loss
from dml.tuples import Mined, Pairs, TripletSelection, pair_counts, to_triplets


class MarginLoss(EmbeddingLoss):
    """Positives pulled inside β − margin, negatives pushed beyond β + margin, per triplet.

    Each triplet pays max(0, d(a,p) − β + margin) + max(0, β − d(a,n) + margin); the sum
    is divided by the number of non-zero terms, plus ν·β (Wu et al.'s β regulariser).
    β is learnable by default (``learn_beta``), one per class when ``num_classes`` is
    given, so the module optimises it with ``lr`` (None: the optimizer's rate). Equals
    PML's MarginLoss (DivisorReducer) in value and gradient, β's included.

    A pair's two hinges do not interact, so the loss only needs how many triplets use each
    (a, p) and each (a, n) pair: with all triplets at B = 1024 that is a B×B count matrix,
    not seven million triplets.
    """

    tuple_kind = "triplets"

    def __init__(
        self,
        margin: float = 0.2,
        beta: float = 1.2,
        nu: float = 0.0,
        learn_beta: bool = True,
        num_classes: int | None = None,
        lr: float | None = None,
        distance: Distance | None = None,
    ) -> None:
        super().__init__(distance)
        self.margin = margin
        self.nu = nu
        self.lr = lr
        initial = torch.full((num_classes or 1,), float(beta))
        self.beta = nn.Parameter(initial, requires_grad=learn_beta)

    def compute(
        self,
        embeddings: Tensor,
        labels: Tensor,
        mined: Mined | None = None,
        memory: References | None = None,
    ) -> LossOutput:
        mat, pos, neg = compare(self.distance, embeddings, labels, memory)
        if mined is None:
            mined = TripletSelection(pos, neg)
        elif isinstance(mined, Pairs) or len(mined) == 4:
            mined = to_triplets(mined)
        pos_count, neg_count = pair_counts(mined, pos, neg, mat.dtype)
        # Each triplet contributes two terms, its (a, p) and its (a, n) hinge.
        num_tuples = int(pos_count.sum() + neg_count.sum())
        if num_tuples == 0:
            return LossOutput(zero_loss(embeddings) + 0.0 * self.beta.sum(), 0, 0)
        beta = self.beta.to(mat.dtype)
        if len(beta) > 1:
            check_labels_fit(labels, len(beta), "MarginLoss with one beta per class")
            beta = beta[labels]
        beta = beta.expand(len(labels)).unsqueeze(1)
        pos_loss = F.relu(self.distance.margin_violation(mat, beta) + self.margin)
        neg_loss = F.relu(self.distance.margin_violation(beta, mat) + self.margin)
        divisor = (pos_count * (pos_loss > 0)).sum() + (neg_count * (neg_loss > 0)).sum()
        total = (pos_count * pos_loss).sum() + (neg_count * neg_loss).sum()
        loss = total / divisor if divisor > 0 else zero_loss(embeddings)
        if self.beta.requires_grad:
            loss = loss + self._beta_penalty(beta.squeeze(1), pos_count.sum(1), divisor)
        return LossOutput(loss, num_tuples, int(divisor))

    def _beta_penalty(
        self, anchor_beta: Tensor, triplets_per_anchor: Tensor, divisor: Tensor
    ) -> Tensor:
        """ν·β, averaged like PML: a shared β counts once, per-class βs per triplet."""
        if len(self.beta) == 1:
            return self.nu * self.beta[0].to(anchor_beta.dtype)
        if divisor == 0:
            return 0.0 * anchor_beta.sum()
        return self.nu * (anchor_beta * triplets_per_anchor).sum() / divisor
