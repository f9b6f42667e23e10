"""Easy triplets, PML's TripletMarginMiner(type_of_triplets="easy"): the control group."""

from __future__ import annotations

import math

from torch import Tensor

from dml.distances import Distance, References
from dml.miners.base import Miner
from dml.tuples import TripletSelection


class EasyMiner(Miner):
    """Triplets that already satisfy the margin: d(a,n) − d(a,p) > margin.

    With a triplet loss of the same margin they cost nothing and teach nothing; the miner
    exists to show that in a sweep (and feeds pair losses, which still see their pairs).
    """

    def __init__(self, margin: float = 0.2, distance: Distance | None = None) -> None:
        super().__init__(distance)
        self.margin = margin

    def mine(
        self, embeddings: Tensor, labels: Tensor, memory: References | None = None
    ) -> TripletSelection:
        dist, pos, neg = self.compare(embeddings, labels, memory)
        return TripletSelection(pos, neg, dist, low=self.margin, high=math.inf)
