"""Contrastive loss (Hadsell, Chopra & LeCun 2006), with PML's variant as an option."""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

from dml.distances import Distance
from dml.losses.base import LossOutput, with_gradient
from dml.losses.pair_loss import PairCounts, PairLoss


class ContrastiveLoss(PairLoss):
    """Similar pairs are pulled inside ``pos_margin``, dissimilar ones pushed past ``neg_margin``.

    ``form="hadsell"`` (default) is the paper's loss: a similar pair pays
    ½·max(0, d − pos_margin)² and a dissimilar pair ½·max(0, neg_margin − d)², averaged
    over all pairs together (with pos_margin = 0 this is exactly ½d² and ½max(0, m − d)²).
    The square makes the pull vanish smoothly at the margin.

    ``form="pml"`` is pytorch-metric-learning's ContrastiveLoss: unsquared hinges
    max(0, d − pos_margin) and max(0, neg_margin − d), each side averaged over its pairs
    with a positive loss (AvgNonZeroReducer), and the two averages summed. It equals PML's
    value and gradient, except that PML returns 0 whenever every mined index list holds at
    most one element; here such a batch is scored normally.

    For a similarity (cosine) the inequalities flip: similar pairs are pulled above
    ``pos_margin``, dissimilar ones pushed below ``neg_margin``, as in PML.
    """

    scores_pairs_alone = True

    def __init__(
        self,
        pos_margin: float = 0.0,
        neg_margin: float = 1.0,
        form: Literal["hadsell", "pml"] = "hadsell",
        distance: Distance | None = None,
    ) -> None:
        super().__init__(distance)
        if form not in ("hadsell", "pml"):
            raise ValueError(f"form must be 'hadsell' or 'pml', not {form!r}")
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin
        self.form = form

    def score_pairs(self, mat: Tensor, counts: PairCounts, num_tuples: int) -> LossOutput:
        flat = mat.detach()
        pos_count, neg_count = counts
        squared = self.form == "hadsell"
        # How far each pair is on the wrong side of its margin, in units of the matrix.
        pos_side = _side(pos_count, self.distance.margin_violation(flat, self.pos_margin), squared)
        neg_side = _side(neg_count, self.distance.margin_violation(self.neg_margin, flat), squared)
        # The loss grows with the excess; the excess grows as a similarity falls.
        sign = -1.0 if self.distance.is_similarity else 1.0
        if self.form == "hadsell":
            # ½e² per pair, one mean over all pairs; d(½e²)/de = e.
            value = 0.5 * (pos_side.total + neg_side.total) / num_tuples
            pos_scale = neg_scale = sign / num_tuples
            pos_slope, neg_slope = pos_side.weighted, neg_side.weighted
        else:
            # e per pair, a mean over the active pairs of each side, the two summed.
            value = pos_side.total / max(pos_side.num_on, 1.0) + neg_side.total / max(
                neg_side.num_on, 1.0
            )
            pos_scale = sign / max(pos_side.num_on, 1.0)
            neg_scale = sign / max(neg_side.num_on, 1.0)
            pos_slope, neg_slope = pos_side.on(), neg_side.on()
        # Both slopes are fresh B×R tensors of this call: combine them in place.
        slope = pos_slope.mul_(pos_scale).sub_(neg_slope, alpha=neg_scale)
        loss = with_gradient(mat, value, slope)
        return LossOutput(loss, num_tuples, int(pos_side.num_on + neg_side.num_on))


class _Side(NamedTuple):
    """One side's pairs: ``weighted`` = count·e⁺ (e⁺ = max(0, e), e the margin violation),
    ``num_on`` = Σ count over violated pairs, ``total`` = Σ count·e⁺ (or Σ count·e⁺²)."""

    weighted: Tensor
    count: Tensor
    num_on: float
    total: Tensor

    def on(self) -> Tensor:
        """count where the margin is violated, 0 elsewhere; overwrites ``weighted`` when
        the count is a mask (0 or 1), so call it only once ``weighted`` is no longer needed."""
        if self.count.dtype == torch.bool:
            return self.weighted.sign_()
        return torch.where(self.weighted > 0, self.count, 0.0)


def _side(count: Tensor, excess: Tensor, squared: bool) -> _Side:
    """Works in place on ``excess`` (a fresh B×R tensor): beyond the distance kernel, the
    loss's time is its passes over B×R matrices and their allocation, so it makes few."""
    plus = excess.clamp_min_(0)
    if count.dtype == torch.bool:
        # A count of 0 or 1: count·e⁺² is (count·e⁺)², and a pair is on where count·e⁺ > 0.
        weighted = plus.mul_(count)
        values = weighted.reshape(-1)
        total = torch.dot(values, values) if squared else values.sum()
        return _Side(weighted, count, float(torch.count_nonzero(values)), total)
    weighted = plus * count
    total = torch.dot(weighted.reshape(-1), plus.reshape(-1)) if squared else weighted.sum()
    num_on = float(torch.where(weighted > 0, count, 0.0).sum())
    return _Side(weighted, count, num_on, total)
