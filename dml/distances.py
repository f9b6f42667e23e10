"""Pairwise distances and label masks, injected into losses and miners.

A distance object maps two embedding matrices to a matrix of scores. For a true
distance smaller means closer; for a similarity (``is_similarity``) larger means closer.
Losses and miners stay agnostic by working on :meth:`Distance.as_distance`, the matrix
oriented so that smaller always means closer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import torch
from torch import Tensor

# Distances below this are treated as zero before the square root, so the gradient
# of sqrt at zero (infinite) never reaches the parameters.
SQRT_EPS = 1e-12


class Distance(ABC):
    """Base class: subclasses implement :meth:`pairwise` and :meth:`paired`."""

    is_similarity: bool = False

    @abstractmethod
    def pairwise(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The matrix of scores between every row of ``x`` and every row of ``y`` (or ``x``)."""

    @abstractmethod
    def paired(self, x: Tensor, y: Tensor) -> Tensor:
        """Scores between rows ``x[i]`` and ``y[i]``."""

    def margin_violation(self, closer: Tensor | float, farther: Tensor | float) -> Tensor:
        """How much ``farther`` should grow to exceed ``closer``: d(ap) − d(an) for distances.

        Either side may be a plain float (a margin), which keeps its full precision.
        """
        return farther - closer if self.is_similarity else closer - farther

    def as_distance(self, scores: Tensor) -> Tensor:
        """Scores oriented so that smaller means closer (similarities negated, exactly).

        Negation is exact in floating point, so margins computed on the result equal the
        ones PML computes with its ``is_inverted`` branches, bit for bit.
        """
        return -scores if self.is_similarity else scores

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SquaredEuclideanDistance(Distance):
    """||x − y||², computed as a matrix product (one GEMM, no B×B×D tensor).

    ``normalize`` L2-normalises both sides first, as PML's LpDistance does by default:
    proxy losses need it because their proxies are free parameters whose norm the
    module's own embedding normalisation never touches.
    """

    def __init__(self, normalize: bool = False) -> None:
        self.normalize = normalize

    def _prepare(self, x: Tensor) -> Tensor:
        return torch.nn.functional.normalize(x, dim=1) if self.normalize else x

    def pairwise(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        x = self._prepare(x)
        y = x if y is None else self._prepare(y)
        norms = (x * x).sum(1, keepdim=True) + (y * y).sum(1)
        return torch.addmm(norms, x, y.T, alpha=-2).clamp_min(0)

    def paired(self, x: Tensor, y: Tensor) -> Tensor:
        return (self._prepare(x) - self._prepare(y)).pow(2).sum(1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(normalize={self.normalize})"


class EuclideanDistance(SquaredEuclideanDistance):
    """||x − y||. The matrix is ``torch.cdist``, the kernel PML uses: it fuses the square
    root into one pass each way (about 40% less than sqrt over a GEMM result at B = 1024),
    and its gradient at zero distance is zero, not NaN."""

    def pairwise(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        x = self._prepare(x)
        return torch.cdist(x, x if y is None else self._prepare(y))

    def paired(self, x: Tensor, y: Tensor) -> Tensor:
        return safe_sqrt(super().paired(x, y))


class DotProductSimilarity(Distance):
    """The raw inner product: N-pair loss's similarity, which must see the embedding norm."""

    is_similarity = True

    def pairwise(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return x @ (x if y is None else y).T

    def paired(self, x: Tensor, y: Tensor) -> Tensor:
        return (x * y).sum(1)


class CosineSimilarity(Distance):
    is_similarity = True

    def pairwise(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        xn = torch.nn.functional.normalize(x, dim=1)
        yn = xn if y is None else torch.nn.functional.normalize(y, dim=1)
        return xn @ yn.T

    def paired(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.nn.functional.cosine_similarity(x, y, dim=1)


def safe_sqrt(sq: Tensor) -> Tensor:
    """sqrt with a zero gradient (not NaN) where the input is zero (at most SQRT_EPS)."""
    return _GuardedSqrt.apply(sq)


class _GuardedSqrt(torch.autograd.Function):
    """sqrt(x) with gradient 1 / (2·sqrt(x)); at x <= SQRT_EPS both are 0.

    Autograd's own sqrt would send an infinite gradient through zero distances (an
    embedding and its duplicate); one Function also saves the clamp and where passes.
    """

    @staticmethod
    def forward(ctx, sq: Tensor) -> Tensor:
        root = sq.clamp_min(0).sqrt_().masked_fill_(sq <= SQRT_EPS, 0.0)
        ctx.save_for_backward(root)
        return root

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (root,) = ctx.saved_tensors
        return torch.where(root > 0, grad / (2 * root), 0.0)


def same_label_mask(labels: Tensor, ref_labels: Tensor | None = None) -> Tensor:
    """Boolean matrix: entry (i, j) is True where labels agree."""
    ref_labels = labels if ref_labels is None else ref_labels
    return labels.unsqueeze(1) == ref_labels.unsqueeze(0)


def positive_negative_masks(
    labels: Tensor, ref_labels: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Masks of positive pairs (same label, not the sample itself) and negative pairs.

    The references are the batch itself followed by ``ref_labels`` (e.g. a cross-batch
    memory): column ``j < len(labels)`` is batch sample ``j``, so only that block has a
    diagonal of self-pairs to exclude.
    """
    refs = labels if ref_labels is None else torch.cat([labels, ref_labels])
    pos = same_label_mask(labels, refs)
    neg = ~pos
    pos.diagonal().fill_(False)
    return pos, neg


class References(NamedTuple):
    """Comparison targets beyond the batch, such as a cross-batch memory.

    The embeddings are detached constants: gradients flow only into the batch.
    """

    embeddings: Tensor
    labels: Tensor


class Comparison(NamedTuple):
    """A batch measured against its references (the batch, then any extra references).

    ``mat`` is B×R in the distance's own orientation; ``pos``/``neg`` are the B×R masks.
    Tuple indices that losses and miners exchange index the R columns of this layout.
    """

    mat: Tensor
    pos: Tensor
    neg: Tensor


def compare(
    distance: Distance, embeddings: Tensor, labels: Tensor, memory: References | None = None
) -> Comparison:
    """Measure the batch against itself and ``memory``: the one place that layout is built."""
    if embeddings.ndim != 2 or labels.shape != (len(embeddings),):
        raise ValueError(
            "expected embeddings of shape (batch, dim) and labels of shape (batch,), got "
            f"{tuple(embeddings.shape)} and {tuple(labels.shape)}"
        )
    if memory is None:
        mat = distance.pairwise(embeddings)
        pos, neg = positive_negative_masks(labels)
    else:
        refs = torch.cat([embeddings, memory.embeddings.detach().to(embeddings.dtype)])
        mat = distance.pairwise(embeddings, refs)
        pos, neg = positive_negative_masks(labels, memory.labels.to(labels.device))
    return Comparison(mat, pos, neg)
