"""The base class that every dml miner derives from.

``miner(embeddings, labels)`` returns index tensors in pytorch-metric-learning's layout
(:class:`dml.tuples.Triplets` or :class:`dml.tuples.Pairs`). Mining never needs gradients.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn

from dml.distances import Distance, EuclideanDistance
from dml.tuples import Mined


class Miner(nn.Module, ABC):
    """``output`` is "triplets" or "pairs": what :meth:`mine` returns."""

    output: ClassVar[str] = "triplets"

    def __init__(self, distance: Distance | None = None) -> None:
        super().__init__()
        self.distance = distance if distance is not None else EuclideanDistance()

    def forward(self, embeddings: Tensor, labels: Tensor) -> Mined:
        with torch.no_grad():
            return self.mine(embeddings.detach(), labels)

    @abstractmethod
    def mine(self, embeddings: Tensor, labels: Tensor) -> Mined:
        """Indices of the selected tuples."""
