"""Slow, obvious references for the vectorised losses, and the batches they are checked on.

Every loss here loops in Python over samples and tuples, straight from the formula, so a
vectorisation bug cannot hide in a shared helper. Kept tiny: tests use ~16-sample batches.
"""

from __future__ import annotations

import pytorch_metric_learning.distances as pml_distances
import torch
from torch import Tensor

from dml.distances import (
    CosineSimilarity,
    EuclideanDistance,
    SquaredEuclideanDistance,
)

DISTANCES = {
    "euclidean": EuclideanDistance,
    "squared": SquaredEuclideanDistance,
    "cosine": CosineSimilarity,
}


def pml_distance(name: str) -> pml_distances.BaseDistance:
    """PML's distance computing the same numbers as ``DISTANCES[name]`` (no normalisation)."""
    if name == "euclidean":
        return pml_distances.LpDistance(normalize_embeddings=False)
    if name == "squared":
        return pml_distances.LpDistance(normalize_embeddings=False, power=2)
    if name == "dot":
        return pml_distances.DotProductSimilarity(normalize_embeddings=False)
    return pml_distances.CosineSimilarity()


def make_batch(case: str, seed: int = 0, n: int = 16, dim: int = 6) -> tuple[Tensor, Tensor]:
    """A float64 batch for one named edge case (embeddings require grad)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (n,), generator=g)
    if case == "duplicates":
        # Exact copies, within and across classes: zero distances and tied candidates.
        x[1] = x[0]
        x[2] = x[0]
        x[5] = x[4]
        labels[1] = labels[0]
        labels[5] = (labels[4] + 1) % 4
    elif case == "collapsed_class":
        # One whole class at a single point: every positive distance is zero.
        labels[:] = torch.arange(n) % 3
        x[labels == 0] = x[0].clone()
    elif case == "singletons":
        labels = torch.cat([torch.tensor([10, 11, 12]), labels[3:]])
    elif case == "one_class":
        labels[:] = 2
    elif case == "no_positive":
        labels = torch.arange(n)
    elif case != "random":
        raise ValueError(case)
    return x.requires_grad_(), labels


CASES = ["random", "duplicates", "collapsed_class", "singletons", "one_class", "no_positive"]


def _dist(distance_name: str, x: Tensor, i: int, j: int) -> Tensor:
    """One distance (similarities negated), guarded at zero like dml's sqrt."""
    if distance_name == "cosine":
        return -(x[i] @ x[j]) / (x[i].norm() * x[j].norm())
    sq = ((x[i] - x[j]) ** 2).sum()
    if distance_name == "squared":
        return sq
    return sq.sqrt() if sq > 1e-12 else sq * 0.0


def triplet_reference(
    x: Tensor, labels: Tensor, margin: float, soft: bool = False, distance: str = "euclidean"
) -> Tensor:
    """Mean over all valid triplets with positive loss (PML's AvgNonZeroReducer)."""
    losses = []
    n = len(labels)
    for a in range(n):
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            for q in range(n):
                if labels[q] == labels[a]:
                    continue
                v = _dist(distance, x, a, p) - _dist(distance, x, a, q) + margin
                loss = torch.log1p(torch.exp(v)) if soft else torch.clamp(v, min=0)
                if loss > 0:
                    losses.append(loss)
    return torch.stack(losses).mean() if losses else x.sum() * 0


def hadsell_contrastive_reference(
    x: Tensor,
    labels: Tensor,
    pos_margin: float,
    neg_margin: float,
    pairs: list[tuple[int, int]] | None = None,
) -> Tensor:
    """Hadsell et al.: ½·max(0, d − m₊)² for similar pairs, ½·max(0, m₋ − d)² for dissimilar,
    averaged over the pairs (every ordered pair i != j when ``pairs`` is None)."""
    n = len(labels)
    if pairs is None:
        pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    total = x.sum() * 0
    for i, j in pairs:
        d = _dist("euclidean", x, i, j)
        if labels[i] == labels[j]:
            total = total + 0.5 * torch.clamp(d - pos_margin, min=0) ** 2
        else:
            total = total + 0.5 * torch.clamp(neg_margin - d, min=0) ** 2
    return total / len(pairs) if pairs else total


def lmnn_reference(x: Tensor, labels: Tensor, k: int, push_weight: float, margin: float) -> Tensor:
    """Weinberger & Saul's objective over each sample's k nearest same-class targets,
    divided by the number of target pairs."""
    n = len(labels)
    total = x.sum() * 0
    num_targets = 0
    for i in range(n):
        same = [j for j in range(n) if j != i and labels[j] == labels[i]]
        same.sort(key=lambda j: (_dist("squared", x, i, j).item(), j))
        for j in same[:k]:
            num_targets += 1
            d_ij = _dist("squared", x, i, j)
            total = total + (1 - push_weight) * d_ij
            for m in range(n):
                if labels[m] != labels[i]:
                    hinge = torch.clamp(margin + d_ij - _dist("squared", x, i, m), min=0)
                    total = total + push_weight * hinge
    return total / num_targets if num_targets else total


def nca_reference(x: Tensor, labels: Tensor, scale: float) -> Tensor:
    """Mean over samples with a same-label neighbour of −log P(neighbour shares the label)."""
    n = len(labels)
    losses = []
    for i in range(n):
        weights = {j: torch.exp(-scale * _dist("squared", x, i, j)) for j in range(n) if j != i}
        same = [w for j, w in weights.items() if labels[j] == labels[i]]
        if same:
            losses.append(
                -torch.log(torch.stack(same).sum() / torch.stack(list(weights.values())).sum())
            )
    return torch.stack(losses).mean() if losses else x.sum() * 0


def grad_of(loss: Tensor, x: Tensor) -> Tensor:
    (g,) = torch.autograd.grad(loss, x, retain_graph=True)
    return g


def assert_same(ours: Tensor, theirs: Tensor, x: Tensor) -> None:
    """Equal value and gradient with respect to ``x``, to 1e-5.

    Where PML returns a constant zero (no graph), ours must be a differentiable zero.
    """
    assert abs(ours.item() - theirs.item()) <= 1e-5 * max(1.0, abs(theirs.item()))
    if theirs.requires_grad:
        torch.testing.assert_close(grad_of(ours, x), grad_of(theirs, x), atol=1e-5, rtol=1e-5)
    else:
        assert torch.count_nonzero(grad_of(ours, x)) == 0
