"""The loss of a training batch whose items carry weights: ``(x, labels, weights)``.

A semi-supervised training split (:mod:`dml.semi`) serves such batches, labelled items at
weight 1 and pseudo-labelled ones at ``semi.weight``. The module that trains on them owns
how they are scored, so this lives in training, below the semi-supervised layer that
produces the weights.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

LossParts = Callable[[Tensor, Tensor], tuple[Tensor, int, int]]


def semi_supervised_loss(
    compute_loss: LossParts, embeddings: Tensor, labels: Tensor, weights: Tensor
) -> tuple[Tensor, int, int]:
    """Σ_w w · loss(items of weight w): the labelled part plus the weighted pseudo part.

    Each part is its own batch for the loss and miner, so a pseudo-label never decides a
    tuple with a true label in it; with weight 1 the two parts are one batch, pseudo-labels
    counting as true ones. ``compute_loss`` is the module's; tuple counts add up.
    """
    total = embeddings.new_zeros(())
    num_tuples = num_active = 0
    for weight in weights.unique().tolist():
        if weight == 0:
            continue
        part = weights == weight
        loss, tuples, active = compute_loss(embeddings[part], labels[part])
        total = total + weight * loss
        num_tuples += tuples
        num_active += active
    return total, num_tuples, num_active
