"""ProxyNCA (Movshovitz-Attias et al. 2017), PML's ProxyNCALoss."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from dml.distances import Distance, SquaredEuclideanDistance
from dml.losses.base import LossOutput
from dml.losses.proxy import ProxyLoss


class ProxyNCALoss(ProxyLoss):
    """NCA against one learned proxy per class: −log softmax(−scale·d(x, proxies))[y].

    The default distance is squared Euclidean on L2-normalised embeddings and proxies,
    PML's default, which keeps the proxies from escaping to large norms. Equals PML's
    ProxyNCALoss in value and gradient, except that PML drops a sample whose probability
    underflows to exactly 0 and dml keeps it with its (large, finite) log-loss.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        embedding_dim: int = 128,
        softmax_scale: float = 1.0,
        lr: float | None = 0.01,
        distance: Distance | None = None,
    ) -> None:
        super().__init__(
            num_classes,
            embedding_dim,
            lr,
            distance if distance is not None else SquaredEuclideanDistance(normalize=True),
            nn.init.normal_,
        )
        self.softmax_scale = softmax_scale

    def proxy_loss(self, embeddings: Tensor, labels: Tensor, proxies: Tensor) -> LossOutput:
        closeness = -self.distance.as_distance(self.distance.pairwise(embeddings, proxies))
        loss = F.cross_entropy(self.softmax_scale * closeness, labels)
        return LossOutput(loss, len(labels), len(labels))
