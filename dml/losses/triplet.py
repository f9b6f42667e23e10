"""Triplet margin loss (Weinberger & Saul; Schroff et al.), PML's TripletMarginLoss.

Also home of the fused triplet sums that LMNN reuses for its impostor term.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from dml.distances import Distance, References, compare
from dml.losses.base import (
    EmbeddingLoss,
    LossOutput,
    mean_of_nonzero,
    with_gradient,
    zero_loss,
)
from dml.tuples import Mined, TripletSelection, to_triplets


class TripletLoss(EmbeddingLoss):
    """max(0, d(a,p) − d(a,n) + margin), averaged over the triplets whose loss is positive.

    That average is PML's default AvgNonZeroReducer, so values and gradients equal
    ``TripletMarginLoss(margin, smooth_loss=soft)``. ``soft`` replaces the hinge by
    softplus (log(1 + exp(·))), which never reaches zero and so keeps pushing easy triplets.

    With no miner, or a rule-based one (all, semi-hard, easy), the triplets are never
    listed: see :func:`windowed_hinge_sum` and :func:`chunked_triplet_sum`.
    """

    tuple_kind = "triplets"

    def __init__(
        self, margin: float = 0.2, soft: bool = False, distance: Distance | None = None
    ) -> None:
        super().__init__(distance)
        self.margin = margin
        self.soft = soft

    @property
    def collapsed_value(self) -> float:
        """With every distance equal, each triplet scores its margin (softplus of it)."""
        return math.log1p(math.exp(self.margin)) if self.soft else self.margin

    def compute(
        self,
        embeddings: Tensor,
        labels: Tensor,
        mined: Mined | None = None,
        memory: References | None = None,
    ) -> LossOutput:
        mat, pos, neg = compare(self.distance, embeddings, labels, memory)
        dist = self.distance.as_distance(mat)
        if mined is None:
            mined = TripletSelection(pos, neg)
        if isinstance(mined, TripletSelection):
            if not self.soft and mined.measured_on(dist):
                fused = windowed_hinge_sum(dist, mined, self.margin)
            else:
                fused = chunked_triplet_sum(dist, mined, self.margin, self.soft)
            if fused.num_active == 0:
                return LossOutput(zero_loss(embeddings), fused.num_tuples, 0)
            loss = with_gradient(dist, fused.total, fused.weight) / fused.num_active
            return LossOutput(loss, fused.num_tuples, fused.num_active)
        a, p, n = to_triplets(mined)
        violation = (dist[a, p] - dist[a, n]) + self.margin
        per_triplet = F.softplus(violation) if self.soft else F.relu(violation)
        loss, num_active = mean_of_nonzero(per_triplet, embeddings)
        return LossOutput(loss, len(a), num_active)


class FusedSum(NamedTuple):
    """A sum of per-triplet losses over a selection, with its gradient as a matrix.

    ``weight[a, r]`` is d(total)/d(dist[a, r]); ``num_active`` counts the triplets with a
    positive loss (the AvgNonZero denominator).
    """

    total: Tensor
    weight: Tensor
    num_tuples: int
    num_active: int


def windowed_hinge_sum(dist: Tensor, selection: TripletSelection, margin: float) -> FusedSum:
    """Σ max(0, d(a,p) − d(a,n) + margin) over a selection, in O(B·R·log R).

    For slot (a, p) the active negatives are those below d(a,p) + margin (and inside the
    selection's bounds), so its summed loss is count·(d(a,p) + margin) minus the sum of
    their distances, and each negative's gradient weight is minus the number of slots
    selecting it: all three come from :meth:`TripletSelection.windows`. No tensor has
    one entry per triplet.
    """
    flat = dist.detach()
    cols, _ = selection.slots
    windows = selection.windows(flat, below=margin)
    ap = torch.gather(flat, 1, cols).double()
    total = (windows.count * (ap + margin)).sum() - windows.total.sum()
    weight = torch.zeros_like(flat).scatter_add_(1, cols, windows.count.to(flat.dtype))
    weight -= windows.coverage
    return FusedSum(total, weight, windows.num_selected, int(windows.count.sum()))


def chunked_triplet_sum(
    dist: Tensor, selection: TripletSelection, margin: float, soft: bool
) -> FusedSum:
    """The same sum for any per-triplet form, on anchor chunks of the B×K×R block.

    Serves softplus (no prefix-sum form) and selections made on another matrix than the
    loss's. Memory is bounded by the chunk size, never B³.
    """
    cols, _ = selection.slots
    flat = dist.detach()
    weight = torch.zeros_like(flat)
    total = torch.zeros((), dtype=torch.float64, device=flat.device)
    num_tuples = num_active = 0
    for rows in selection.chunks():
        selected = selection.mask(rows)
        d = flat[rows]
        violation = (torch.gather(d, 1, cols[rows]).unsqueeze(2) - d.unsqueeze(1)) + margin
        if soft:
            value = F.softplus(violation)
            keep = selected & (value > 0)
            slope = torch.where(keep, torch.sigmoid(violation), 0.0)
        else:
            value = violation
            keep = selected & (violation > 0)
            slope = keep.to(flat.dtype)
        total += torch.where(keep, value, 0.0).sum(dtype=torch.float64)
        num_tuples += int(selected.sum())
        num_active += int(keep.sum())
        weight[rows] = -slope.sum(1)
        weight[rows].scatter_add_(1, cols[rows], slope.sum(2))
    return FusedSum(total, weight, num_tuples, num_active)
