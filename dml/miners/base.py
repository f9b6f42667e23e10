"""The base class that every dml miner derives from.

``miner(embeddings, labels)`` returns the selected tuples: index tensors in
pytorch-metric-learning's layout (:class:`dml.tuples.Triplets` or :class:`dml.tuples.Pairs`),
or a :class:`dml.tuples.TripletSelection` that unpacks like one. Mining never needs
gradients. With ``memory`` (cross-batch memory) the candidates also include the memory's
entries, indexed after the batch rows; anchors are always batch rows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn

from dml.distances import Comparison, Distance, EuclideanDistance, References, compare
from dml.tuples import Mined


class Miner(nn.Module, ABC):
    """``output`` is "triplets" or "pairs": what :meth:`mine` returns."""

    output: ClassVar[str] = "triplets"

    def __init__(self, distance: Distance | None = None) -> None:
        super().__init__()
        self.distance = distance if distance is not None else EuclideanDistance()

    def forward(
        self, embeddings: Tensor, labels: Tensor, memory: References | None = None
    ) -> Mined:
        with torch.no_grad():
            return self.mine(embeddings.detach(), labels, memory)

    @abstractmethod
    def mine(self, embeddings: Tensor, labels: Tensor, memory: References | None = None) -> Mined:
        """Indices (or a selection rule) of the chosen tuples."""

    def compare(self, embeddings: Tensor, labels: Tensor, memory: References | None) -> Comparison:
        """The miner's view of the batch, with the matrix oriented as a distance."""
        mat, pos, neg = compare(self.distance, embeddings, labels, memory)
        return Comparison(self.distance.as_distance(mat), pos, neg)
