"""Semi-hard triplets (Schroff et al., FaceNet): PML TripletMarginMiner, type "semihard"."""

from __future__ import annotations

from torch import Tensor

from dml.distances import Distance, References
from dml.miners.base import Miner
from dml.tuples import TripletSelection


class SemiHardMiner(Miner):
    """Triplets whose negative is farther than the positive but inside the margin.

    d(a,p) < d(a,n) <= d(a,p) + margin: these still violate the margin, yet skip the
    hardest negatives that make early training collapse. The bounds are PML's (strict
    below, inclusive above) so the selection is the same set.
    """

    def __init__(self, margin: float = 0.2, distance: Distance | None = None) -> None:
        super().__init__(distance)
        self.margin = margin

    def mine(
        self, embeddings: Tensor, labels: Tensor, memory: References | None = None
    ) -> TripletSelection:
        dist, pos, neg = self.compare(embeddings, labels, memory)
        return TripletSelection(pos, neg, dist, low=0.0, high=self.margin)
