"""The base class of losses that learn one parameter vector per class (proxies)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor, nn

from dml.distances import Distance, References
from dml.losses.base import EmbeddingLoss, LossOutput, check_labels_fit, require_num_classes
from dml.tuples import Mined


class ProxyLoss(EmbeddingLoss):
    """Owns ``proxies`` (num_classes × embedding_dim) and their learning rate ``lr``.

    Proxy losses compare each sample with every class's proxy instead of with other
    samples, so they need neither a miner nor a second sample of a class in the batch.
    The module puts ``proxies`` in their own optimizer group at ``lr`` (None: the
    optimizer's rate); proxies usually want a much higher rate than the backbone.
    """

    tuple_kind = None
    supports_memory = False
    min_samples_per_class = 1

    def __init__(
        self,
        num_classes: int | None,
        embedding_dim: int,
        lr: float | None,
        distance: Distance,
        init: Callable[[Tensor], object],
    ) -> None:
        super().__init__(distance)
        self.num_classes = require_num_classes(num_classes, type(self).__name__)
        self.embedding_dim = embedding_dim
        self.lr = lr
        self.proxies = nn.Parameter(torch.empty(self.num_classes, embedding_dim))
        init(self.proxies)

    def compute(
        self,
        embeddings: Tensor,
        labels: Tensor,
        mined: Mined | None = None,
        memory: References | None = None,
    ) -> LossOutput:
        if mined is not None or memory is not None:
            raise ValueError(f"{type(self).__name__} takes no miner and no memory")
        check_labels_fit(labels, self.num_classes, type(self).__name__)
        return self.proxy_loss(embeddings, labels, self.proxies.to(embeddings.dtype))

    @abstractmethod
    def proxy_loss(self, embeddings: Tensor, labels: Tensor, proxies: Tensor) -> LossOutput:
        """The loss from samples against ``proxies`` (already in the embeddings' dtype)."""
