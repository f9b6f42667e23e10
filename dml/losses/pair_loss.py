"""The base of the losses that score pairs: contrastive, lifted structure, multi-similarity
and NT-Xent.

Each of them opens the same way, as pytorch-metric-learning's GenericPairLoss does: compare
the batch (and any cross-batch memory) once, count how often each pair was mined, and give
a differentiable zero when nothing is left to score. :class:`PairLoss` takes those steps,
so a subclass only scores the counted pairs of the matrix.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from dml.distances import References, compare
from dml.losses.base import EmbeddingLoss, LossOutput, zero_loss
from dml.tuples import Mined, pair_counts


class PairCounts(NamedTuple):
    """How often each (batch row, reference) pair counts as a positive and as a negative
    pair (B×R). With no miner every pair counts once and these are the boolean masks
    themselves, whose passes cost a quarter of float ones; with a miner they are the float
    multiplicities of the mined pairs, which keeps PML's weighting of repeated pairs."""

    pos: Tensor
    neg: Tensor


class PairLoss(EmbeddingLoss):
    """compare → pair counts → the empty-batch check; :meth:`score_pairs` does the rest.

    ``against_negatives``: each positive pair is scored against its anchor's negatives
    (lifted structure, NT-Xent), so a batch without a positive or without a negative
    pair scores 0, and the tuples counted are the positive pairs. Otherwise (contrastive,
    multi-similarity) every pair is a tuple and any one pair is enough to score.
    """

    tuple_kind = "pairs"
    against_negatives: ClassVar[bool] = False

    def compute(
        self,
        embeddings: Tensor,
        labels: Tensor,
        mined: Mined | None = None,
        memory: References | None = None,
    ) -> LossOutput:
        mat, pos, neg = compare(self.distance, embeddings, labels, memory)
        counts = self.pair_counts(mined, pos, neg, mat.dtype)
        num_pos, num_neg = int(counts.pos.sum()), int(counts.neg.sum())
        if self.against_negatives:
            num_tuples, empty = num_pos, num_pos == 0 or num_neg == 0
        else:
            num_tuples = num_pos + num_neg
            empty = num_tuples == 0
        if empty:
            return LossOutput(zero_loss(embeddings), num_tuples, 0)
        return self.score_pairs(mat, counts, num_tuples)

    def pair_counts(
        self, mined: Mined | None, pos: Tensor, neg: Tensor, dtype: torch.dtype
    ) -> PairCounts:
        """The batch's masks with no miner, else the multiplicity of each mined pair."""
        if mined is None:
            return PairCounts(pos, neg)
        return PairCounts(*pair_counts(mined, pos, neg, dtype))

    @abstractmethod
    def score_pairs(self, mat: Tensor, counts: PairCounts, num_tuples: int) -> LossOutput:
        """The loss of the counted pairs of ``mat`` (batch rows × references, on the
        autograd graph); ``num_tuples`` is positive."""
