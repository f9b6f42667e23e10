"""What sits on a pretrained trunk: GeM pooling, and the embedding head.

The head maps the trunk's pooled features to ``embedding_dim``. A linear map is what most
DML papers use (Roth et al. 2020 for ResNets, Ermolov et al. 2022 for ViTs); an MLP is the
projection head of self-supervised methods (SimCLR, DINO); none keeps the trunk's
features as they are, the setting for evaluating a pretrained model unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dml.errors import DmlError

HEADS = ("linear", "mlp", "none")


class GeM(nn.Module):
    """Generalised mean pooling of a feature map (Radenović et al. 2018): p = 1 is average
    pooling, p → ∞ max pooling; p is learned, from 3 as in the paper. The map's values must
    be non-negative (after a ReLU), so it suits convolutional networks, not token outputs.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor([float(p)]))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


def embedding_head(
    kind: str, feature_dim: int, embedding_dim: int, hidden_dim: int | None = None
) -> nn.Module:
    """``linear``, ``mlp`` (Linear → GELU → Linear, ``hidden_dim`` wide, the trunk's width
    by default) or ``none`` (needs ``embedding_dim`` equal to the trunk's width)."""
    if kind not in HEADS:
        raise DmlError(f"backbone.head={kind!r} is not one of {', '.join(HEADS)}")
    if embedding_dim < 1:
        raise DmlError(f"backbone.embedding_dim={embedding_dim} must be a positive integer")
    if kind == "none":
        if embedding_dim != feature_dim:
            raise DmlError(
                f"backbone.head=none keeps the trunk's {feature_dim} features, but "
                f"backbone.embedding_dim={embedding_dim}; set backbone.embedding_dim="
                f"{feature_dim} or backbone.head=linear"
            )
        return nn.Identity()
    if kind == "linear":
        return nn.Linear(feature_dim, embedding_dim)
    hidden = feature_dim if hidden_dim is None else hidden_dim
    if hidden < 1:
        raise DmlError(f"backbone.head_hidden_dim={hidden_dim} must be a positive integer")
    return nn.Sequential(
        nn.Linear(feature_dim, hidden), nn.GELU(), nn.Linear(hidden, embedding_dim)
    )
