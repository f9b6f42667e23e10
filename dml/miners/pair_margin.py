"""Pairs that violate their margin, PML's PairMarginMiner."""

from __future__ import annotations

from torch import Tensor

from dml.distances import Distance, References
from dml.miners.base import Miner
from dml.tuples import Pairs


class PairMarginMiner(Miner):
    """Positive pairs farther than ``pos_margin`` and negative pairs closer than ``neg_margin``.

    These are exactly the pairs a contrastive loss with the same margins would not score
    zero on, so it spends no compute on the rest. For a similarity the tests flip
    (positives below ``pos_margin``, negatives above ``neg_margin``). Same pairs, in the
    same order, as PML.
    """

    output = "pairs"

    def __init__(
        self, pos_margin: float = 0.2, neg_margin: float = 0.8, distance: Distance | None = None
    ) -> None:
        super().__init__(distance)
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin

    def mine(self, embeddings: Tensor, labels: Tensor, memory: References | None = None) -> Pairs:
        dist, pos, neg = self.compare(embeddings, labels, memory)
        pos_margin, neg_margin = self.distance.as_distance(
            dist.new_tensor([self.pos_margin, self.neg_margin])
        )
        a1, p = (pos & (dist > pos_margin)).nonzero(as_tuple=True)
        a2, n = (neg & (dist < neg_margin)).nonzero(as_tuple=True)
        return Pairs(a1, p, a2, n)
