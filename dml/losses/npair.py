"""N-pair loss (Sohn 2016), PML's NPairsLoss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dml.distances import Distance, DotProductSimilarity, References
from dml.losses.base import EmbeddingLoss, LossOutput, zero_loss
from dml.tuples import Mined, all_pairs, to_pairs


class NPairLoss(EmbeddingLoss):
    """One (anchor, positive) pair per class; each anchor must pick its own positive
    among all the pairs' positives (softmax cross-entropy over their similarities).

    The pairs are the first positive pair of each label in the batch (or in the mined
    pairs), exactly as PML chooses them, so other classes' positives serve as the N−1
    negatives. The default raw dot product lets the loss see embedding norms, as Sohn's
    formulation (with its norm regulariser left to the user) does. Equals PML's NPairsLoss.
    Cross-batch memory does not apply: the negatives are the other pairs' positives.
    """

    tuple_kind = "pairs"
    supports_memory = False

    def __init__(self, distance: Distance | None = None) -> None:
        super().__init__(distance if distance is not None else DotProductSimilarity())

    def compute(
        self,
        embeddings: Tensor,
        labels: Tensor,
        mined: Mined | None = None,
        memory: References | None = None,
    ) -> LossOutput:
        if memory is not None:
            raise ValueError("NPairLoss takes no cross-batch memory")
        a, p, _, _ = all_pairs(labels) if mined is None else to_pairs(mined)
        if len(a) == 0:
            return LossOutput(zero_loss(embeddings), 0, 0)
        classes, first_of = torch.unique(labels[a], return_inverse=True)
        position = torch.arange(len(a), device=a.device)
        first = torch.full((len(classes),), len(a), device=a.device, dtype=torch.long)
        first = first.scatter_reduce(0, first_of, position, reduce="amin")
        anchors, positives = a[first], p[first]
        scores = self.distance.pairwise(embeddings[anchors], embeddings[positives])
        logits = -self.distance.as_distance(scores)
        targets = torch.arange(len(first), device=a.device)
        loss = F.cross_entropy(logits, targets)
        return LossOutput(loss, len(first), len(first))
