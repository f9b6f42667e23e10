"""Random valid triplets: the unmined baseline at a fixed budget per anchor."""

from __future__ import annotations

import torch
from torch import Tensor

from dml.distances import Distance, References, positive_negative_masks
from dml.miners.base import Miner
from dml.tuples import Triplets


class RandomTripletMiner(Miner):
    """``triplets_per_anchor`` triplets per anchor, positive and negative drawn uniformly.

    Draws are with replacement, as in PML's random triplets, so an anchor with a single
    positive still yields its full budget. Anchors without a positive or a negative yield
    none. Uses torch's global generator, which Lightning's ``seed_everything`` seeds.
    """

    def __init__(self, triplets_per_anchor: int = 8, distance: Distance | None = None) -> None:
        super().__init__(distance)
        if triplets_per_anchor < 1:
            raise ValueError("triplets_per_anchor must be at least 1")
        self.triplets_per_anchor = triplets_per_anchor

    def mine(
        self, embeddings: Tensor, labels: Tensor, memory: References | None = None
    ) -> Triplets:
        pos, neg = positive_negative_masks(labels, None if memory is None else memory.labels)
        anchor = (pos.any(1) & neg.any(1)).nonzero(as_tuple=True)[0]
        k = self.triplets_per_anchor
        if len(anchor) == 0:
            empty = torch.empty(0, dtype=torch.long, device=labels.device)
            return Triplets(empty, empty.clone(), empty.clone())
        positive = torch.multinomial(pos[anchor].float(), k, replacement=True).flatten()
        negative = torch.multinomial(neg[anchor].float(), k, replacement=True).flatten()
        return Triplets(anchor.repeat_interleave(k), positive, negative)
