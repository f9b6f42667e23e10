"""The base class that every dml loss derives from.

The call signature follows pytorch-metric-learning: ``loss(embeddings, labels, mined=None)``
returns a scalar. :meth:`EmbeddingLoss.compute` also reports how many tuples were used and
how many were active (non-zero loss), which the module logs as training health.

Losses that compare samples accept ``memory``: extra, detached references (a cross-batch
memory, see :mod:`dml.memory`) that every anchor of the batch is also compared with.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple

from torch import Tensor, nn

from dml.distances import Distance, EuclideanDistance, References
from dml.tuples import Mined


class LossOutput(NamedTuple):
    loss: Tensor
    num_tuples: int
    num_active: int


class EmbeddingLoss(nn.Module, ABC):
    """Owns the distance and the reduction; subclasses compute per-tuple losses.

    ``tuple_kind`` says what mined tuples the loss consumes: "triplets", "pairs", or None
    for losses (proxy, NCA) that use the whole batch and reject a miner at start.
    ``supports_memory`` says whether extra references (cross-batch memory) make sense.
    """

    tuple_kind: ClassVar[str | None] = "triplets"
    supports_memory: ClassVar[bool] = True

    def __init__(self, distance: Distance | None = None) -> None:
        super().__init__()
        self.distance = distance if distance is not None else EuclideanDistance()

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        mined: Mined | None = None,
        memory: References | None = None,
    ) -> Tensor:
        return self.compute(embeddings, labels, mined, memory).loss

    @abstractmethod
    def compute(
        self,
        embeddings: Tensor,
        labels: Tensor,
        mined: Mined | None = None,
        memory: References | None = None,
    ) -> LossOutput:
        """The reduced loss with its tuple counts."""


def zero_loss(anchor: Tensor) -> Tensor:
    """A zero that stays on the autograd graph, so ``backward()`` works on an empty batch."""
    return anchor.sum() * 0.0


def mean_of_nonzero(per_tuple: Tensor, anchor: Tensor) -> tuple[Tensor, int]:
    """PML's AvgNonZeroReducer: the mean over tuples with a positive loss.

    ``anchor`` is any tensor on the autograd graph, so an all-zero batch still returns a
    differentiable zero instead of breaking ``backward()``.
    """
    active = per_tuple > 0
    num_active = int(active.sum())
    if num_active == 0:
        return zero_loss(anchor), 0
    return per_tuple[active].sum() / num_active, num_active
