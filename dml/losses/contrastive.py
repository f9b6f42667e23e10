"""Contrastive loss (Hadsell, Chopra & LeCun 2006), with PML's variant as an option."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dml.distances import Distance, References, compare
from dml.losses.base import EmbeddingLoss, LossOutput, with_gradient, zero_loss
from dml.tuples import Mined, pair_counts


class ContrastiveLoss(EmbeddingLoss):
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

    tuple_kind = "pairs"
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

    def compute(
        self,
        embeddings: Tensor,
        labels: Tensor,
        mined: Mined | None = None,
        memory: References | None = None,
    ) -> LossOutput:
        mat, pos, neg = compare(self.distance, embeddings, labels, memory)
        flat = mat.detach()
        # With no miner the counts are the masks themselves: bool passes are 4x cheaper.
        pos_count, neg_count = (
            (pos, neg) if mined is None else pair_counts(mined, pos, neg, mat.dtype)
        )
        num_tuples = int(pos_count.sum() + neg_count.sum())
        if num_tuples == 0:
            return LossOutput(zero_loss(embeddings), 0, 0)
        # How far each pair is on the wrong side of its margin, in units of the matrix.
        pos_excess = self.distance.margin_violation(flat, self.pos_margin)
        neg_excess = self.distance.margin_violation(self.neg_margin, flat)
        squared = self.form == "hadsell"
        pos_on, pos_weighted, pos_sum = _active(pos_count, pos_excess, squared)
        neg_on, neg_weighted, neg_sum = _active(neg_count, neg_excess, squared)
        num_pos_on, num_neg_on = float(pos_on.sum()), float(neg_on.sum())
        if self.form == "hadsell":
            # ½e² per pair, one mean over all pairs; d(½e²)/de = e.
            value = 0.5 * (pos_sum + neg_sum) / num_tuples
            slope = (pos_weighted - neg_weighted) / num_tuples
        else:
            # e per pair, a mean over the active pairs of each side, the two summed.
            value = pos_sum / max(num_pos_on, 1.0) + neg_sum / max(num_neg_on, 1.0)
            slope = pos_on / max(num_pos_on, 1.0) - neg_on / max(num_neg_on, 1.0)
        if self.distance.is_similarity:  # excess grows as the similarity falls
            slope = -slope
        loss = with_gradient(mat, value, slope)
        return LossOutput(loss, num_tuples, int(num_pos_on + num_neg_on))


def _active(count: Tensor, excess: Tensor, squared: bool) -> tuple[Tensor, Tensor, Tensor]:
    """One side's pairs: how often each counts where its margin is violated (0 elsewhere),
    that times the violation e, and the summed loss Σ count·e (or Σ count·e², squared)."""
    violated = excess > 0
    if count.dtype == torch.bool:
        on = (count & violated).to(excess.dtype)
    else:
        on = torch.where(violated, count, 0.0)
    weighted = on * excess
    return on, weighted, (weighted * excess if squared else weighted).sum()
