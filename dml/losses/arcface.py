"""ArcFace (Deng et al. 2019), PML's ArcFaceLoss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dml.distances import CosineSimilarity, Distance, safe_sqrt
from dml.errors import DmlError
from dml.losses.base import LossOutput
from dml.losses.proxy import ProxyLoss


class ArcFaceLoss(ProxyLoss):
    """Softmax over scaled cosines to class weights, with an additive angular margin.

    The target class's logit is cos(θ + m) instead of cos θ, so a sample must sit m
    radians closer to its class weight than to any other to win. Past θ = π − m,
    cos(θ + m) would turn back up, so cos θ − m·sin m keeps the logit decreasing.
    ``margin`` is in degrees, as in PML. The distance is always cosine (the key exists so
    that miner configs, which copy ``${loss.distance}``, compose). Equals PML's
    ArcFaceLoss in value and gradient; cos(θ + m) is expanded as cos θ·cos m − sin θ·sin m
    with a guarded sqrt, so a sample exactly on its class weight gets a zero gradient
    where PML's acos gives NaN.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        embedding_dim: int = 128,
        margin: float = 28.6,
        scale: float = 64.0,
        lr: float | None = 0.01,
        distance: Distance | None = None,
    ) -> None:
        if distance is not None and not isinstance(distance, CosineSimilarity):
            raise DmlError(
                f"ArcFaceLoss measures angles, so its distance must be CosineSimilarity, "
                f"not {type(distance).__name__}: set loss.distance._target_ accordingly"
            )
        super().__init__(num_classes, embedding_dim, lr, CosineSimilarity(), nn.init.normal_)
        self.margin = margin
        self.scale = scale

    def proxy_loss(self, embeddings: Tensor, labels: Tensor, proxies: Tensor) -> LossOutput:
        cosine = self.distance.pairwise(embeddings, proxies)
        target = cosine.gather(1, labels.unsqueeze(1)).squeeze(1)
        m = math.radians(self.margin)
        clamped = target.clamp(-1, 1)
        sine = safe_sqrt(1 - clamped * clamped)
        with_margin = torch.where(
            clamped >= math.cos(math.pi - m),
            clamped * math.cos(m) - sine * math.sin(m),
            clamped - m * math.sin(m),
        )
        is_target = F.one_hot(labels, self.num_classes).to(cosine.dtype)
        logits = cosine + is_target * (with_margin - target).unsqueeze(1)
        loss = F.cross_entropy(self.scale * logits, labels)
        return LossOutput(loss, len(labels), len(labels))
