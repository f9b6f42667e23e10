"""Proxy-Anchor loss (Kim et al. 2020), PML's ProxyAnchorLoss."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from dml.distances import CosineSimilarity, Distance
from dml.losses.base import LossOutput, masked_logsumexp
from dml.losses.proxy import ProxyLoss


class ProxyAnchorLoss(ProxyLoss):
    """Each proxy is an anchor that pulls its class's samples and pushes all others.

    For proxy c: log(1 + Σ_{x∈c} e^{−α(s(x,c)−δ)}) averaged over proxies with a sample in
    the batch, plus log(1 + Σ_{x∉c} e^{α(s(x,c)+δ)}) averaged over all proxies. Anchoring
    on proxies gives every sample a gradient that depends on the whole batch, as in
    pair losses, at the cost of a B×C matrix. Equals PML's ProxyAnchorLoss.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        embedding_dim: int = 128,
        margin: float = 0.1,
        alpha: float = 32.0,
        lr: float | None = 0.01,
        distance: Distance | None = None,
    ) -> None:
        super().__init__(
            num_classes,
            embedding_dim,
            lr,
            distance if distance is not None else CosineSimilarity(),
            lambda w: nn.init.kaiming_normal_(w, mode="fan_out"),
        )
        self.margin = margin
        self.alpha = alpha

    def proxy_loss(self, embeddings: Tensor, labels: Tensor, proxies: Tensor) -> LossOutput:
        sim = self.distance.pairwise(embeddings, proxies).T
        member = F.one_hot(labels, self.num_classes).T.to(sim.dtype)
        pull = self.alpha * self.distance.margin_violation(sim, self.margin)
        push = self.alpha * self.distance.margin_violation(-self.margin, sim)
        pos_term = masked_logsumexp(pull, member, add_one=True)
        neg_term = masked_logsumexp(push, 1.0 - member, add_one=True)
        with_samples = int((member.sum(1) > 0).sum())
        loss = neg_term.sum() / self.num_classes
        if with_samples:
            loss = loss + pos_term.sum() / with_samples
        return LossOutput(loss, len(labels), len(labels))
