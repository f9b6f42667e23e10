"""A multilayer perceptron on flattened inputs."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from dml.errors import DmlError


class MLP(nn.Module):
    """Flatten, then Linear → BatchNorm → ReLU per hidden layer, then a linear embedding head."""

    def __init__(
        self,
        input_shape: Sequence[int],
        embedding_dim: int = 64,
        hidden_dims: Sequence[int] = (256,),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if embedding_dim < 1:
            raise DmlError(f"backbone.embedding_dim={embedding_dim} must be a positive integer")
        self.embedding_dim = embedding_dim
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, embedding_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
