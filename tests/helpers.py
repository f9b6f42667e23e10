"""Test-only components, referenced from configs by ``_target_``."""

from __future__ import annotations

from collections.abc import Sequence

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
    """Maps every input to the same learnable vector: a fully collapsed embedding.

    It takes ``input_shape`` as ``backbone=linear`` does, so that the command line can swap
    it in: ``backbone=linear backbone._target_=tests.helpers.ConstantBackbone``.
    """

    def __init__(self, embedding_dim: int, input_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        self.point = torch.nn.Parameter(torch.ones(embedding_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.point.expand(len(x), -1) + 0 * x.flatten(1)[:, :1]


class DegradingBackbone(torch.nn.Module):
    """Embeddings that get worse with every training step, whatever the optimiser does.

    A fixed random projection of the input (good for retrieval) plus a pseudo-random,
    label-blind hash of it that grows with the number of training steps; so validation
    peaks after the first epoch on any machine. The step count is a buffer, so a
    checkpoint keeps its own epoch's quality.
    """

    def __init__(self, input_dim: int, embedding_dim: int, noise_per_step: float) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.noise_per_step = noise_per_step
        self.register_buffer("steps", torch.zeros(()))
        self.register_buffer(
            "projection", torch.randn(input_dim, embedding_dim, generator=generator)
        )
        self.register_buffer("hashing", torch.randn(input_dim, embedding_dim, generator=generator))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.steps += 1
        flat = x.flatten(1)
        noise = torch.sin(1000.0 * flat @ self.hashing) * flat.norm(dim=1, keepdim=True)
        return self.scale * (flat @ self.projection + self.noise_per_step * self.steps * noise)
