"""The linear case of metric learning: a Mahalanobis distance, learned as x ↦ Lx."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from dml.errors import DmlError


class LinearMetric(nn.Module):
    """Euclidean distance after ``L`` is the Mahalanobis distance with M = LᵀL.

    Learning ``L`` rather than ``M`` keeps M positive semi-definite by construction, with
    no projection step after each update (as in LMNN's and NCA's gradient methods).
    ``L`` starts as the identity when the embedding keeps the input's dimension, so the
    first evaluation is the plain Euclidean baseline; a narrower ``L`` (rank-limited M)
    starts with orthonormal rows. Set ``normalize_embeddings=false`` in the run: after
    L2 normalisation the distance is no longer Mahalanobis.
    """

    def __init__(self, input_shape: Sequence[int], embedding_dim: int | None = None) -> None:
        super().__init__()
        in_dim = math.prod(input_shape)
        out_dim = in_dim if embedding_dim is None else embedding_dim
        if out_dim < 1:
            raise DmlError(f"backbone.embedding_dim={embedding_dim} must be a positive integer")
        self.embedding_dim = out_dim
        self.transform = nn.Linear(in_dim, out_dim, bias=False)
        with torch.no_grad():
            if out_dim == in_dim:
                self.transform.weight.copy_(torch.eye(in_dim))
            else:
                nn.init.orthogonal_(self.transform.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.transform(x.flatten(1))

    def mahalanobis_matrix(self) -> np.ndarray:
        """M = LᵀL in float64, exactly symmetric, for use outside torch (e.g. scipy, sklearn)."""
        weight = self.transform.weight.detach().to("cpu", torch.float64)
        m = weight.T @ weight
        return ((m + m.T) / 2).numpy()
