"""Batch-hard mining (Hermans et al.), PML's BatchHardMiner."""

from __future__ import annotations

import math

from torch import Tensor

from dml.distances import References
from dml.miners.base import Miner
from dml.tuples import Triplets


class BatchHardMiner(Miner):
    """One triplet per anchor: its farthest positive and its closest negative.

    Anchors without a positive or without a negative are dropped. Ties go to the lowest
    index, as in PML, so the mined indices (and hence gradients) agree even on
    duplicated embeddings.
    """

    def mine(
        self, embeddings: Tensor, labels: Tensor, memory: References | None = None
    ) -> Triplets:
        dist, pos, neg = self.compare(embeddings, labels, memory)
        positive = dist.masked_fill(~pos, -math.inf).max(dim=1).indices
        negative = dist.masked_fill(~neg, math.inf).min(dim=1).indices
        anchor = (pos.any(1) & neg.any(1)).nonzero(as_tuple=True)[0]
        return Triplets(anchor, positive[anchor], negative[anchor])
