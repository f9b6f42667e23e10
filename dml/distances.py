"""Pairwise distances and label masks, injected into losses and miners.

A distance object maps two embedding matrices to a matrix of scores. For a true
distance smaller means closer; for a similarity (``is_similarity``) larger means closer.
Losses and miners stay agnostic by comparing through :meth:`closer`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

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

    def margin_violation(self, closer: Tensor, farther: Tensor) -> Tensor:
        """How much ``farther`` should grow to exceed ``closer``: d(ap) − d(an) for distances."""
        return farther - closer if self.is_similarity else closer - farther

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SquaredEuclideanDistance(Distance):
    def pairwise(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        y = x if y is None else y
        sq = (x * x).sum(1, keepdim=True) - 2 * x @ y.T + (y * y).sum(1)
        return sq.clamp_min(0)

    def paired(self, x: Tensor, y: Tensor) -> Tensor:
        return (x - y).pow(2).sum(1)


class EuclideanDistance(SquaredEuclideanDistance):
    def pairwise(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return safe_sqrt(super().pairwise(x, y))

    def paired(self, x: Tensor, y: Tensor) -> Tensor:
        return safe_sqrt(super().paired(x, y))


class CosineSimilarity(Distance):
    is_similarity = True

    def pairwise(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        xn = torch.nn.functional.normalize(x, dim=1)
        yn = xn if y is None else torch.nn.functional.normalize(y, dim=1)
        return xn @ yn.T

    def paired(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.nn.functional.cosine_similarity(x, y, dim=1)


def safe_sqrt(sq: Tensor) -> Tensor:
    """sqrt with a zero gradient (not NaN) where the input is zero."""
    positive = sq > SQRT_EPS
    return torch.where(positive, sq.clamp_min(SQRT_EPS).sqrt(), torch.zeros_like(sq))


def same_label_mask(labels: Tensor, ref_labels: Tensor | None = None) -> Tensor:
    """Boolean matrix: entry (i, j) is True where labels agree."""
    ref_labels = labels if ref_labels is None else ref_labels
    return labels.unsqueeze(1) == ref_labels.unsqueeze(0)


def positive_negative_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Masks of positive pairs (same label, i != j) and negative pairs within one batch."""
    same = same_label_mask(labels)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same
