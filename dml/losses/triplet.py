"""Triplet margin loss (Weinberger & Saul; Schroff et al.), PML's TripletMarginLoss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dml.distances import Distance, References, compare
from dml.losses.base import EmbeddingLoss, LossOutput, mean_of_nonzero, zero_loss
from dml.tuples import Mined, TripletSelection, to_triplets


class TripletLoss(EmbeddingLoss):
    """max(0, d(a,p) − d(a,n) + margin), averaged over the triplets whose loss is positive.

    That average is PML's default AvgNonZeroReducer, so values and gradients equal
    ``TripletMarginLoss(margin, smooth_loss=soft)``. ``soft`` replaces the hinge by
    softplus (log(1 + exp(·))), which never reaches zero and so keeps pushing easy triplets.

    With no miner, or a rule-based one (all, semi-hard, easy), the triplets are never
    listed: each chunk of anchors is scored on an anchors × positives × references block
    cut from the distance matrix, and only per-pair weights (how many active triplets use
    each pair, and how strongly) leave the chunk. The loss is then a weighted sum over
    the distance matrix, whose gradient is exactly the per-triplet one.
    """

    tuple_kind = "triplets"

    def __init__(
        self, margin: float = 0.2, soft: bool = False, distance: Distance | None = None
    ) -> None:
        super().__init__(distance)
        self.margin = margin
        self.soft = soft

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
            if not self.soft and (mined.dist is None or torch.equal(mined.dist, dist.detach())):
                return self._sorted(dist, mined, embeddings)
            return self._chunked(dist, mined, embeddings)
        a, p, n = to_triplets(mined)
        violation = (dist[a, p] - dist[a, n]) + self.margin
        per_triplet = F.softplus(violation) if self.soft else F.relu(violation)
        loss, num_active = mean_of_nonzero(per_triplet, embeddings)
        return LossOutput(loss, len(a), num_active)

    def _sorted(self, dist: Tensor, selection: TripletSelection, anchor: Tensor) -> LossOutput:
        """Hinge loss from sorted negatives: O(B·R·log R), no triplet is ever touched.

        For slot (a, p) the active negatives are a run [lo, hi) of a's sorted negatives, so
        its summed loss is count·(d(a,p) + margin) minus a prefix-sum difference, and each
        negative's weight is the number of runs covering it.
        """
        flat = dist.detach()
        cols, _ = selection.slots
        window = selection.window(flat, below=self.margin)
        count = window.hi - window.lo
        num_active = int(count.sum())
        if num_active == 0:
            return LossOutput(zero_loss(anchor), window.num_selected, 0)
        ap = torch.gather(flat, 1, cols).double()
        total = (count * (ap + self.margin)).sum() - window.run_sums().sum()
        weight = window.negative_counts(flat.dtype).neg_()
        weight.scatter_add_(1, cols, count.to(flat.dtype))
        loss = _WithGradient.apply(dist, total.to(dist.dtype) / num_active, weight / num_active)
        return LossOutput(loss, window.num_selected, num_active)

    def _chunked(self, dist: Tensor, selection: TripletSelection, anchor: Tensor) -> LossOutput:
        """Any per-triplet form on anchor chunks of the anchors × positives × references block.

        Serves softplus (not a sum of prefix sums) and selections made on another matrix.
        """
        cols, _ = selection.slots
        flat = dist.detach()
        weight = torch.zeros_like(flat)
        total = torch.zeros((), dtype=torch.float64, device=flat.device)
        num_tuples = num_active = 0
        for rows in selection.chunks():
            selected = selection.mask(rows)
            d = flat[rows]
            violation = (torch.gather(d, 1, cols[rows]).unsqueeze(2) - d.unsqueeze(1)) + self.margin
            if self.soft:
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
        if num_active == 0:
            return LossOutput(zero_loss(anchor), num_tuples, 0)
        loss = _WithGradient.apply(dist, total.to(dist.dtype) / num_active, weight / num_active)
        return LossOutput(loss, num_tuples, num_active)


class _WithGradient(torch.autograd.Function):
    """``value``, whose gradient with respect to ``dist`` is ``weight`` (first order only).

    The fused passes compute the exact derivative of the summed per-triplet losses with
    respect to each distance themselves (counts for the hinge, sigmoid slopes for
    softplus), so autograd never holds a graph over millions of triplets.
    """

    @staticmethod
    def forward(ctx, dist: Tensor, value: Tensor, weight: Tensor) -> Tensor:  # noqa: ARG004
        ctx.save_for_backward(weight)
        return value.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (weight,) = ctx.saved_tensors
        return weight * grad, None, None
