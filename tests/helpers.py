"""Test-only components, referenced from configs by ``_target_``."""

from __future__ import annotations

import torch
from torch import Tensor

from dml.losses.base import EmbeddingLoss, LossOutput
from dml.tuples import Mined


class NaNAfterStepsLoss(EmbeddingLoss):
    """A mean squared norm that turns NaN after ``good_steps`` calls: a stand-in divergence."""

    tuple_kind = "triplets"

    def __init__(self, good_steps: int) -> None:
        super().__init__()
        self.good_steps = good_steps
        self.calls = 0

    def compute(self, embeddings: Tensor, labels: Tensor, mined: Mined | None = None) -> LossOutput:
        self.calls += 1
        value = embeddings.pow(2).mean()
        if self.calls > self.good_steps:
            value = value * torch.tensor(float("nan"))
        return LossOutput(value, len(labels), len(labels))


class ConstantBackbone(torch.nn.Module):
    """Maps every input to the same learnable vector: a fully collapsed embedding."""

    def __init__(self, embedding_dim: int) -> None:
        super().__init__()
        self.point = torch.nn.Parameter(torch.ones(embedding_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.point.expand(len(x), -1) + 0 * x.flatten(1)[:, :1]
