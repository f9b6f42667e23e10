"""Multi-similarity mining (Wang et al. 2019), PML's MultiSimilarityMiner."""

from __future__ import annotations

import math

from torch import Tensor

from dml.distances import CosineSimilarity, Distance, References
from dml.miners.base import Miner
from dml.tuples import Pairs


class MultiSimilarityMiner(Miner):
    """Per anchor, the positives less similar than its hardest negative plus ε, and the
    negatives more similar than its hardest positive minus ε.

    Each pair is judged against the anchor's other pairs, not a fixed margin, so mining
    adapts as the embedding tightens. Same pairs as PML (listed row by row in column
    order, where PML lists them in sorted order; MS loss does not depend on order).
    """

    output = "pairs"

    def __init__(self, epsilon: float = 0.1, distance: Distance | None = None) -> None:
        super().__init__(distance if distance is not None else CosineSimilarity())
        self.epsilon = epsilon

    def mine(self, embeddings: Tensor, labels: Tensor, memory: References | None = None) -> Pairs:
        dist, pos, neg = self.compare(embeddings, labels, memory)
        closest_neg = dist.masked_fill(~neg, math.inf).min(1, keepdim=True).values
        farthest_pos = dist.masked_fill(~pos, -math.inf).max(1, keepdim=True).values
        a1, p = (pos & (dist + self.epsilon > closest_neg)).nonzero(as_tuple=True)
        a2, n = (neg & (dist - self.epsilon < farthest_pos)).nonzero(as_tuple=True)
        return Pairs(a1, p, a2, n)
