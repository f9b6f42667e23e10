"""Distance-weighted sampling (Wu et al. 2017), PML's DistanceWeightedMiner."""

from __future__ import annotations

import torch
from torch import Tensor

from dml.distances import EuclideanDistance, References, compare
from dml.miners.base import Miner
from dml.tuples import Triplets


class DistanceWeightedMiner(Miner):
    """Random triplets whose negatives are drawn with weight 1 / q(d), q the density of
    distances between random points on the unit sphere.

    Uniform negatives in high dimension all sit near √2 apart; weighting by the inverse
    density spreads the draws over all distances. ``cutoff`` floors d before weighting
    (the weight explodes near 0), and negatives at or beyond ``nonzero_loss_cutoff``
    are never drawn, since a margin loss gives them no gradient. The formula holds on
    the unit sphere, so the miner measures L2-normalised embeddings with the Euclidean
    distance, whatever the loss uses.

    Each anchor gets ``triplets_per_anchor`` triplets, or by default as many as its class
    has members in the batch (PML's choice), positives drawn uniformly. The weights are
    PML's; they are shifted by each anchor's own maximum rather than the batch's before
    exponentiating, which changes no probability but keeps an anchor from underflowing.
    """

    def __init__(
        self,
        cutoff: float = 0.5,
        nonzero_loss_cutoff: float = 1.4,
        triplets_per_anchor: int | None = None,
    ) -> None:
        super().__init__(EuclideanDistance(normalize=True))
        if triplets_per_anchor is not None and triplets_per_anchor < 1:
            raise ValueError("triplets_per_anchor must be at least 1 (or null)")
        self.cutoff = cutoff
        self.nonzero_loss_cutoff = nonzero_loss_cutoff
        self.triplets_per_anchor = triplets_per_anchor

    def weights(
        self, embeddings: Tensor, labels: Tensor, memory: References | None = None
    ) -> Tensor:
        """Each row's sampling probabilities over its negatives (rows of zeros if none)."""
        dist, _, neg = compare(self.distance, embeddings, labels, memory)
        dim = embeddings.shape[1]
        d = dist.clamp_min(self.cutoff)
        log_w = (2.0 - dim) * d.log() - ((dim - 3) / 2) * torch.log(1.0 - 0.25 * d * d)
        usable = neg & (dist < self.nonzero_loss_cutoff) & torch.isfinite(log_w)
        log_w = log_w.masked_fill(~usable, -torch.inf)
        row_max = log_w.max(1, keepdim=True).values
        w = torch.exp(log_w - torch.where(torch.isfinite(row_max), row_max, 0.0))
        return w / w.sum(1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)

    def mine(
        self, embeddings: Tensor, labels: Tensor, memory: References | None = None
    ) -> Triplets:
        _, pos, _ = compare(self.distance, embeddings, labels, memory)
        weights = self.weights(embeddings, labels, memory)
        anchor = (pos.any(1) & (weights.sum(1) > 0)).nonzero(as_tuple=True)[0]
        if len(anchor) == 0:
            empty = torch.empty(0, dtype=torch.long, device=labels.device)
            return Triplets(empty, empty.clone(), empty.clone())
        if self.triplets_per_anchor is None:
            per_anchor = pos[anchor].sum(1) + 1
        else:
            per_anchor = torch.full_like(anchor, self.triplets_per_anchor)
        k = int(per_anchor.max())
        positive = torch.multinomial(pos[anchor].to(weights.dtype), k, replacement=True)
        negative = torch.multinomial(weights[anchor], k, replacement=True)
        keep = torch.arange(k, device=anchor.device) < per_anchor.unsqueeze(1)
        return Triplets(anchor.unsqueeze(1).expand(-1, k)[keep], positive[keep], negative[keep])
